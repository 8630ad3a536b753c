"""The `studybot` command line: a thin layer over :class:`ui.service.StudyService`.

Each ``ui/cli_*.py`` module in :data:`COMMAND_MODULES` adds its subcommands (``add_parsers(sub)``) and
registers their handlers in :mod:`ui.commands`.

A failure is one sentence and exit status 2 (:data:`rag.errors.EXIT_ERROR`): ``error: <sentence>`` on stderr,
and also ``{"error": "<sentence>"}`` on stdout when the command line has ``--json``, for every
:class:`rag.errors.StudybotError` (an invalid ``STUDYBOT_*`` setting included); with ``--json``, a command line
that does not parse is answered the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.errors import StudybotError
from rag.settings import apply_offline_env
from ui.commands import COMMANDS, EXIT_ERROR, report_error

if TYPE_CHECKING:
    from ui.service import StudyService

COMMAND_MODULES: list[str] = ["ui.cli_library", "ui.cli_answer", "ui.cli_quiz", "ui.cli_bank", "ui.cli_study", "ui.cli_guide", "ui.cli_serve", "ui.cli_eval"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studybot", description="Offline study chatbot over ML interview handbooks.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line. With ``--json`` on it, a line that does not parse is answered as any failure
    (``{"error": ...}`` on stdout, ``error: ...`` on stderr; argparse's usage text is left out), exit status 2."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if "--json" not in words:
        return parser.parse_args(words)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(words)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            sys.stderr.write(captured.getvalue())
            raise
        lines = captured.getvalue().strip().splitlines() or ["the command line could not be read"]
        report_error(lines[-1].split(": error: ", 1)[-1], as_json=True)
        raise SystemExit(EXIT_ERROR) from None


def main(argv: Sequence[str] | None = None, service: StudyService | None = None) -> int:
    """Run one command. ``service``: a built :class:`StudyService` to run it on (tests pass one with fakes);
    default: one built from the environment's settings."""
    apply_offline_env()
    args = parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if service is None:
            from rag.settings import Settings
            from ui.service import StudyService

            service = StudyService(Settings())  # an invalid STUDYBOT_* value: rag.errors.SettingsError
        return COMMANDS[args.command](args, service)
    except StudybotError as exc:
        report_error(str(exc), as_json)
        return EXIT_ERROR
    except KeyboardInterrupt:
        report_error("interrupted", as_json)
        return 130


if __name__ == "__main__":
    sys.exit(main())
