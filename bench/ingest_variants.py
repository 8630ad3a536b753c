"""Cold ingest of the handbooks, old engine vs new, in one run, with the gold and holdout retrieval metrics of
the index each one builds.

    .venv/bin/python bench/ingest_variants.py                       # old, batch16, new-fp32, new
    .venv/bin/python bench/ingest_variants.py old,new --json out.json

Engines (the embedder is loaded and warm before the clock starts; "cold" = an empty index):

* ``old``: the engine when the scale issue was filed: a model pass over each whole chunk plus one per
  sentence window, embedding batch 64, float32;
* ``batch16``: the same with embedding batch 16 (the previous session's change);
* ``new-fp32``: chunk vectors from the windows' mean and a 32-word lead (ingest.pipeline.chunk_vector), batch
  16, float32;
* ``new``: the shipped default: ``new-fp32`` with ``embed.precision=auto`` (bfloat16 on a CPU with native
  bfloat16).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rag.settings import Settings, apply_offline_env  # noqa: E402

apply_offline_env()
import ingest.pipeline as pipeline  # noqa: E402
from evals.gold import load_gold  # noqa: E402
from evals.retrieval import evaluate_retrieval  # noqa: E402
from ingest.chunking import windows  # noqa: E402
from ingest.pipeline import IngestSummary  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.retrieval import HybridRetriever  # noqa: E402
from rag.store import Index  # noqa: E402
from rag.types import Chunk, Progress  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NEW_EMBED = pipeline._embed_and_add


def whole_chunk_embed_and_add(index: Index, collection: object, chunks: list[Chunk], progress: Progress | None
                              ) -> None:
    """The previous engine: a model pass over each whole chunk, and one per window."""
    for i in range(0, len(chunks), pipeline.INGEST_BATCH):
        part = chunks[i : i + pipeline.INGEST_BATCH]
        wins = [windows(c) for c in part]
        vectors = index.embedder.embed([c.embed_text() for c in part] + [w for ws in wins for w in ws])
        rest = iter(vectors[len(part):])
        Index.add_chunks(collection, part, vectors[: len(part)], [[(w, next(rest)) for w in ws] for ws in wins])


ENGINES: dict[str, tuple[Any, dict[str, Any]]] = {
    "old": (whole_chunk_embed_and_add, {"batch_size": 64, "precision": "float32"}),
    "batch16": (whole_chunk_embed_and_add, {"batch_size": 16, "precision": "float32"}),
    "new-fp32": (NEW_EMBED, {"batch_size": 16, "precision": "float32"}),
    "new": (NEW_EMBED, {}),
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
    embed_fn, embed_settings = ENGINES[engine]
    pipeline._embed_and_add = embed_fn
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(storage={"home": Path(home)}, embed=embed_settings)
        embedder = Embedder.from_settings(settings)
        embedder.embed(["warm up"])
        index = Index(settings, embedder)
        t0 = time.perf_counter()
        summary = pipeline.ingest_corpus(index, corpus)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = pipeline.ingest_corpus(index, corpus)
        yield Built(index, embedder, summary, again, cold, time.perf_counter() - t0)


def run(engine: str) -> dict[str, Any]:
    with cold_ingest(engine, ROOT / "corpus") as built:
        summary, cold = built.summary, built.cold_s
        retriever = HybridRetriever.from_settings(built.index)
        out: dict[str, Any] = {"engine": engine, "precision": built.embedder.precision,
                               "chunks": summary.chunks_total, "cold_s": round(cold, 2),
                               "chunks_per_s": round(summary.chunks_total / cold, 1),
                               "unchanged_s": round(built.unchanged_s, 4)}
        for name, path in (("gold", ROOT / "evals" / "gold.jsonl"), ("holdout", ROOT / "evals" / "holdout.jsonl")):
            m = evaluate_retrieval(retriever, load_gold(path), modes=("hybrid",))["modes"]["hybrid"]
            out[f"{name}_hit@5"], out[f"{name}_mrr@5"] = m["hit@5"], m["mrr@5"]
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engines", nargs="?", default=",".join(ENGINES))
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    rows = []
    for engine in args.engines.split(","):
        rows.append(run(engine))
        print(json.dumps(rows[-1]), flush=True)
    old = next((r["cold_s"] for r in rows if r["engine"] == "old"), None)
    print("\n| engine | precision | cold ingest s | chunks/s | vs old | unchanged s | gold hit@5 / MRR@5 | "
          "holdout hit@5 / MRR@5 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{old / r['cold_s']:.2f}x" if old else ""
        print(f"| {r['engine']} | {r['precision']} | {r['cold_s']} | {r['chunks_per_s']} | {ratio} | {r['unchanged_s']} | "
              f"{r['gold_hit@5']} / {r['gold_mrr@5']} | {r['holdout_hit@5']} / {r['holdout_mrr@5']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
