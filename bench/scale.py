"""Retrieval at library scale: an N-chunk synthetic index, hybrid retrieval latency and memory.

    .venv/bin/python -m bench.scale --chunks 100000 [--json] [--old] [--queries 50]

Builds, under a temporary STUDYBOT_HOME, a real Chroma collection and the real keyword index
(rag/backends/keyword.py) of N synthetic chunks, then opens it in a fresh process, as the app does, and times
``HybridRetriever.retrieve(question, 5)`` over the gold questions (query embedding included). Prints
``{"chunks", "retrieval_p50_ms", "retrieval_p95_ms", "rss_mb", "build_s"}`` and a few more figures.

The chunks are made from the handbooks' own sentences: each takes the title and section of a random real
chunk and 4-8 random sentences of the corpus, each perturbed (about 1 word in 8 dropped, one pair of
neighbouring words swapped), so no chunk equals a real one. Its vector is the mean of its sentences'
embeddings plus Gaussian noise (sd 0.01 per dimension), normalised: embedding 100,000 chunks on 2 cores
takes hours, so the ~2,000 handbook sentences are embedded once and cached in ``--cache`` (keyed by a hash
of the sentences and the embedder), and a chunk's vector is derived from them.

``--old`` also measures the previous keyword engine in the same run (every chunk loaded into Python and
scored by rank_bm25 at each query), with the same dense part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, handbook_chunks, handbook_sentences, perturb, rss_mb
from rag.settings import Settings, apply_offline_env


def sentence_vectors(sentences: list[str], settings: Settings, cache: Path) -> Any:
    import numpy as np

    from rag.backends.embeddings import Embedder

    embedder = Embedder.from_settings(settings)
    key = hashlib.sha256(("\n".join(sentences) + embedder.name).encode()).hexdigest()[:16]
    path = cache / f"sentences-{key}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.perf_counter()
    vecs = np.asarray(embedder.embed(sentences), dtype=np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    print(f"embedded {len(sentences):,} handbook sentences once in {time.perf_counter() - t0:.0f} s -> {path}",
          file=sys.stderr)
    return vecs


def build(home: Path, n: int, cache: Path, seed: int = 0) -> dict[str, Any]:
    """Write an n-chunk index (Chroma collection + keyword index + manifest) under ``home``."""
    import numpy as np

    from rag.backends.embeddings import Embedder
    from rag.backends.keyword import folder_for
    from rag.backends.store import FileRecord, Index, Manifest
    from rag.retrieval import build_keyword
    from rag.types import Chunk

    settings = Settings(storage={"home": home})
    real = handbook_chunks(settings)
    sentences = handbook_sentences(real)
    vecs = sentence_vectors(sentences, settings, cache)
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    index = Index(settings, Embedder.from_settings(settings))
    t0 = time.perf_counter()
    collection = index.new_collection(1)
    batch: tuple[list[str], list[str], list[dict[str, Any]], list[list[float]]] = ([], [], [], [])
    for i in range(n):
        base = rng.choice(real)
        picks = rng.sample(range(len(sentences)), rng.randint(4, 8))
        text = " ".join(perturb(sentences[j], rng) for j in picks)
        vec = vecs[picks].mean(axis=0) + nprng.normal(0, 0.01, vecs.shape[1]).astype(np.float32)
        vec /= np.linalg.norm(vec)
        source = f"synthetic-{i // 500:04d}.md"
        chunk = Chunk(id=f"s{i}", text=text, source=source, title=base.title, section=f"{base.section} ({i})",
                      page=None, start=0, end=len(text), content_hash=hashlib.sha1(text.encode()).hexdigest(),
                      ordinal=i % 500)
        for store, value in zip(batch, (chunk.id, text, {**chunk.metadata(), "kind": "chunk"}, vec.tolist()),
                                strict=True):
            store.append(value)  # type: ignore[attr-defined]
        if len(batch[0]) >= 2000:
            Index.add_raw(collection, *batch)
            batch = ([], [], [], [])
    if batch[0]:
        Index.add_raw(collection, *batch)
    chroma_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    build_keyword(collection).save(folder_for(settings.storage.index_dir, collection.name))
    keyword_s = time.perf_counter() - t1
    files = {f"synthetic-{f:04d}.md": FileRecord("x", "synthetic", min(500, n - f * 500), time.time(), "md")
             for f in range((n + 499) // 500)}
    index.write_manifest(Manifest(collection.name, 1, {}, files))
    return {"build_s": round(time.perf_counter() - t0, 1), "chroma_add_s": round(chroma_s, 1),
            "keyword_build_s": round(keyword_s, 1), "sentences": len(sentences)}


def measure(home: Path, queries: int, engine: str) -> dict[str, Any]:
    """Open the index as the app does and time hybrid retrieval (run in a fresh process)."""
    from evals.gold import load_gold
    from rag.backends.embeddings import Embedder
    from rag.backends.store import Index
    from rag.retrieval import HybridRetriever

    settings = Settings(storage={"home": home})
    index = Index(settings, Embedder.from_settings(settings))
    index.embedder.embed_query("warm up")
    base_rss = rss_mb()
    retriever = (_old_engine() if engine == "old" else HybridRetriever).from_settings(index)
    t0 = time.perf_counter()
    retriever.refresh()
    open_s = time.perf_counter() - t0
    questions = [g.question for g in load_gold()]
    lat = []
    for q in (questions * (queries // len(questions) + 1))[:queries]:
        t0 = time.perf_counter()
        got = retriever.retrieve(q, 5)
        lat.append((time.perf_counter() - t0) * 1000)
        assert len(got) == 5, (q, len(got))
    lat.sort()
    return {"engine": engine, "chunks": retriever.n_chunks,
            "retrieval_p50_ms": round(statistics.median(lat), 1),
            "retrieval_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
            "rss_mb": round(rss_mb(), 0), "index_rss_mb": round(rss_mb() - base_rss, 0),
            "open_s": round(open_s, 2), "queries": len(lat)}


def _old_engine() -> Any:
    from rank_bm25 import BM25Okapi

    from rag.retrieval import HybridRetriever
    from rag.text import tokenize

    class Old(HybridRetriever):
        """The previous keyword engine: every chunk held in Python, rank_bm25 scoring all of them per query."""

        def refresh(self, force: bool = False) -> None:
            super().refresh(force)
            chunks = self.chunks  # all texts in memory, as before
            self._old_ids = list(chunks)
            self._old = BM25Okapi([tokenize(c.embed_text()) for c in chunks.values()])

        def bm25_ranking(self, question: str, n: int) -> list[str]:
            import numpy as np

            tokens = tokenize(question)
            if not tokens:
                return []
            scores = self._old.get_scores(tokens)
            return [self._old_ids[i] for i in np.argsort(-scores)[:n] if scores[i] > 0]

    return Old


def main() -> None:
    apply_offline_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--old", action="store_true", help="also measure the previous keyword engine (rank_bm25)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "studybot-bench-cache",
                    help="where the handbook sentence vectors are cached between runs")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the fresh measuring process
    ap.add_argument("--engine", default="new", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.queries, args.engine)))
        return
    with tempfile.TemporaryDirectory() as home:
        built = build(Path(home), args.chunks, args.cache)
        rows = []
        for engine in ["new", "old"] if args.old else ["new"]:
            out = subprocess.run([sys.executable, "-m", "bench.scale", "--measure", home, "--engine", engine,
                                  "--queries", str(args.queries if engine == "new" else min(args.queries, 20))],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), **built})
    if args.json:
        print(json.dumps({**rows[0], **({"old": rows[1]} if len(rows) > 1 else {})}))
        return
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    main()
