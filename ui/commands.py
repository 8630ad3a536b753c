"""The CLI's command registry: each ``ui/cli_*.py`` module adds its subcommands' parsers and registers their
handlers here with :func:`command`. It is its own module (not ``ui.cli``) so that ``python -m ui.cli``, which
runs ``ui.cli`` as ``__main__``, still has one registry."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rag.errors import EXIT_ERROR, EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from ui.service import StudyService

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "Command", "command", "err", "report_error"]

Command = Callable[[argparse.Namespace, "StudyService"], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def report_error(msg: str, as_json: bool = False) -> None:
    """A command's failure: ``error: msg`` on stderr, and for a ``--json`` command also ``{"error": msg}`` on
    stdout (where its reader parses the output)."""
    if as_json:
        print(json.dumps({"error": msg}, ensure_ascii=False), flush=True)
    err(msg)
