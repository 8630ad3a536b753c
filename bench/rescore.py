"""Re-score the refusal decisions of dumped replies with the current code, without generating anything.

Usage: python bench/rescore.py DUMP.jsonl[:QUESTIONS.jsonl] [...] [--show]

``bench/answer.py --dump F`` writes each question's raw reply. This re-runs retrieval and packing (both
deterministic) for each dumped question, passes the dumped reply through the current
``AnswerPipeline.parse`` (citations, refusal and grounding checks) and prints the refusal figures per
question set: the figures the current decision rules give on those real replies. A rule that acts after
generation (grounding, numbers, restatement) can so be tried on hundreds of replies in seconds. Rules that
change what is generated (prompt, second look, packing) need a new ``bench/answer.py`` run. ``--show``
lists every answered question with its grounding figures and every decision that differs from the dump.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.gold import GOLD_PATH, load_gold  # noqa: E402
from rag.answer import Generation  # noqa: E402
from rag.settings import Settings, apply_offline_env  # noqa: E402
from ui.service import StudyService  # noqa: E402


def rescore(svc: StudyService, dump: Path, questions: Path) -> list[dict[str, Any]]:
    items = {g.id: g for g in load_gold(questions)}
    pipeline = svc.answers
    rows = []
    for line in dump.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        item = items[d["id"]]
        state = pipeline.prepare(item.question, max_tokens=120)
        reply = Generation(reply=d["raw"] if state.packed else None,
                           first_reply="" if d.get("second_look") else None)
        answer = pipeline.parse(state, reply)
        rows.append({"id": item.id, "answerable": item.answerable, "refused": answer.refused,
                     "reason": answer.refusal_reason, "was_refused": d["refused"], "was_reason": d["reason"],
                     "support": answer.timings.get("support"), "semantic": answer.timings.get("semantic_support"),
                     "unsupported_numbers": answer.timings.get("unsupported_numbers"),
                     "raw": d["raw"]})
    return rows


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]

    def pct(xs: list[dict[str, Any]], key: str) -> float | None:
        return round(100 * sum(1 for r in xs if r[key]) / len(xs), 1) if xs else None

    reasons: dict[str, int] = {}
    for r in rows:
        if r["refused"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {"questions": len(rows), "unanswerable_refused_pct": pct(una, "refused"),
            "answerable_wrongly_refused_pct": pct(ans, "refused"),
            "dumped_unanswerable_refused_pct": pct(una, "was_refused"),
            "dumped_answerable_wrongly_refused_pct": pct(ans, "was_refused"), "reasons": reasons}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dumps", nargs="+", help="DUMP.jsonl[:QUESTIONS.jsonl] (default questions: the gold set)")
    ap.add_argument("--show", action="store_true", help="list answered questions and changed decisions")
    args = ap.parse_args()
    apply_offline_env()
    svc = StudyService(Settings())
    every: list[dict[str, Any]] = []
    for spec in args.dumps:
        dump, _, questions = spec.partition(":")
        rows = rescore(svc, Path(dump), Path(questions) if questions else GOLD_PATH)
        every += rows
        if args.show:
            for r in rows:
                changed = r["refused"] != r["was_refused"]
                if changed or not r["refused"]:
                    print(f"{'*' if changed else ' '} {r['id']} answerable={r['answerable']} refused={r['refused']} "
                          f"({r['reason']}; was {r['was_reason']}) support={r['support']} "
                          f"semantic={r['semantic']} numbers={r['unsupported_numbers']} | {r['raw'][:140]!r}")
        print(Path(dump).name, json.dumps(figures(rows)))
    if len(args.dumps) > 1:
        print("all", json.dumps(figures(every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
