"""Evidence selection on a question set, without the model: does the evidence (and the lead) hold the answer?

Usage: python bench/tune_evidence.py [--gold evals/gold.jsonl --gold evals/holdout.jsonl] [--grid] [--json]

Per answerable question: retrieval (top_k), then :class:`rag.evidence.EvidenceSelector` at the settings'
weights. Reported: ``passage_hit`` (a retrieved passage holds a gold phrase: the ceiling), ``evidence_hit``
(the selected excerpts still hold one), ``lead_hit`` (the lead holds one), the evidence's prompt tokens
(p50) against the whole-passage packing's, and the selection time (p50, ms, question embedding included).
``--grid`` tries weight combinations and prints them best first (tune on gold/holdout only, never the blind
set). Needs the index (``studybot ingest``) and the embedder; the model is only used for token counts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.gold import GOLD_PATH, GoldItem, is_relevant, load_gold, normalize  # noqa: E402
from rag.context import pack  # noqa: E402
from rag.evidence import EvidenceSelector  # noqa: E402
from rag.settings import Settings, apply_offline_env  # noqa: E402
from ui.service import StudyService  # noqa: E402


def holds(item: GoldItem, text: str) -> bool:
    body = normalize(text)
    return any(normalize(p) in body for p in item.phrases)


def phrase_share(item: GoldItem, text: str) -> float:
    """The best share of a gold phrase's words found in ``text`` (phrases may straddle a cut unit)."""
    body = set(normalize(text).split())
    best = 0.0
    for p in item.phrases:
        words = normalize(p).split()
        if words:
            best = max(best, sum(w in body for w in words) / len(words))
    return best


_SELECTORS: dict[int, EvidenceSelector] = {}


def run(svc: StudyService, items: list[GoldItem], settings: Settings, retrieved: dict[str, Any],
        count: Any) -> dict[str, Any]:
    sel = _SELECTORS.setdefault(id(svc), EvidenceSelector(settings.answer, svc.embedder, idf=svc.retriever.idf))
    sel.settings = settings.answer  # one selector for every setting: its unit vectors are computed once
    rows = []
    for item in items:
        passages = retrieved[item.id]
        t = time.perf_counter()
        ev = sel.select(item.question, passages, count)
        ms = (time.perf_counter() - t) * 1000
        ev_text = "\n".join(p.chunk.text for p in ev.passages)
        lead = ev.lead.text if ev.lead else ""
        rows.append({
            "id": item.id,
            "passage_hit": any(is_relevant(item, p.chunk.source, p.chunk.text) for p in passages),
            "evidence_hit": holds(item, ev_text) or phrase_share(item, ev_text) >= 0.9,
            "lead_hit": holds(item, lead) or phrase_share(item, lead) >= 0.9,
            "tokens": ev.tokens,
            "ms": ms,
        })
    n = len(rows) or 1
    return {
        "questions": len(rows),
        "passage_hit": round(sum(r["passage_hit"] for r in rows) / n, 3),
        "evidence_hit": round(sum(r["evidence_hit"] for r in rows) / n, 3),
        "lead_hit": round(sum(r["lead_hit"] for r in rows) / n, 3),
        "tokens_p50": statistics.median(r["tokens"] for r in rows) if rows else 0,
        "select_ms_p50": round(statistics.median(r["ms"] for r in rows), 1) if rows else 0,
        "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gold", type=Path, action="append", help="question sets (default: gold + holdout)")
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    apply_offline_env()
    settings = Settings()
    svc = StudyService(settings)
    paths = args.gold or [GOLD_PATH, GOLD_PATH.with_name("holdout.jsonl")]
    items = [i for p in paths for i in load_gold(p) if i.answerable]
    llm = svc.llm
    count = llm.count_tokens
    retrieved = {i.id: svc.retriever.retrieve(i.question, settings.retrieval.top_k) for i in items}
    packed_tokens = [pack(retrieved[i.id], count, settings.answer.context_budget_tokens).tokens for i in items]
    base = run(svc, items, settings, retrieved, count)
    base["whole_passage_tokens_p50"] = statistics.median(packed_tokens)
    if args.grid:
        results = []
        for d, tw, rw, budget, rel in itertools.product((1.0,), (0.0, 0.25, 0.5, 1.0), (0.0, 0.1, 0.3),
                                                        (200, 260, 320), (0.0, 0.5, 0.7)):
            s = settings.updated(answer={"evidence_dense_weight": d, "evidence_terms_weight": tw,
                                         "evidence_rank_weight": rw, "evidence_budget_tokens": budget,
                                         "evidence_min_relative": rel})
            r = run(svc, items, s, retrieved, count)
            results.append(({"terms": tw, "rank": rw, "budget": budget, "min_rel": rel},
                             {k: v for k, v in r.items() if k != "rows"}))
        results.sort(key=lambda x: (-x[1]["evidence_hit"] - x[1]["lead_hit"], x[1]["tokens_p50"]))
        for params, r in results[:15]:
            print(json.dumps({**params, **r}))
    out = {k: v for k, v in base.items() if k != "rows"}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
