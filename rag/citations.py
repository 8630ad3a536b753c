"""Citation markers in generated answers: find ``[n]``, ``[n, m]``, ``[n][m]``, ``[n-m]``, map them to the
numbered passages the model was given, and remove markers that point at no passage.

:class:`CitationFilter` does the same cleaning incrementally on a token stream, so the text a user sees
while the answer streams is the text of the final answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.types import Citation, Passage

# "[1]", "[1, 2]", "[1,2; 3]", "[1-3]", "[Passage 2]", "[passages 1 and 2]"
CITATION = re.compile(
    r"\[\s*(?:(?:passages?|source|sources|doc)\s*)?(\d{1,3}(?:\s*(?:,|;|-|–|and|&)\s*(?:passages?\s*)?\d{1,3})*)\s*\]",
    re.I,
)
_NUM_OR_RANGE = re.compile(r"(\d{1,3})\s*(?:[-–]\s*(\d{1,3}))?")
MAX_RANGE = 20


def marker_numbers(text: str) -> list[int]:
    """Every passage number the markers in ``text`` name, in order of first use (``[1-3]`` is 1, 2, 3)."""
    seen: list[int] = []
    for m in CITATION.finditer(text or ""):
        for n in numbers(m.group(1)):
            if n not in seen:
                seen.append(n)
    return seen


def numbers(marker_body: str) -> list[int]:
    """The passage numbers in the inside of one marker ("1, 2", "1-3", "2 and 4")."""
    out: list[int] = []
    for m in _NUM_OR_RANGE.finditer(marker_body):
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a or b - a > MAX_RANGE:
            b = a
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def _clean_marker(m: re.Match[str], n_passages: int, counter: list[int]) -> str:
    nums = numbers(m.group(1))
    valid = [n for n in nums if 1 <= n <= n_passages]
    counter[0] += len(nums) - len(valid)
    return "[" + ", ".join(map(str, valid)) + "]" if valid else ""


def _tidy(text: str) -> str:
    """Spaces left behind by removed markers ("word [9]." -> "word.")."""
    text = re.sub(r"[ \t]+([.,;:!?)])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text


def clean(text: str, n_passages: int) -> tuple[str, int]:
    """``text`` with markers to numbers outside 1..n_passages removed; returns (text, removed count)."""
    counter = [0]
    out = CITATION.sub(lambda m: _clean_marker(m, n_passages, counter), text)
    return (_tidy(out) if counter[0] else out), counter[0]


def cited_numbers(text: str, n_passages: int) -> list[int]:
    """Valid passage numbers cited in ``text``, in order of first appearance."""
    return [n for n in marker_numbers(text) if 1 <= n <= n_passages]


@dataclass
class Mapped:
    text: str
    citations: list[Citation]
    invalid: int

    @property
    def uncited(self) -> bool:
        return not self.citations


def map_citations(text: str, passages: Sequence[Passage]) -> Mapped:
    """Clean ``text`` and map its valid markers to the passages (``[n]`` is ``passages[n-1]``)."""
    cleaned, invalid = clean(text, len(passages))
    nums = cited_numbers(cleaned, len(passages))
    return Mapped(cleaned.strip(), [Citation.of(n, passages[n - 1].chunk) for n in nums], invalid)


class CitationFilter:
    """Incremental :func:`clean`: feed stream pieces, get text safe to show (a possible marker is held back
    until it closes or clearly is not one). ``feed(...)`` pieces + ``flush()`` is ``clean(whole)`` text up
    to whitespace tidying."""

    _MAX_HOLD = 40  # a "[" followed by this many characters without "]" is not a marker

    def __init__(self, n_passages: int) -> None:
        self.n = n_passages
        self.invalid = 0
        self._buf = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out = []
        while self._buf:
            i = self._buf.find("[")
            if i < 0:
                out.append(self._buf)
                self._buf = ""
                break
            out.append(self._buf[:i])
            self._buf = self._buf[i:]
            j = self._buf.find("]")
            if j < 0:
                if len(self._buf) > self._MAX_HOLD:
                    out.append(self._buf[0])
                    self._buf = self._buf[1:]
                    continue
                break  # wait for more text
            head = self._buf[: j + 1]
            m = CITATION.fullmatch(head)
            if m:
                counter = [0]
                out.append(_clean_marker(m, self.n, counter))
                self.invalid += counter[0]
                self._buf = self._buf[j + 1 :]
            else:
                out.append(self._buf[0])
                self._buf = self._buf[1:]
        return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        return rest
