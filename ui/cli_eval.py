"""`studybot eval`: retrieval metrics, or the whole suite (answers + Ragas + non-LLM metrics)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from ui.commands import EXIT_OK, command

if TYPE_CHECKING:
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("eval", help="evaluate retrieval (and answers) on the gold set")
    s.add_argument("--retrieval-only", action="store_true")
    s.add_argument("--limit", type=int, default=0)
    s.add_argument("--gold", help="a gold .jsonl (default: evals/gold.jsonl)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--metrics", help="judged metrics, comma-separated: sentence_faithfulness (the default), "
                   "faithfulness, answer_relevancy, context_precision, context_recall (Ragas, through the judge "
                   "server; minutes a question); 'none' for none")
    s.add_argument("--no-judge", action="store_true", help="answers and non-LLM metrics only")
    s.add_argument("--run-dir", help="the run directory (resumes it if it exists); default: continue the latest "
                   "unfinished run of the same questions, else a new one under --out")
    s.add_argument("--out", help="where run directories go (default: <STUDYBOT_HOME>/evals)")
    s.add_argument("--new", action="store_true", help="start a new run even if the latest one is unfinished")
    s.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="print metric deltas B - A of two runs")
    s.add_argument("--judge-sanity", type=int, default=0, metavar="N",
                   help="score N faithful/fabricated answer pairs and report how often faithful wins")
    s.add_argument("--judge-accuracy", action="store_true",
                   help="score each faithfulness method on the labelled claims (balanced accuracy on the held-out "
                   "half, precision/recall on 'not stated', seconds per claim); --limit N reads N claims a method")
    s.add_argument("--claims", help="labelled claims .jsonl for --judge-accuracy (default: evals/claims.jsonl)")
    s.add_argument("--methods", help="--judge-accuracy methods, comma-separated (default: all of rules, verifier, "
                   "yesno, rules_yesno, nli, vote, ragas)")
    s.add_argument("--rescore", action="store_true", help="--judge-accuracy: compute the saved methods' figures "
                   "again from their saved readings (no model), e.g. after the scoring changed")
    s.add_argument("--no-cache", action="store_true", help="--judge-accuracy: read every claim again (default: "
                   "re-use the readings kept in <evals dir>/judge-accuracy-cache.jsonl)")
    s.add_argument("--accuracy-out", help="where --judge-accuracy writes its result (default: "
                   "evals/judge_accuracy.json for evals/claims.jsonl, merged by method)")



@command("eval")
def cmd_eval(args: argparse.Namespace, svc: StudyService) -> int:
    from evals.gold import load_gold
    from evals.retrieval import evaluate_retrieval, format_table

    try:
        items = load_gold(Path(args.gold)) if args.gold else load_gold()
    except (OSError, ValueError, KeyError) as exc:
        raise StudybotError(f"The gold set {args.gold or 'evals/gold.jsonl'} cannot be read: {exc}.") from exc
    if args.limit:
        items = items[: args.limit]
    if not args.retrieval_only or getattr(args, "compare", None) or getattr(args, "judge_accuracy", False):
        from evals.cli import run_cli

        return run_cli(args, svc, items)
    result = evaluate_retrieval(svc.retriever, items)
    if args.json:
        print(json.dumps(result["modes"]))
    else:
        print(format_table(result))
    return EXIT_OK
