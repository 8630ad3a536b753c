"""Text normalisation shared by the answer policy, term checks, context packing and quizzes."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9]+")


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` at a word boundary, marked with " …" when it was cut."""
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"


def norm(text: str) -> str:
    """Lower case; every run of characters other than a-z and 0-9 becomes one space; trimmed."""
    return " ".join(_NON_WORD.sub(" ", (text or "").lower()).split())
