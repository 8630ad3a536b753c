"""Ingest throughput and retrieval latency, old engine vs new in one run, on the handbooks and on a synthetic
corpus made from the handbooks' own sentences.

    .venv/bin/python -m bench.ingest                                   # handbooks + 2,000 synthetic chunks
    .venv/bin/python -m bench.ingest --synthetic-chunks 20000 --engines new --json

For each engine (``bench.common.ENGINES``, as in ``bench/ingest_variants.py``: ``old`` = a model pass over every
whole chunk and window, batch 64, float32; ``new`` = the shipped default) and corpus: a cold ingest (empty index, embedder warm) in chunks/s,
an unchanged re-ingest, and hybrid retrieval p50/p95 over the gold questions (query embedding included), with
this process's RSS after it.

The synthetic corpus is Markdown: one section per chunk, under the title and section name of a random real
chunk, of 4-8 random handbook sentences each perturbed (about 1 word in 8 dropped, two neighbours swapped;
``bench.common.perturb``, as ``bench/scale.py``), so BM25 and dense retrieval are not trivially exact and the
model embeds real text.
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
from typing import Any

from bench.common import cold_ingest, handbook_chunks, handbook_sentences, perturb, rss_mb
from evals.gold import load_gold
from rag.retrieval import HybridRetriever
from rag.settings import Settings, apply_offline_env


def synthetic_corpus(root: Path, chunks: int, seed: int = 0) -> None:
    """Markdown files of 500 sections each, a section per chunk, from perturbed handbook sentences."""
    settings = Settings()
    real = handbook_chunks(settings)
    sentences = handbook_sentences(real)
    rng = random.Random(seed)
    for f in range(0, chunks, 500):
        parts = [f"# Synthetic handbook {f // 500}\n"]
        for i in range(f, min(f + 500, chunks)):
            base = rng.choice(real)
            body = " ".join(perturb(sentences[j], rng) for j in rng.sample(range(len(sentences)), rng.randint(4, 8)))
            parts.append(f"## {base.section.split(' > ')[-1] or base.title} ({i})\n\n{body}\n")
        (root / f"synthetic-{f // 500:03d}.md").write_text("\n".join(parts), encoding="utf-8")


def measure(engine: str, name: str, corpus: Path, questions: list[str], n_queries: int) -> dict[str, Any]:
    with cold_ingest(engine, corpus) as built:
        summary, again, ingest_s, noop_s = built.summary, built.again, built.cold_s, built.unchanged_s
        retriever = HybridRetriever.from_settings(built.index)
        retriever.refresh()
        lat = []
        for q in (questions * (n_queries // max(1, len(questions)) + 1))[:n_queries]:
            t0 = time.perf_counter()
            retriever.retrieve(q, 5)
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        return {"engine": engine, "corpus": name, "chunks": summary.chunks_total, "ingest_s": round(ingest_s, 1),
                "chunks_per_s": round(summary.chunks_total / ingest_s, 1),
                "unchanged_reingest_s": round(noop_s, 3), "reembedded_on_noop": again.chunks_embedded,
                "p50_ms": round(statistics.median(lat), 1), "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
                "rss_mb": round(rss_mb())}


def main() -> None:
    apply_offline_env()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic-chunks", type=int, default=2000)
    ap.add_argument("--engines", default="old,new")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    questions = [i.question for i in load_gold()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_chunks:
            synthetic_corpus(Path(tmp), args.synthetic_chunks)
        for engine in args.engines.split(","):
            rows.append(measure(engine, "handbooks", Settings().storage.corpus_dir, questions, args.queries))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.synthetic_chunks:
                rows.append(measure(engine, f"synthetic-{args.synthetic_chunks}", Path(tmp), questions, args.queries))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
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
