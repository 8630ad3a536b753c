"""What several benches share: the synthetic corpus's ingredients (the handbooks' chunks and sentences, perturbed),
this process's memory, and a cold ingest by one of the ingest engines compared (``bench.ingest_variants``,
``bench.ingest``). Like the benches, it uses only the public API of rag/ingest/evals/ui."""

from __future__ import annotations

import contextlib
import random
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.chunking import chunk_document, windows
from ingest.loaders import discover, load_file
from ingest.pipeline import INGEST_BATCH, EmbedFn, IngestSummary, embed_and_add, ingest_corpus
from rag.backends.embeddings import Embedder
from rag.backends.store import Index
from rag.settings import Settings
from rag.types import Chunk, Progress

ROOT = Path(__file__).resolve().parent.parent
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the synthetic corpora's ingredients ---------------------------------------------------------------------------
def handbook_chunks(settings: Settings) -> list[Chunk]:
    found = discover(settings.storage.corpus_dir, follow_links=False)
    chunks = []
    for source, path in found.files:
        chunks.extend(chunk_document(load_file(path, source), settings.ingest.chunk_size, settings.ingest.chunk_min))
    return chunks


def handbook_sentences(chunks: list[Chunk]) -> list[str]:
    """The distinct sentences of five words or more in ``chunks`` (what the synthetic corpora are made of)."""
    return sorted({s.strip() for c in chunks for s in _SENT.split(c.text) if len(s.split()) >= 5})


def perturb(sentence: str, rng: random.Random) -> str:
    """About 1 word in 8 dropped and one pair of neighbouring words swapped (no synthetic chunk equals a real one)."""
    words = [w for w in sentence.split() if rng.random() > 0.125] or sentence.split()
    if len(words) > 3:
        j = rng.randrange(len(words) - 1)
        words[j], words[j + 1] = words[j + 1], words[j]
    return " ".join(words)


# -- cold ingest by one engine ----------------------------------------------------------------------------------
def whole_chunk_embed_and_add(index: Index, collection: Any, chunks: list[Chunk], progress: Progress | None
                              ) -> None:
    """The previous engine (an :data:`ingest.pipeline.EmbedFn`): a model pass over each whole chunk, and one per
    window."""
    for i in range(0, len(chunks), INGEST_BATCH):
        part = chunks[i : i + INGEST_BATCH]
        wins = [windows(c) for c in part]
        vectors = index.embedder.embed([c.embed_text() for c in part] + [w for ws in wins for w in ws])
        rest = iter(vectors[len(part):])
        Index.add_chunks(collection, part, vectors[: len(part)], [[(w, next(rest)) for w in ws] for ws in wins])


# engine -> (how its chunks are embedded and added, the embed settings it runs with)
ENGINES: dict[str, tuple[EmbedFn, dict[str, Any]]] = {
    "old": (whole_chunk_embed_and_add, {"batch_size": 64, "precision": "float32"}),
    "batch16": (whole_chunk_embed_and_add, {"batch_size": 16, "precision": "float32"}),
    "new-fp32": (embed_and_add, {"batch_size": 16, "precision": "float32"}),
    "new": (embed_and_add, {}),
}


@dataclass
class Built:
    index: Index
    embedder: Embedder
    summary: IngestSummary  # of the cold ingest
    again: IngestSummary  # of the unchanged re-ingest
    cold_s: float
    unchanged_s: float


@contextlib.contextmanager
def cold_ingest(engine: str, corpus: Path) -> Iterator[Built]:
    """``corpus`` ingested by ``engine`` into an empty index under a temporary home (the embedder warm before
    the clock starts), then again unchanged; the home goes when the block ends."""
    embed, embed_settings = ENGINES[engine]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(storage={"home": Path(home)}, embed=embed_settings)
        embedder = Embedder.from_settings(settings)
        embedder.embed(["warm up"])
        index = Index(settings, embedder)
        t0 = time.perf_counter()
        summary = ingest_corpus(index, corpus, embed=embed)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = ingest_corpus(index, corpus, embed=embed)
        yield Built(index, embedder, summary, again, cold, time.perf_counter() - t0)
