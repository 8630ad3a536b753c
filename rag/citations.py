"""Citation markers in written text: find ``[n]``, ``[n, m]``, ``[n][m]``, ``[n-m]``, keep only those that point
at a given passage, and keep every marker out of code (a ``[n]`` inside code breaks what a student copies).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# "[1]", "[1, 2]", "[1,2; 3]", "[1-3]", "[Passage 2]", "[passages 1 and 2]"
CITATION = re.compile(
    r"\[\s*(?:(?:passages?|source|sources|doc)\s*)?(\d{1,3}(?:\s*(?:,|;|-|–|and|&)\s*(?:passages?\s*)?\d{1,3})*)\s*\]",
    re.I,
)
_NUM_OR_RANGE = re.compile(r"(\d{1,3})\s*(?:[-–]\s*(\d{1,3}))?")
# The widest "[a-b]" citation range expanded into markers: set by hand (an answer cites at most top_k, 5-10,
# passages); a wider range is read as a typo or a number, not a citation.
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


def keep_markers(text: str, valid: Iterable[int]) -> tuple[str, int]:
    """``text`` with every marker number outside ``valid`` removed (a marker left empty goes, with the space
    before it); returns (text, numbers removed)."""
    allowed = set(valid)
    removed = [0]

    def sub(m: re.Match[str]) -> str:
        nums = numbers(m.group(1))
        kept = [n for n in nums if n in allowed]
        removed[0] += len(nums) - len(kept)
        return "[" + ", ".join(map(str, kept)) + "]" if kept else ""

    out = CITATION.sub(sub, text)
    if removed[0]:
        out = re.sub(r"[ \t]{2,}", " ", re.sub(r"[ \t]+([.,;:!?)])", r"\1", out))
    return out, removed[0]


def cited_numbers(text: str, valid: Iterable[int]) -> list[int]:
    """The numbers in ``valid`` that ``text`` cites, in order of first appearance."""
    allowed = set(valid)
    return [n for n in marker_numbers(text) if n in allowed]


# -- markers and code ------------------------------------------------------------------------------------
_FENCED = re.compile(r"```.*?(?:```|$)", re.S)
_INLINE = re.compile(r"`[^`\n]+`")
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]", re.S)
# A marker glued into an identifier or a call: "np [1].argsort()", "smote [2].fit_resample", "x[1]_i".
_IN_IDENTIFIER = re.compile(r"(?<=[A-Za-z0-9_)\]])\s?(" + CITATION.pattern + r")(?!\[\s*\d)(?=[._(\[]?[A-Za-z0-9_(])")


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
        glued = span is None and bool(re.match(r"[._(\[]?[A-Za-z0-9_(]", after)) and not after.startswith("[") and \
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
