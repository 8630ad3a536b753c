"""Text normalisation shared by the answer policy, term checks, context packing and quizzes."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9]+")


def norm(text: str) -> str:
    """Lower case; every run of characters other than a-z and 0-9 becomes one space; trimmed."""
    return " ".join(_NON_WORD.sub(" ", (text or "").lower()).split())
