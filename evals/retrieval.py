"""Retrieval metrics on the gold set: hit@1/3/5, MRR@5 and top-5 context size, per retrieval mode."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evals.gold import GoldItem, is_relevant
from rag.retrieval import Mode, Retriever
from rag.types import Passage, Progress

MODES: tuple[Mode, ...] = ("dense", "bm25", "hybrid")
# The metrics' depth: hit@1/3/5, MRR@5 and the top-5 context size read the first 5 passages. Fixed (it is the
# metrics' definition, and every figure in the README and the CI baseline is @5), not settings.retrieval.top_k,
# so a changed top_k is still measured on the same scale.
DEPTH = 5


def first_relevant_rank(item: GoldItem, passages: Sequence[Passage]) -> int | None:
    for rank, p in enumerate(passages, start=1):
        if is_relevant(item, p.chunk.source, p.chunk.text):
            return rank
    return None


def score_rankings(items: Sequence[GoldItem], ranked: Sequence[Sequence[Passage]]) -> dict[str, float]:
    ranks = [first_relevant_rank(i, ps) for i, ps in zip(items, ranked, strict=True)]
    n = len(items) or 1

    def hit(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / n

    return {
        "hit@1": round(hit(1), 4),
        "hit@3": round(hit(3), 4),
        "hit@5": round(hit(5), 4),
        "mrr@5": round(sum(1.0 / r for r in ranks if r is not None and r <= 5) / n, 4),
        "context_chars@5": round(statistics.mean(sum(len(p.chunk.text) for p in ps[:5]) for ps in ranked), 1)
        if ranked
        else 0.0,
        "n": len(items),
    }


def evaluate_retrieval(
    retriever: Retriever,
    items: Sequence[GoldItem],
    modes: Sequence[Mode] = MODES,
    k: int = DEPTH,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics for each mode over the answerable items; also the ranks per item (for reports)."""
    answerable = [i for i in items if i.answerable]
    out: dict[str, Any] = {"modes": {}, "per_item": {}}
    total = len(modes) * len(answerable)
    done = 0
    for mode in modes:
        ranked = []
        for item in answerable:
            ranked.append(retriever.retrieve(item.question, k, mode))
            done += 1
            if progress:
                progress(f"retrieval ({mode})", done, total)
        out["modes"][mode] = score_rankings(answerable, ranked)
        out["per_item"][mode] = {
            i.id: {"rank": first_relevant_rank(i, ps), "ids": [p.id for p in ps]}
            for i, ps in zip(answerable, ranked, strict=True)
        }
    return out


def format_table(result: dict[str, Any]) -> str:
    keys = ["hit@1", "hit@3", "hit@5", "mrr@5", "context_chars@5"]
    lines = ["| mode | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for mode, m in result["modes"].items():
        lines.append(f"| {mode} | " + " | ".join(str(m[k]) for k in keys) + " |")
    return "\n".join(lines)
