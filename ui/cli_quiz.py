"""`studybot quiz`: quiz questions from the handbooks (MCQ, short answer, flashcards), printed, as JSON,
answered on the terminal (--ask), or exported to CSV / Anki (.txt, .apkg)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.study.store import LOCAL_USER
from ui.commands import EXIT_OK, command
from ui.render import grade_feedback, source_line

if TYPE_CHECKING:
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("quiz", help="generate quiz questions on a topic (or across the handbooks)")
    s.add_argument("--topic", default=None, help='e.g. "regularization" (default: spread across all sections)')
    s.add_argument("-n", type=int, default=5, help="number of questions (default 5)")
    s.add_argument("--type", dest="qtype", choices=["mcq", "short", "flashcard"], default="mcq")
    s.add_argument("--json", action="store_true", help='print {"topic", "type", "items", "dropped"}')
    s.add_argument("--export", metavar="FILE", help="also write FILE: .csv, .apkg, .json or Anki .txt/.tsv")
    s.add_argument("--ask", action="store_true", help="answer the questions one by one and get graded")
    s.add_argument("--seed", type=int, default=None, help="fix passage choice and option order")
    s.add_argument("--user", default=None, help="record the items as study cards for this user (studybot review)")
    s.add_argument("--weak", action="store_true",
                   help="new questions from the sections the user does worst on (needs --user; default user: local)")


def _print_item(n: int, item: Any, *, with_answer: bool) -> None:
    print(f"{n}. {item.question}")
    for i, opt in enumerate(item.options):
        print(f"   {'ABCD'[i]}) {opt}")
    if with_answer:
        idx = item.answer_index
        label = f"{'ABCD'[idx]}) " if idx is not None else ""
        print(f"   Answer: {label}{item.answer}")
        if item.explanation:
            print(f"   Why: {item.explanation}")
        print(f"   Source: {source_line(item.citation)}")
    print()


def _ask(svc: Any, items: list[Any]) -> int:
    right = 0
    for n, item in enumerate(items, start=1):
        _print_item(n, item, with_answer=False)
        prompt = "your answer (A-D): " if item.options else "your answer (Enter to reveal): "
        try:
            answer = input(prompt)
        except EOFError:
            answer = ""
        grade = svc.grade(item, answer)
        right += int(grade.correct)
        print("   " + grade_feedback(grade).replace("\n", "\n   ") + "\n")
    print(f"score: {right}/{len(items)}")
    return right


@command("quiz")
def cmd_quiz(args: argparse.Namespace, svc: StudyService) -> int:
    from rag.quiz import QuizSession
    from ui.quiz_export import export_items

    def progress(msg: str, done: int, total: int) -> None:
        if sys.stderr.isatty() and not args.json:
            print(f"\r{msg} …" + " " * 10, end="" if msg != "done" else "\n", file=sys.stderr, flush=True)

    if args.weak:
        if args.topic:
            raise StudybotError("--weak picks the sections itself: leave out --topic.")
        args.user = args.user or LOCAL_USER
        result, weak = svc.weak_quiz(args.user, args.n, args.qtype, session=QuizSession(args.seed),
                                     progress=progress)
        result.topic = "weak spots: " + "; ".join(w["section"] for w in weak)
    else:
        result = svc.quiz(args.topic, args.n, args.qtype, session=QuizSession(args.seed), progress=progress)
    if args.user:
        svc.record_quiz(args.user, result.items)
    if args.export:
        path = export_items(result.items, args.export, topic=result.topic, qtype=result.type)
        if not args.json:
            print(f"exported {len(result.items)} questions to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return EXIT_OK
    head = f"Quiz: {result.topic or 'across the handbooks'} ({result.type}, {len(result.items)} questions"
    head += f"; {result.dropped} generated items failed validation and were dropped)" if result.dropped else ")"
    print(head + "\n")
    if args.ask:
        _ask(svc, result.items)
    else:
        for n, item in enumerate(result.items, start=1):
            _print_item(n, item, with_answer=True)
    return EXIT_OK
