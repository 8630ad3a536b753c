"""`studybot quiz`: quiz questions from the handbooks (MCQ, short answer, flashcards), printed, as JSON,
answered on the terminal (--ask), or exported to CSV / Anki (.txt, .apkg)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.quiz.types import DEFAULT_TYPE, QUIZ_TYPES, type_of
from rag.study.store import LOCAL_USER
from ui.commands import EXIT_OK, command
from ui.render import grade_feedback, source_line

if TYPE_CHECKING:
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("quiz", help="generate quiz questions on a topic (or across the handbooks)")
    s.add_argument("--topic", default=None, help='e.g. "regularization" (default: spread across all sections)')
    s.add_argument("-n", type=int, default=5, help="number of questions (default 5)")
    s.add_argument("--type", dest="qtype", choices=list(QUIZ_TYPES), default=DEFAULT_TYPE,
                   help=f"question type (default {DEFAULT_TYPE})")
    s.add_argument("--json", action="store_true", help='print {"topic", "type", "items", "dropped"}')
    s.add_argument("--export", metavar="FILE", help="also write FILE: .csv, .apkg, .json or Anki .txt/.tsv")
    s.add_argument("--ask", action="store_true", help="answer the questions one by one and get graded")
    s.add_argument("--seed", type=int, default=None, help="fix passage choice and option order")
    s.add_argument("--user", default=None, help="record the items as study cards for this user (studybot review)")
    s.add_argument("--weak", action="store_true",
                   help="new questions from the sections the user does worst on (needs --user; default user: local)")


def _print_item(n: int, item: Any, *, with_answer: bool) -> None:
    shown = type_of(item).show(item)
    print(f"{n}. {shown.question}")
    for letter, opt in shown.options:
        print(f"   {letter}) {opt}")
    if with_answer:
        label = f"{shown.answer_letter}) " if shown.answer_letter else ""
        print(f"   Answer: {label}{shown.answer}")
        if shown.explanation:
            print(f"   Why: {shown.explanation}")
        print(f"   Source: {source_line(item.citation)}")
    print()


def _ask_one(svc: Any, n: int, item: Any) -> bool:
    """Ask one item on the terminal, grade the answer and print the feedback; whether it was right."""
    _print_item(n, item, with_answer=False)
    options = type_of(item).show(item).options
    prompt = f"your answer ({options[0][0]}-{options[-1][0]}): " if options else "your answer (Enter to reveal): "
    try:
        answer = input(prompt)
    except EOFError:
        answer = ""
    grade = svc.grade(item, answer)
    print("   " + grade_feedback(grade).replace("\n", "\n   ") + "\n")
    return bool(grade.correct)


def _header(result: Any) -> str:
    head = f"Quiz: {result.topic or 'across the handbooks'} ({result.type}, {len(result.items)} questions"
    return head + (f"; {result.dropped} generated items failed validation and were dropped)" if result.dropped else ")")


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
    elif args.json:  # the whole list at the end, as always
        result = svc.quiz(args.topic, args.n, args.qtype, session=QuizSession(args.seed), progress=progress,
                          user=args.user)
    else:
        return _streamed(args, svc)
    if args.user:
        svc.record_quiz(args.user, result.items)
    if args.export:
        path = export_items(result.items, args.export, topic=result.topic, qtype=result.type)
        if not args.json:
            print(f"exported {len(result.items)} questions to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return EXIT_OK
    print(_header(result) + "\n")
    if args.ask:
        right = sum(_ask_one(svc, n, item) for n, item in enumerate(result.items, start=1))
        print(f"score: {right}/{len(result.items)}")
    else:
        for n, item in enumerate(result.items, start=1):
            _print_item(n, item, with_answer=True)
    return EXIT_OK


def _streamed(args: argparse.Namespace, svc: StudyService) -> int:
    """Each question as soon as it exists (the question bank's at once), the rest made while the student reads
    or answers; a card per item as it comes (--user), the export at the end."""
    from rag.quiz import QuizSession
    from ui.quiz_export import export_items

    tty = sys.stderr.isatty()
    stream = svc.quiz_stream(args.topic, args.n, args.qtype, session=QuizSession(args.seed), user=args.user,
                             fast_start=bool(args.ask))
    banked = f"; {len(stream.banked)} from the question bank" if stream.banked else ""
    print(f"Quiz: {stream.topic or 'across the handbooks'} ({stream.qtype}, {stream.n} questions{banked})\n",
          flush=True)
    right = 0
    with stream:
        number = 0
        while True:
            if tty and not stream.ready:
                print(f"\rwriting question {number + 1} of {stream.n} …", end="", file=sys.stderr, flush=True)
            try:
                item = next(stream)
            except StopIteration:
                break
            finally:
                if tty:
                    print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
            number += 1
            if args.user:
                svc.record_quiz(args.user, [item])
            if args.ask:
                right += _ask_one(svc, number, item)
            else:
                _print_item(number, item, with_answer=True)
    result = stream.result()
    if len(result.items) < stream.n or result.dropped:
        note = f"{len(result.items)} of {stream.n} questions"
        if result.dropped:
            note += f"; {result.dropped} generated items failed validation and were dropped"
        print(f"({note})")
    if args.ask:
        print(f"score: {right}/{len(result.items)}")
    if args.export:
        path = export_items(result.items, args.export, topic=result.topic, qtype=result.type)
        print(f"exported {len(result.items)} questions to {path}", file=sys.stderr)
    return EXIT_OK
