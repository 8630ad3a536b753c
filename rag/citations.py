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


# -- markers and code ------------------------------------------------------------------------------------
_FENCED = re.compile(r"```.*?(?:```|$)", re.S)
_INLINE = re.compile(r"`[^`\n]+`")
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]", re.S)
# A marker glued into an identifier or a call: "np [1].argsort()", "smote [2].fit_resample", "x[1]_i".
_IN_IDENTIFIER = re.compile(r"(?<=[A-Za-z0-9_)\]])\s?(" + CITATION.pattern + r")(?=[._(\[]?[A-Za-z0-9_(])")


def _code_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in _FENCED.finditer(text)]
    rest = _FENCED.sub(lambda m: " " * len(m.group(0)), text)
    spans += [m.span() for m in _INLINE.finditer(rest)]
    spans += [m.span() for m in _DISPLAY_MATH.finditer(rest)]
    return sorted(spans)


def markers_in_code(text: str) -> int:
    """How many citation markers stand inside code (a code block, inline code, a display formula) or are
    glued into an identifier (``np [1].argsort()``): each of them breaks what a student copies."""
    spans = _code_spans(text)
    inside = sum(1 for m in CITATION.finditer(text) if any(a <= m.start() < b for a, b in spans))
    outside = _FENCED.sub(" ", text)
    outside = _INLINE.sub(" ", outside)
    return inside + len(_IN_IDENTIFIER.findall(outside))


def _sentence_end(text: str, pos: int, spans: list[tuple[int, int]]) -> int:
    """Where the sentence containing ``pos`` ends (before its final punctuation), code spans skipped."""
    for m in _END.finditer(text, pos):
        if not any(a <= m.start() < b for a, b in spans):
            return m.start()
    return len(text)


_END = re.compile(r"[.!?](?=\s|$)|\n|$")


def place_outside_code(text: str) -> str:
    """Move every marker that stands inside code or is glued into an identifier to the end of its sentence
    (after a code block: on the line after it), so code a student copies is never broken by a ``[n]``."""
    if "[" not in text:
        return text
    spans = _code_spans(text)
    cuts: list[tuple[int, int]] = []  # marker spans to remove (with the space glued before them)
    inserts: list[tuple[int, str]] = []  # (position in the original text, text to insert)
    for m in CITATION.finditer(text):
        span = next(((a, b) for a, b in spans if a <= m.start() < b), None)
        after = text[m.end() : m.end() + 2]
        before = text[max(0, m.start() - 2) : m.start()]
        glued = span is None and bool(re.match(r"[._(\[]?[A-Za-z0-9_(]", after)) and \
            bool(re.search(r"[A-Za-z0-9_)\]]\s?$", before))
        if span is None and not glued:
            continue
        start = m.start() - (1 if before.endswith(" ") else 0)
        cuts.append((start, m.end()))
        if span is not None and text.startswith("```", span[0]):
            nl = text.find("\n", span[1])
            inserts.append((len(text) if nl < 0 else nl, "\n" + m.group(0)))
        else:
            at = _sentence_end(text, span[1] if span else m.end(), spans)
            inserts.append((at, " " + m.group(0)))
    if not cuts:
        return text
    out: list[str] = []
    pos = 0
    events = sorted([(a, 0, b, "") for a, b in cuts] + [(at, 1, at, piece) for at, piece in inserts])
    for at, kind, end, piece in events:
        if at < pos:
            if kind == 1:
                out.append(piece)
            continue
        out.append(text[pos:at])
        if kind == 0:
            pos = end
        else:
            out.append(piece)
            pos = at
    out.append(text[pos:])
    return "".join(out)
