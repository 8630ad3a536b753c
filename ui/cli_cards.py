"""`studybot card` and `studybot schedule`: a user's cards (list, edit, suspend, bury, delete) and their review
schedule (desired retention, FSRS parameters optimised on their own reviews). Registered by
:mod:`ui.cli_study`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rag.study.store import LOCAL_USER, CardInfo
from ui.commands import EXIT_OK, command

if TYPE_CHECKING:
    from ui.service import StudyService

DEFAULT_USER = LOCAL_USER
CARD_ACTIONS = ("list", "edit", "suspend", "unsuspend", "bury", "unbury", "delete")


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("card", help="list, edit, suspend, bury or delete a study card")
    actions = s.add_subparsers(dest="action", required=True, metavar="{" + ",".join(CARD_ACTIONS) + "}")
    for action, text in (("list", "a user's cards (ids for the other actions)"),
                         ("edit", "change a card's question and/or answer (its history is kept)"),
                         ("suspend", "never due until unsuspended (schedule and history kept)"),
                         ("unsuspend", "due again as scheduled"),
                         ("bury", "not due before tomorrow (local midnight)"),
                         ("unbury", "due again as scheduled"),
                         ("delete", "delete a card and its history (a quiz never asks it again)")):
        a = actions.add_parser(action, help=text)
        if action == "list":
            a.add_argument("--which", choices=("all", "suspended", "buried"), default="all")
        else:
            a.add_argument("id", type=int, help="the card's id (`studybot card list`, `studybot review --json`)")
        if action == "edit":
            a.add_argument("--question", default=None, help="the new question")
            a.add_argument("--answer", default=None, help="the new answer")
        a.add_argument("--user", default=DEFAULT_USER, help=f"whose card (default: {DEFAULT_USER})")
        a.add_argument("--json", action="store_true", help='print {"card": {...}} ({"cards": [...]} for list)')
    s = sub.add_parser("schedule", help="show or set a user's desired retention; optimise FSRS on their reviews")
    s.add_argument("--user", default=DEFAULT_USER, help=f"whose schedule (default: {DEFAULT_USER})")
    s.add_argument("--retention", type=float, default=None,
                   help="desired retention, 0.70-0.99 (default 0.90; above 0.97 the workload grows steeply)")
    s.add_argument("--optimize", "--optimise", action="store_true",
                   help="fit the FSRS parameters on the user's reviews (needs 512 that count) and use them when "
                        "they fit better")
    s.add_argument("--json", action="store_true", help="print the schedule as JSON (with the optimisation's "
                   "log-loss before/after when --optimize)")


def _when(moment: Any) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M %Z}"


def _card_line(c: CardInfo) -> str:
    flags = " suspended" if c.suspended else ""
    if c.buried_until is not None:
        flags += f" buried until {_when(c.buried_until)}"
    if c.stale:
        flags += " stale"
    return f"{c.item_id:>5}  {c.state:<10} due {_when(c.due)}{flags}  {c.item.question}"


@command("card")
def cmd_card(args: argparse.Namespace, svc: StudyService) -> int:
    user = args.user
    if args.action == "list":
        cards = svc.cards(user, args.which)
        if args.json:
            print(json.dumps({"cards": [c.to_json() for c in cards]}, ensure_ascii=False))
        elif not cards:
            print(f"{user} has no {'' if args.which == 'all' else args.which + ' '}cards.")
        else:
            for c in cards:
                print(_card_line(c))
        return EXIT_OK
    if args.action == "edit":
        card = svc.edit_card(user, args.id, args.question, args.answer)
        said = f"Card {card.item_id} edited (its {card.reviews} reviews kept): {card.item.question} -> {card.item.answer}"
    elif args.action in ("suspend", "unsuspend"):
        card = svc.suspend_card(user, args.id, args.action == "suspend")
        said = (f"Card {card.item_id} suspended: it is not due until `studybot card unsuspend {card.item_id}`."
                if card.suspended else f"Card {card.item_id} unsuspended: due {_when(card.due)}.")
    elif args.action == "bury":
        card = svc.bury_card(user, args.id)
        assert card.buried_until is not None
        said = f"Card {card.item_id} buried until {_when(card.buried_until)}."
    elif args.action == "unbury":
        card = svc.unbury_card(user, args.id)
        said = f"Card {card.item_id} unburied: due {_when(card.due)}."
    else:
        card = svc.delete_card(user, args.id)
        said = f"Card {card.item_id} deleted with its {card.reviews} reviews: {card.item.question}"
    if args.json:
        print(json.dumps({"deleted" if args.action == "delete" else "card": card.to_json()}, ensure_ascii=False))
    else:
        print(said)
    return EXIT_OK


@command("schedule")
def cmd_schedule(args: argparse.Namespace, svc: StudyService) -> int:
    user = args.user
    schedule = svc.schedule(user) if args.retention is None else svc.set_retention(user, args.retention)
    if args.optimize:
        if schedule["reviews_counted"] >= schedule["optimize_min_reviews"]:  # else refused at once, in one sentence
            print(f"Optimising {user}'s FSRS parameters on {schedule['reviews_counted']} reviews ...",
                  file=sys.stderr, flush=True)
        schedule = svc.optimize_schedule(user)
    if args.json:
        print(json.dumps(schedule, ensure_ascii=False))
        return EXIT_OK
    print(f"Schedule of {user}")
    default = " (the default)" if schedule["default_retention"] else ""
    print(f"  desired retention: {schedule['desired_retention']:.2f}{default}")
    done = schedule["optimized"]
    if schedule["default_parameters"]:
        print("  FSRS parameters: the defaults")
    else:
        print(f"  FSRS parameters: optimised {done['at'][:10]} on {done['reviews']} reviews")
    print(f"  reviews that count for optimising: {schedule['reviews_counted']} "
          f"(at least {schedule['optimize_min_reviews']} needed)")
    run = schedule.get("optimization")
    if run is not None:
        verdict = ("the new parameters are used from now on" if run["adopted"]
                   else "they fit no better, so the parameters in use stay")
        print(f"  optimised in {run['seconds']} s: log-loss {run['log_loss_before']:.4f} (parameters in use) -> "
              f"{run['log_loss_after']:.4f} (fitted); {verdict}")
    if schedule["warning"]:
        print(f"warning: {schedule['warning']}")
    return EXIT_OK
