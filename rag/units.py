"""Units of handbook text: the sentences, list items, table rows, code blocks and formulas a passage is made of.

:func:`split_units` cuts a passage's text into :class:`Unit` objects (prose sentences; list items and table rows,
one line each with their wrapped continuation; fenced code blocks kept whole; display formulas). The answer
path ranks them (:mod:`rag.answer.rank`) and quotes the best *whole* (:func:`whole`): a list item with the line
that introduces its list, a table row under its header row, a formula or code block with its label, a sentence
that starts with "This ..." with the sentence before it. A unit that only restates a question (a heading, a
question line, a table's header row) or draws a diagram is never a quote on its own (:func:`quotable`).

The quiz uses the same cut (glossary entries, MCQ options).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rag.text import tokenize

UnitKind = Literal["sentence", "item", "row", "code", "formula", "diagram"]

_FENCE = re.compile(r"^\s*```", re.M)
_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)]|[a-z][.)])\s+")
_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^\s*#{1,6}\s|^\s*[-=_*]{3,}\s*$")
# A sentence ends at . ! ? followed by whitespace and something that can start a sentence; "np.argsort()",
# "e.g. the", "0.5" and "v1.2" do not end one.
_SENT_END = re.compile(r"(?<![A-Z]\.[a-z])(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\betc)(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9(\"'`*$\\])")
BACKREF = re.compile(r"^(?:this|these|that|those|it|its|they|their|such|however|but|also|thus|hence|"
                     r"therefore|so|here|then)\b", re.I)
_FORMULA = re.compile(r"^\s*(?:\$\$|\\\[)|[=≈∑Σ∂√]|\\frac|\^\{?\d")
_BOX = re.compile(r"[\u2500-\u257f\u2580-\u259f\u25b2-\u25c4]|[-=]{2,}>|<[-=]{2,}|\+-{3,}")
# "**Question**: ...", "Q3: Explain ...", "Qn:" - a handbook's own question, not an answer.
_QUESTION_LINE = re.compile(r"^\W*(?:question|q\d*|qn)\W*:", re.I)
_MARKUP = re.compile(r"[*_`#>|]+")
_NUMBERED_TITLE = re.compile(r"^\d+(?:\.\d+)+\.?\s+[A-Z]")
_BOLD_LINE = re.compile(r"^(?:[-*]\s+)?(\*\*|__)[^*_]+\1:?$")


@dataclass(frozen=True)
class Unit:
    """One piece of a passage's text: ``passage`` is its index in the candidate list, ``start``/``end`` its
    offsets in that passage's text."""

    passage: int
    start: int
    end: int
    text: str
    kind: UnitKind


