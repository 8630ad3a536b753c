"""Ingest progress on the terminal: the plan up front (chunks per file, ETA), then a bar on a TTY or a progress
line every few seconds otherwise (a log, CI, `make run` piped to a file), so a long ingest is never silent."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ingest.pipeline import IngestPlan
from ui.render import duration

# Not a terminal (a log, CI): one progress line this often, and at the end. Set by hand, not measured: a cold
# ingest of the handbooks takes some 8-10 s with the embedder loaded (README), so it prints a line or two.
LINE_EVERY_S = 10.0
# The plan names this many files (the largest first), then "and N more": set by hand so a plan stays one screen.
LIST_FILES = 8


class IngestConsole:
    """Pass as ``on_plan=`` and ``progress=`` to an ingest."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, every_s: float = LINE_EVERY_S) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self._plan: IngestPlan | None = None
        self._start = 0.0
        self._last_line = 0.0
        self._bar: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def plan(self, plan: IngestPlan) -> None:
        self._plan = plan
        self._start = self._last_line = time.monotonic()
        for source, n in sorted(plan.files, key=lambda f: -f[1])[:LIST_FILES]:
            self.say(f"  {source}: {n:,} chunks")
        if len(plan.files) > LIST_FILES:
            self.say(f"  ... and {len(plan.files) - LIST_FILES} more files")
        eta = f"about {duration(plan.eta_s)}" if plan.eta_s else "ETA after the first batch"
        self.say(f"embedding {plan.chunks:,} chunks (+{plan.windows:,} sentence windows) from "
                 f"{len(plan.files)} files: {eta}")
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=plan.chunks, desc="embedding", unit="chunk", file=self.stream)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._bar.close()
                self._bar = None
            return
        now = time.monotonic()
        first = self._last_line == self._start and done > 0
        if not (first or done >= total or now - self._last_line >= self.every_s):
            return
        self._last_line = now
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed
        left = f", about {duration((total - done) / rate)} left" if rate > 0 and done < total else ""
        pct = 100 * done / max(total, 1)
        self.say(f"{stage}: {done:,}/{total:,} chunks ({pct:.0f}%), {rate:.1f} chunks/s{left}")
