"""Old pipeline (whole passages + threshold stack) vs evidence-first, side by side in one run.

Usage: python bench/answer_compare.py --gold evals/blind.jsonl [--limit N] [--max-tokens T] [--dump F] [--json]

Both pipelines share one service (index, retriever, embedder, the one loaded model); for each question they
take turns in alternating order (old, new / new, old) so machine drift hits both alike. Per pipeline:

* refusals: unanswerable refused, answerable wrongly refused (and by which reason);
* automatic proxies: ``cited_gold`` (a cited passage, or the lead's, holds a gold phrase), ``key_facts`` (the
  shown text, lead and answer, holds every key fact of the blind set), ``uncited`` answers shown,
  ``markers_in_code`` (must be 0);
* time: to the lead (p50; evidence-first only), model time to first token p50, prompt tokens p50 and the
  tokens not in the KV-cached fixed prefix, total seconds per question p50.

``--dump`` writes every answer (question, reference, lead, answer, cited text) as JSONL for reading.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.answer import sample  # noqa: E402
from evals.gold import GoldItem, is_relevant, load_gold  # noqa: E402
from rag.answer import Answer, AnswerPipeline  # noqa: E402
from rag.citations import markers_in_code  # noqa: E402
from rag.settings import Settings, apply_offline_env  # noqa: E402
from ui.service import StudyService  # noqa: E402

PIPELINES = ("old", "new")


def shown_text(a: Answer) -> str:
    return ((a.lead.text + "\n") if a.lead else "") + a.answer


def has_key_facts(item: GoldItem, a: Answer) -> bool | None:
    if not item.key_facts or a.refused:
        return None if not item.key_facts else False
    text = shown_text(a).lower()
    return all(any(alt.lower() in text for alt in fact) for fact in item.key_facts)


def row_of(item: GoldItem, a: Answer, fixed_tokens: int) -> dict[str, Any]:
    t = a.timings
    cited = list(a.citations) + (list(a.lead.citations) if a.lead else [])
    return {
        "id": item.id,
        "kind": item.kind,
        "answerable": item.answerable,
        "refused": a.refused,
        "reason": a.refusal_reason,
        "lead": a.lead is not None,
        "lead_s": t.get("lead_s"),
        "llm_ttft_s": t.get("llm_ttft_s"),
        "ttft_s": t.get("ttft_s"),
        "prompt_tokens": t.get("prompt_tokens") or 0,
        "uncached_tokens": max(0, (t.get("prompt_tokens") or 0) - fixed_tokens) if t.get("prompt_tokens") else 0,
        "total_s": t.get("total_s"),
        "uncited": (not a.refused) and not a.citations,
        "markers_in_code": markers_in_code(a.answer) + (markers_in_code(a.lead.text) if a.lead else 0),
        "cited_gold": any(is_relevant(item, c.source, c.text) for c in cited) if item.answerable else None,
        "key_facts": has_key_facts(item, a) if item.answerable else None,
        "dropped": a.dropped,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]

    def pct(xs: list[Any]) -> float | None:
        xs = [x for x in xs if x is not None]
        return round(100 * sum(1 for x in xs if x) / len(xs), 1) if xs else None

    def p50(key: str) -> float | None:
        xs = [r[key] for r in rows if r.get(key) is not None and r.get(key) != 0]
        return round(statistics.median(xs), 3) if xs else None

    shown = [r for r in rows if not r["refused"]]
    return {
        "questions": len(rows), "answerable": len(ans), "unanswerable": len(una),
        "unanswerable_refused_pct": pct([r["refused"] for r in una]),
        "answerable_wrongly_refused_pct": pct([r["refused"] for r in ans]),
        "refusal_reasons_answerable": {k: sum(1 for r in ans if r["reason"] == k)
                                       for k in ("evidence", "unknown_term", "model", "unsupported")},
        "cited_gold_pct": pct([r["cited_gold"] for r in ans if not r["refused"]]),
        "key_facts_pct_of_answerable": pct([r["key_facts"] for r in ans]),
        "uncited_shown": sum(1 for r in shown if r["uncited"]),
        "markers_in_code": sum(r["markers_in_code"] for r in rows),
        "sentences_dropped": sum(r["dropped"] for r in rows),
        "lead_s_p50": p50("lead_s"),
        "llm_ttft_s_p50": p50("llm_ttft_s"),
        "ttft_s_p50": p50("ttft_s"),
        "prompt_tokens_p50": p50("prompt_tokens"),
        "uncached_tokens_p50": p50("uncached_tokens"),
        "total_s_p50": p50("total_s"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gold", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    apply_offline_env()
    settings = Settings()
    svc = StudyService(settings)
    items = sample(load_gold(args.gold), args.limit)
    pipes = {
        "old": AnswerPipeline(svc.retriever, lambda: svc.llm, settings.updated(answer={"evidence_first": False}),
                              embedder=svc.embedder),
        "new": AnswerPipeline(svc.retriever, lambda: svc.llm, settings.updated(answer={"evidence_first": True}),
                              embedder=svc.embedder),
    }
    llm = svc.llm
    fixed = sum(llm.count_tokens(m["content"]) for m in AnswerPipeline.messages("", "")[:-1])
    pipes["new"].ask("warm up: what is dropout?", max_tokens=4)  # model loaded, fixed prefix cached
    rows: dict[str, list[dict[str, Any]]] = {p: [] for p in PIPELINES}
    dump = args.dump.open("w", encoding="utf-8") if args.dump else None
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        order = PIPELINES if i % 2 == 0 else PIPELINES[::-1]
        for name in order:
            a = pipes[name].ask(item.question, max_tokens=args.max_tokens)
            r = row_of(item, a, fixed)
            rows[name].append(r)
            if dump is not None:
                dump.write(json.dumps({
                    "pipeline": name, "id": item.id, "kind": item.kind, "answerable": item.answerable,
                    "question": item.question, "reference": item.reference, "source": item.source,
                    "refused": a.refused, "reason": a.refusal_reason,
                    "lead": a.lead.to_json() if a.lead else None, "answer": a.answer,
                    "citations": [c.to_json() for c in a.citations], "metrics": r,
                }, ensure_ascii=False) + "\n")
                dump.flush()
            print(f"{i + 1}/{len(items)} {name} {item.id} refused={a.refused} ({a.refusal_reason}) "
                  f"lead_s={r['lead_s']} ttft={r['ttft_s']} total={r['total_s']} | {a.answer[:90]!r}",
                  file=sys.stderr, flush=True)
    summary = {name: summarize(rows[name]) for name in PIPELINES}
    old, new = summary["old"], summary["new"]
    for key in ("llm_ttft_s_p50", "prompt_tokens_p50", "uncached_tokens_p50", "total_s_p50"):
        if old.get(key) and new.get(key):
            summary.setdefault("ratio_new_over_old", {})[key] = round(new[key] / old[key], 3)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["question_set"] = args.gold.name
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    keys = [k for k in old if k not in ("questions", "answerable", "unanswerable")]
    print(f"{args.gold.name}: {old['questions']} questions ({old['answerable']} answerable)")
    print(f"{'metric':<36} {'old':>22} {'new':>22}")
    for k in keys:
        print(f"{k:<36} {json.dumps(old[k]):>22} {json.dumps(new[k]):>22}")
    print("ratio new/old:", json.dumps(summary.get("ratio_new_over_old")), " wall_s:", summary["wall_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