def _prose_units(text: str, base: int) -> list[tuple[int, int, UnitKind]]:
    out: list[tuple[int, int, UnitKind]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        start, end = pos, pos + len(line)
        pos = end
        body = line.strip()
        if not body or _HEADING.match(line) or _TABLE_RULE.match(line):
            continue
        if _ROW.match(line):
            out.append((base + start, base + end, "row"))
            continue
        if _ITEM.match(line):
            out.append((base + start, base + end, "item"))
            continue
        if out and out[-1][2] == "item" and line[:1].isspace() and text[start - 1 : start] == "\n":
            out[-1] = (out[-1][0], base + end, "item")  # a wrapped list item
            continue
        if body.startswith(("$$", "\\[")):
            out.append((base + start, base + end, "formula"))
            continue
        if _BOX.search(body) and len(re.findall(r"[A-Za-z]", body)) < len(body) / 2:
            out.append((base + start, base + end, "diagram"))
            continue
        cut = start
        for m in _SENT_END.finditer(line):
            out.append((base + cut, base + start + m.start() + len(m.group(0).rstrip()), "sentence"))
            cut = start + m.end()
        out.append((base + cut, base + end, "sentence"))
    return out


def split_units(text: str, passage: int = 0) -> list[Unit]:
    """The units of one passage's text, in order (fenced code blocks whole; an unclosed fence runs to the
    end, and text before the first fence of a chunk that starts inside a code block is code too)."""
    spans: list[tuple[int, int, UnitKind]] = []
    fences = [m.start() for m in _FENCE.finditer(text)]
    pos = 0
    if len(fences) % 2 == 1 and fences:
        # One fence too many: the chunk starts or ends inside a code block. A closing fence first (code
        # before it looks like code: no sentence ends) means it started inside one.
        head = text[: fences[0]]
        if head.strip() and not re.search(r"[.!?:]\s*$", head.strip().splitlines()[-1]):
            spans.append((0, fences[0] + len(text[fences[0]:].split("\n", 1)[0]), "code"))
            pos = spans[-1][1]
            fences = fences[1:]
        else:
            fences.append(len(text))
    for a, b in zip(fences[::2], fences[1::2], strict=False):
        if a < pos:
            continue
        spans += _prose_units(text[pos:a], pos)
        close_end = text.find("\n", b + 3)
        end = len(text) if close_end < 0 else close_end
        spans.append((a, end, "diagram" if _BOX.search(text[a:end]) else "code"))
        pos = end
    spans += _prose_units(text[pos:], pos)
    units = []
    for a, b, kind in spans:
        piece = text[a:b].strip()
        if not piece or not re.search(r"[A-Za-z0-9]", piece):
            continue
        lead_ws = len(text[a:b]) - len(text[a:b].lstrip())
        if kind == "sentence" and _FORMULA.search(piece) and len(tokenize(piece)) <= 12:
            kind = "formula"
        units.append(Unit(passage, a + lead_ws, a + lead_ws + len(piece), piece, kind))
    return units


def _index(units: Sequence[Unit], unit: Unit) -> int:
    return next((i for i, x in enumerate(units) if x.start == unit.start), 0)


def introduction(units: Sequence[Unit], unit: Unit) -> Unit | None:
    """For a list item: the unit that introduces its list (the nearest earlier unit that is not an item),
    when it reads as an introduction: a short line ending in ":" or a title ("**GRU:**", "Two options:",
    "Key Hyperparameters"), not the last sentence of a paragraph."""
    if unit.kind != "item":
        return None
    for x in reversed(units[: _index(units, unit)]):
        if x.kind != "item":
            intro = len(x.text) <= 120 and (x.text.rstrip("* ").endswith(":") or is_heading(x))
            return x if intro else None
    return None


def header_row(units: Sequence[Unit], unit: Unit, text: str) -> Unit | None:
    """For a table row: the table's header row (its first row, when a ``|---|`` rule follows it)."""
    if unit.kind != "row":
        return None
    j = _index(units, unit)
    first = j
    while first > 0 and units[first - 1].kind == "row":
        first -= 1
    head = units[first]
    if first == j:
        return None
    rule = text[head.end : units[first + 1].start]
    return head if _TABLE_RULE.search(rule.strip().splitlines()[0] if rule.strip() else "") else None


def label(units: Sequence[Unit], unit: Unit) -> Unit | None:
    """For a formula or code block (or any unit after a line ending in ":"): that introducing line, when short
    ("MSE (regression):", "Resampling with SMOTE creates synthetic minority samples:")."""
    j = _index(units, unit)
    if j == 0 or unit.kind in ("item", "row"):
        return None
    prev = units[j - 1]
    if prev.text.rstrip().endswith(":") and len(prev.text) <= 160 and prev.kind in ("sentence", "item"):
        return prev
    return None


def context(units: Sequence[Unit], unit: Unit, text: str) -> list[Unit]:
    """The units shown before ``unit`` so it reads whole: its list's introduction, its table's header row,
    its label, or the sentence a "This ..." refers back to."""
    if (intro := introduction(units, unit)) is not None:
        return [intro]
    if (head := header_row(units, unit, text)) is not None:
        return [head]
    if (lab := label(units, unit)) is not None:
        return [lab]
    j = _index(units, unit)
    if unit.kind == "sentence" and j > 0 and BACKREF.match(unit.text) and units[j - 1].kind == "sentence":
        return [units[j - 1]]
    return []


def fenced(code: str) -> str:
    """A code unit as a complete fenced block: a chunk cut inside a code block leaves it without its opening or
    its closing fence."""
    body = code.strip("\n")
    if not body.lstrip().startswith("```"):
        body = "```\n" + body
    if body.count("```") % 2 or not body.rstrip().endswith("```"):
        body = body.rstrip() + "\n```"
    return body


def whole(units: Sequence[Unit], unit: Unit, text: str) -> str:
    """``unit`` as a reader needs it: its :func:`context` first (a table row under its header and rule); a code
    block complete with its fences."""
    parts = context(units, unit, text)
    shown = fenced(unit.text) if unit.kind == "code" else unit.text
    if not parts:
        return shown
    before = parts[0]
    if unit.kind == "row":
        cells = before.text.count("|") - 1
        return f"{before.text}\n|{'---|' * max(cells, 1)}\n{unit.text}"
    sep = " " if unit.kind == "sentence" and before.kind == "sentence" else "\n"
    return f"{before.text}{sep}{shown}"


def words(text: str) -> list[str]:
    """The plain words of a unit (markup removed)."""
    return _MARKUP.sub(" ", text).split()


def is_question(unit: Unit) -> bool:
    """A handbook's own question ("- What does it mean ...?", "**Question**: ..."): it states no answer."""
    body = unit.text.strip()
    return body.endswith("?") or bool(_QUESTION_LINE.match(body))


def is_heading(unit: Unit) -> bool:
    """A title-like fragment: a few words, no verb-bearing clause ("- Support Vector Machines", "**Key
    Concepts:**"), stating nothing by itself."""
    if unit.kind in ("code", "formula", "row", "diagram"):
        return False
    body = unit.text.strip()
    plain = words(body)
    if body.rstrip("*").endswith(":") and len(plain) <= 8:
        return True
    if re.search(r"[.!?]\W*$", body):
        return False
    if _NUMBERED_TITLE.match(body) and len(plain) <= 8:
        return True  # "4.2 K-Nearest Neighbors (kNN)"
    if _BOLD_LINE.match(body) and len(plain) <= 10:
        return True  # "**Case Study: Recommendation System**"
    return len(plain) <= 4 and not re.search(r"\w:\s*\S|\d", body)


def quotable(units: Sequence[Unit], unit: Unit, text: str) -> bool:
    """Whether ``unit`` can be quoted as evidence: not a diagram, a question, a bare heading or a table's
    header row."""
    if unit.kind == "diagram" or is_question(unit) or is_heading(unit):
        return False
    if unit.kind == "row":
        j = _index(units, unit)
        nxt = units[j + 1] if j + 1 < len(units) else None
        if nxt is not None and nxt.kind == "row" and _TABLE_RULE.search(text[unit.end : nxt.start]):
            return False  # the header row itself
    return True
