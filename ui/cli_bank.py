"""`studybot bank`: fill the question bank (quiz items made before they are asked for, :mod:`rag.quiz.bank`) with
a progress bar, and report what it holds: items per type and section, and the share of passages covered."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from rag.quiz.bank import BANK_TYPES
from ui.commands import EXIT_OK, command
from ui.render import duration

if TYPE_CHECKING:
    from rag.quiz.bank import BankStats, FillReport
    from ui.service import StudyService

# Not a terminal (a log, CI): one progress line this often, and at the end. Set by hand, not measured: a line
# every few seconds would fill a log; a valid item takes 6-33 s to make on 2 cores (README), so most lines
# report one.
LINE_EVERY_S = 10.0


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("bank", help="make quiz items ahead of need (the question bank) and report what it holds")
    s.add_argument("--topic", default=None, help="only the passages a 10-question quiz on this topic would use")
    s.add_argument("--type", dest="types", action="append", choices=list(BANK_TYPES),
                   help=f"only this type (repeatable; default: {', '.join(BANK_TYPES)}, the quickest first)")
    s.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N new items")
    s.add_argument("--status", action="store_true", help="only report what the bank holds (no model)")
    s.add_argument("--json", action="store_true",
                   help='print {"filled": {"made", "tried", "model_calls", "seconds", ...}, "bank": {...}}')


class BankConsole:
    """Progress of a fill on the terminal: a bar on a TTY, else a line every :data:`LINE_EVERY_S` seconds."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, every_s: float = LINE_EVERY_S) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._bar: Any = None
        self._start = time.monotonic()
        self._last = -float("inf")

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc="banking", unit="try", file=self.stream)
            self._bar.set_postfix_str(stage.removeprefix("banking ").strip("()"), refresh=False)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._bar.close()
                self._bar = None
            return
        now = time.monotonic()
        if not (done >= total or now - self._last >= self.every_s):
            return
        self._last = now
        rate = done / max(now - self._start, 1e-6)
        left = f", about {duration((total - done) / rate)} left" if rate > 0 and done < total else ""
        print(f"{stage}: {done:,}/{total:,} tries{left}", file=self.stream, flush=True)


def report_lines(stats: BankStats, filled: FillReport | None = None) -> list[str]:
    lines = []
    if filled is not None:
        failed = filled.tried - filled.made
        lines.append(f"banked {filled.made} new item{'s' if filled.made != 1 else ''} in {duration(filled.seconds)} "
                     f"({filled.calls} model calls; {failed} tr{'y' if failed == 1 else 'ies'} failed validation)")
    lines.append(f"question bank: {stats.line()}")
    if stats.sections:
        lines.append(f"  {'items':>5}  {'passages':>9}  section")
        for s in stats.sections:
            lines.append(f"  {s.items:>5}  {f'{s.chunks_covered}/{s.chunks}':>9}  {s.source} :: {s.section}")
    return lines


@command("bank")
def cmd_bank(args: argparse.Namespace, svc: StudyService) -> int:
    filled = None
    if not args.status:
        progress = None if args.json else BankConsole()
        filled = svc.fill_bank(args.topic, args.types, limit=args.limit, progress=progress)
    stats = svc.bank_status()
    if args.json:
        print(json.dumps({"filled": filled.to_json() if filled else None, "bank": stats.to_json()}, ensure_ascii=False))
    else:
        print("\n".join(report_lines(stats, filled)))
    return EXIT_OK
