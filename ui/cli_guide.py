"""`studybot guide "topic or section"`: a one-page study guide, every line cited, printed as Markdown (or
written to a file with --out, or as JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ui.commands import EXIT_OK, command
from ui.render import guide_markdown

if TYPE_CHECKING:
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("guide", help="write a one-page study guide on a topic or section (cited)")
    s.add_argument("topic", help='e.g. "regularization" or "Section 8 — Ensemble Methods"')
    s.add_argument("--out", metavar="FILE.md", help="also write the guide to this Markdown file")
    s.add_argument("--json", action="store_true", help='print {"topic", "terms", "summary", "questions", ...}')


@command("guide")
def cmd_guide(args: argparse.Namespace, svc: StudyService) -> int:
    guide = svc.guide(args.topic).to_json()
    text = guide_markdown(guide)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(json.dumps(guide, ensure_ascii=False) if args.json else text)
    return EXIT_OK
