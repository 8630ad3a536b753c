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
    s.add_argument("--metrics", help="LLM-judged metrics, comma-separated (default: faithfulness,"
                   "answer_relevancy,context_precision,context_recall; 'none' for none)")
    s.add_argument("--no-judge", action="store_true", help="answers and non-LLM metrics only")
    s.add_argument("--run-dir", help="the run directory (resumes it if it exists); default: continue the latest "
                   "unfinished run of the same questions, else a new one under --out")
    s.add_argument("--out", help="where run directories go (default: <STUDYBOT_HOME>/evals)")
    s.add_argument("--new", action="store_true", help="start a new run even if the latest one is unfinished")
    s.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="print metric deltas B - A of two runs")
    s.add_argument("--judge-sanity", type=int, default=0, metavar="N",
                   help="score N faithful/fabricated answer pairs and report how often faithful wins")



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
    if not args.retrieval_only or getattr(args, "compare", None):
        from evals.cli import run_cli

        return run_cli(args, svc, items)
    result = evaluate_retrieval(svc.retriever, items)
    if args.json:
        print(json.dumps(result["modes"]))
    else:
        print(format_table(result))
    return EXIT_OK
