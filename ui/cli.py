"""The `studybot` command line: a thin layer over :class:`ui.service.StudyService`.

Each ``ui/cli_*.py`` module in :data:`COMMAND_MODULES` adds its subcommands (``add_parsers(sub)``) and
registers their handlers in :mod:`ui.commands`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.errors import StudybotError
from rag.settings import apply_offline_env
from ui.commands import COMMANDS, EXIT_ERROR, err

if TYPE_CHECKING:
    from ui.service import StudyService

COMMAND_MODULES: list[str] = ["ui.cli_library", "ui.cli_answer", "ui.cli_quiz", "ui.cli_study", "ui.cli_guide", "ui.cli_serve", "ui.cli_eval"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studybot", description="Offline study chatbot over ML interview handbooks.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None, service: StudyService | None = None) -> int:
    """Run one command. ``service``: a built :class:`StudyService` to run it on (tests pass one with fakes);
    default: one built from the environment's settings."""
    apply_offline_env()
    args = build_parser().parse_args(argv)
    try:
        if service is None:
            from rag.settings import Settings
            from ui.service import StudyService

            service = StudyService(Settings())
        return COMMANDS[args.command](args, service)
    except StudybotError as exc:
        err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
