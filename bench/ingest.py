"""Ingest throughput and retrieval latency, on the corpus and on a synthetic corpus of >= 20,000 chunks.

Usage: python bench/ingest.py [--synthetic-chunks 20000] [--queries 50] [--json]
Prints chunks/s for a full ingest (embedding included) and p50/p95 retrieval latency (query embedding
included) for hybrid retrieval, for both corpora.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.gold import load_gold  # noqa: E402
from ingest.pipeline import ingest_corpus  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.retrieval import HybridRetriever  # noqa: E402
from rag.settings import Settings, apply_offline_env  # noqa: E402
from rag.store import Index  # noqa: E402

WORDS = ["gradient", "loss", "model", "feature", "variance", "bias", "tree", "forest", "boosting", "kernel", "margin", "embedding", "token", "attention", "layer", "dropout", "batch", "norm", "learning", "rate", "optimizer", "momentum", "precision", "recall", "threshold", "cluster", "centroid", "distance", "sample", "bootstrap", "label", "noise", "drift", "latency", "serving", "pipeline", "metric", "baseline", "regularization", "penalty", "sparse", "dense", "convolution", "pooling", "recurrent", "sequence", "transformer", "encoder", "decoder", "softmax", "logit"]


def synthetic_corpus(root: Path, chunks: int, seed: int = 0) -> None:
    """Markdown files of ~600-character sections: one section per chunk."""
    rng = random.Random(seed)
    per_file = 500
    for f in range(0, chunks, per_file):
        parts = [f"# Synthetic handbook {f // per_file}\n"]
        for s in range(f, min(f + per_file, chunks)):
            body = " ".join(rng.choice(WORDS) for _ in range(85))
            parts.append(f"## Topic {s}: {rng.choice(WORDS)} and {rng.choice(WORDS)}\n\n{body.capitalize()}.\n")
        (root / f"synthetic-{f // per_file:03d}.md").write_text("\n".join(parts), encoding="utf-8")


def measure(name: str, corpus: Path, questions: list[str], n_queries: int) -> dict[str, float | str | int]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(storage={"home": Path(home)})
        index = Index(settings, Embedder.from_settings(settings))
        index.embedder.embed(["warm up"])
        t0 = time.perf_counter()
        summary = ingest_corpus(index, corpus)
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = ingest_corpus(index, corpus)
        noop_s = time.perf_counter() - t0
        retriever = HybridRetriever.from_settings(index)
        t0 = time.perf_counter()
        retriever.refresh()
        load_s = time.perf_counter() - t0
        lat = []
        for q in (questions * (n_queries // max(1, len(questions)) + 1))[:n_queries]:
            t0 = time.perf_counter()
            retriever.retrieve(q, 5)
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        return {
            "corpus": name,
            "chunks": summary.chunks_total,
            "ingest_s": round(ingest_s, 2),
            "chunks_per_s": round(summary.chunks_total / ingest_s, 1),
            "unchanged_reingest_s": round(noop_s, 3),
            "reembedded_on_noop": again.chunks_embedded,
            "retriever_load_s": round(load_s, 2),
            "p50_ms": round(statistics.median(lat), 1),
            "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
        }


def main() -> None:
    apply_offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic-chunks", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    questions = [i.question for i in load_gold()]
    rows = [measure("handbooks", Settings().storage.corpus_dir, questions, args.queries)]
    if args.synthetic_chunks:
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_corpus(Path(tmp), args.synthetic_chunks)
            rows.append(measure(f"synthetic-{args.synthetic_chunks}", Path(tmp), questions, args.queries))
    if args.json:
        print(json.dumps(rows))
        return
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
