"""`studybot review` and `studybot progress`: a user's due study cards (FSRS), and mastery per section; with
them `studybot card` and `studybot schedule` (:mod:`ui.cli_cards`)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from rag.study.store import LOCAL_USER
from ui import cli_cards
from ui.commands import EXIT_OK, command
from ui.render import source_line

if TYPE_CHECKING:
    from ui.service import StudyService

DEFAULT_USER = LOCAL_USER


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("review", help="review the study cards due now (spaced repetition)")
    s.add_argument("--user", default=DEFAULT_USER, help=f"whose cards (default: {DEFAULT_USER})")
    s.add_argument("--json", action="store_true", help='print {"due": [...]} and review nothing')
    s = sub.add_parser("progress", help="mastery per handbook section, weakest first")
    s.add_argument("--user", default=DEFAULT_USER, help=f"whose history (default: {DEFAULT_USER})")
    s.add_argument("--json", action="store_true", help='print {"sections": [{"section", "mastery", "reviews", ...}]}; mastery: '
                   "the recency-weighted share of reviews rated good or easy")
    cli_cards.add_parsers(sub)


@command("review")
def cmd_review(args: argparse.Namespace, svc: StudyService) -> int:
    due = svc.study.due(args.user)
    if args.json:
        print(json.dumps({"due": [d.to_json() for d in due]}, ensure_ascii=False))
        return EXIT_OK
    if not due:
        print(f"Nothing is due for {args.user}: make cards with `studybot quiz --user {args.user}`.")
        return EXIT_OK
    for n, card in enumerate(due, start=1):
        stale = " (its passage changed since: check it)" if card.stale else ""
        print(f"{n}/{len(due)}. {card.item.question}{stale}")
        try:
            input("   Enter to show the answer ")
            print(f"   {card.item.answer}\n   Source: {source_line(card.item.citation)}")
            rating = ""
            while rating not in ("again", "hard", "good", "easy", "1", "2", "3", "4"):
                rating = input("   again / hard / good / easy: ").strip().lower()
        except EOFError:
            print()
            break
        nxt = svc.study.review(args.user, card.item_id, int(rating) if rating.isdigit() else rating)
        print(f"   next review: {nxt:%Y-%m-%d %H:%M} UTC\n")
    return EXIT_OK


@command("progress")
def cmd_progress(args: argparse.Namespace, svc: StudyService) -> int:
    sections = svc.study.mastery(args.user)
    if args.json:
        print(json.dumps({"sections": sections}, ensure_ascii=False))
        return EXIT_OK
    if not sections:
        print(f"No study history for {args.user} yet.")
    for s in sections:
        bar = "#" * round(10 * s["mastery"])
        print(f"{s['mastery']:5.0%} {bar:<10} {s['reviews']:>3} reviews {s['cards']:>3} cards  {s['section']} "
              f"({s['source']})")
    weak = svc.study.weak_sections(args.user)
    if weak:
        print(f"\nweak spots: {'; '.join(w['section'] for w in weak)} (studybot quiz --weak --user {args.user})")
    return EXIT_OK
