"""Grid search of chunking and fusion settings on the gold set (how the defaults were chosen).

Usage: python -m bench.tune_retrieval [--quick]
Prints one line per configuration: chunk_size, chunk_min, weights, rrf_k, hit@1/3/5, MRR@5, context chars.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from evals.gold import load_gold
from evals.retrieval import evaluate_retrieval
from ingest.pipeline import ingest_corpus
from rag.backends.embeddings import Embedder
from rag.backends.store import Index
from rag.retrieval import HybridRetriever
from rag.settings import RetrievalSettings, Settings


class CachingEmbedder(Embedder):
    cache: dict[str, list[float]] = {}

    def embed(self, texts):  # type: ignore[override]
        todo = [t for t in texts if t not in self.cache]
        if todo:
            for t, v in zip(todo, super().embed(todo), strict=True):
                self.cache[t] = v
        return [self.cache[t] for t in texts]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="700,900,1100,1300")
    ap.add_argument("--mins", default="250,400")
    args = ap.parse_args()
    items = load_gold()
    base = Settings()
    emb = CachingEmbedder(Path(str(Embedder.from_settings(base).path)), base.embed)
    for size, minimum in itertools.product(map(int, args.sizes.split(",")), map(int, args.mins.split(","))):
        with tempfile.TemporaryDirectory() as home:
            s = Settings(storage={"home": Path(home)}, ingest={"chunk_size": size, "chunk_min": minimum})
            index = Index(s, emb)
            ingest_corpus(index, s.storage.corpus_dir)
            for dw, bw, rk in itertools.product((1.0,), (0.7, 1.0, 1.4), (10, 30, 60)):
                r = HybridRetriever(index, RetrievalSettings(fetch_k=30, rrf_k=rk, dense_weight=dw, bm25_weight=bw))
                m = evaluate_retrieval(r, items, modes=("hybrid",))["modes"]["hybrid"]
                print(f"size={size} min={minimum} dw={dw} bw={bw} rrf_k={rk} "
                      f"hit@1={m['hit@1']} hit@3={m['hit@3']} hit@5={m['hit@5']} mrr@5={m['mrr@5']} "
                      f"ctx={m['context_chars@5']}", flush=True)


if __name__ == "__main__":
    main()
