"""Text rules shared by retrieval, the answer policy, term checks, context packing and quizzes: normalisation,
clipping, control characters, and the word tokenizer (:func:`tokenize`: BM25, key terms, evidence). Nothing here
depends on retrieval or the index."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9]+")
# Terminal escape sequences: CSI (ESC [ or the C1 byte 0x9b, parameters, a final letter: colours, cursor moves),
# OSC / DCS / SOS / PM / APC strings (ESC ] ... ended by BEL or ESC \; unended, only their ESC ] goes), and
# the two-character ESC sequences (also what Alt+key sends).
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
# Control characters other than tab and newline (C0, DEL, C1), and invisible format characters that can hide
# or reorder text: zero-width space, left-to-right / right-to-left marks and overrides, word joiner, BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` at a word boundary, marked with " …" when it was cut."""
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"


def norm(text: str) -> str:
    """Lower case; every run of characters other than a-z and 0-9 becomes one space; trimmed."""
    return " ".join(_NON_WORD.sub(" ", (text or "").lower()).split())


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences (an ANSI colour such as ``ESC[31m``, a window title) and
    without control and invisible format characters; newlines and tabs are kept (a carriage return goes:
    ``\\r\\n`` becomes ``\\n``)."""
    return _CONTROL.sub("", _ANSI.sub("", text or ""))


_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "where", "which", "while", "who", "why", "will", "with", "would", "you", "your", "about", "should", "could", "vs", "versus", "between", "difference"]
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _stem(token: str) -> str:
    """A light suffix stripper so 'regularization'/'regularize', 'models'/'model' meet in BM25."""
    for suffix in ("ization", "isation", "ations", "ation", "ings", "ing", "ies", "es", "s"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            return token[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return token


def tokenize(text: str) -> list[str]:
    """Lower-cased words, stop words dropped, lightly stemmed (BM25, quiz key terms, evidence)."""
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP and len(t) > 1]
