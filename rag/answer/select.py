"""Select the quotes: the best-ranked units, whole, in reading order and cited.

The quotes are the best unit, and up to ``max_quotes - 1`` more of the judged units that are judged to answer
(log-odds at least ``quote_min_logodds``) and score within ``quote_margin`` of the best (a comparison is
answered by two units, a list by its items). Units of one list or one table share their introduction or header
row, shown once. Quotes are grouped by passage (the passage of the best unit first) and in document order
inside a passage. :func:`answers_logodds` asks the model whether they answer the question together (the
refusal, :func:`rag.answer.pipeline.refuses`, reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag import prompts
from rag.answer.rank import Candidate, Ranking
from rag.types import Citation, Passage
from rag.units import UnitKind

if TYPE_CHECKING:
    from rag.llm import LLM


@dataclass(frozen=True)
class Quote:
    """Handbook text shown as part of the answer: one or more units of one passage, whole, and its citation
    (``citation.n`` is the passage's number among the answer's passages)."""

    text: str
    citation: Citation
    kinds: tuple[UnitKind, ...]
    score: float
    judge: float | None

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "citation": self.citation.to_json()}

    def marked(self) -> str:
        """The quote with its marker: after the text, or on a line of its own after a code block or table (so
        the marker never enters the code or becomes a table row)."""
        return marked(self.text, self.citation.n)


def marked(text: str, n: int) -> str:
    """:meth:`Quote.marked` for a quote's text and passage number (also for saved ``to_json`` quotes)."""
    body = text.strip()
    last = body.splitlines()[-1].lstrip() if body else ""
    return f"{body}\n\n[{n}]" if body.endswith("```") or last.startswith("|") else f"{body} [{n}]"


def _context(c: Candidate) -> str:
    """What :func:`rag.units.whole` put before the unit (an introduction, a header row), or ""."""
    return c.text[: -len(c.unit.text)] if c.text.endswith(c.unit.text) and c.text != c.unit.text else ""


def _overlaps(a: Candidate, b: Candidate) -> bool:
    if a.passage != b.passage:
        return False
    return a.unit.start < b.unit.end and b.unit.start < a.unit.end or a.unit.text in b.text or b.unit.text in a.text


def choose(ranking: Ranking, *, max_quotes: int, min_logodds: float, margin: float) -> list[Candidate]:
    """The ranked units to quote (see the module doc), best first."""
    best = ranking.best
    if best is None:
        return []
    chosen = [best]
    for c in ranking.candidates[1:]:
        if len(chosen) >= max_quotes:
            break
        if c.judge is None or c.judge < min_logodds or c.final < best.final - margin:
            continue
        if any(_overlaps(c, x) for x in chosen):
            continue
        chosen.append(c)
    return chosen


def quotes(chosen: Sequence[Candidate], passages: Sequence[Passage]) -> list[Quote]:
    """``chosen`` as quotes: grouped by passage (best first), in document order, units of one list or table
    under their shared introduction or header once. ``passages[i]`` is cited as ``[i + 1]``."""
    order: list[int] = []
    for c in chosen:
        if c.passage not in order:
            order.append(c.passage)
    out: list[Quote] = []
    for i in order:
        group = sorted((c for c in chosen if c.passage == i), key=lambda c: c.unit.start)
        blocks: list[list[Candidate]] = []
        for c in group:
            if blocks and _context(c) and _context(c) == _context(blocks[-1][0]):
                blocks[-1].append(c)
            else:
                blocks.append([c])
        texts = [b[0].text if len(b) == 1 else _context(b[0]) + "\n".join(c.unit.text for c in b) for b in blocks]
        members = [c for b in blocks for c in b]
        out.append(Quote("\n\n".join(t.strip() for t in texts), Citation.of(i + 1, passages[i].chunk),
                         tuple(c.unit.kind for c in members), max(c.final for c in members),
                         max((c.judge for c in members if c.judge is not None), default=None)))
    return out


def excerpts(quotes: Sequence[Quote]) -> str:
    """The quotes as the numbered excerpts block of the explain and check prompts."""
    return "\n".join(prompts.excerpt_block(q.citation.n, f"{q.citation.title} — {q.citation.section or '(start)'}",
                                            q.text) for q in quotes)


def answers_logodds(llm: LLM, question: str, quoted: Sequence[Quote]) -> float:
    """The model's log-odds that the quotes, together, answer ``question`` (one forward pass; the quotes come
    first in the prompt, so the KV cache keeps them for the explanation that follows)."""
    messages, shared = prompts.about_quotes(excerpts(quoted), "answers", question=question)
    return llm.yes_no(messages, shared)
