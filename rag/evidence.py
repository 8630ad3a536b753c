"""Precise evidence: the sentences of the retrieved passages that answer the question, not whole passages.

Each retrieved passage is cut into *units* (:func:`split_units`): prose sentences, list items and table rows
(one line each, with their wrapped continuation), fenced code blocks kept whole, and display formulas. Every
unit is scored against the question (:class:`EvidenceSelector`)::

    score = w_dense * cos(question, unit)            # the retrieval embedder
          + w_terms * idf-weighted share of the question's terms the unit contains (its section path counts)
          + w_rank  * 1 / (1 + passage rank)           # the hybrid retriever's order

The best units are kept (with the unit before one that starts with a reference back, "This ...", and the
unit after one that ends with ":", so a list or code block is not cut from its introduction) until the token
budget is used, grouped back by passage in document order with "…" where text was left out. The result is
a list of :class:`~rag.types.Passage` objects whose ``chunk.text`` is the excerpt: exactly what the model is
shown and what a citation opens (``chunk.id`` stays the stored chunk's). The best unit is also the
extractive *lead* shown to the student before the model answers (:class:`Lead`).

Weights and budget: ``settings.answer`` (chosen on the gold and holdout sets with ``bench/tune_evidence.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from rag.context import dedupe, group_adjacent, merge_group, sanitize
from rag.retrieval import tokenize
from rag.types import Citation, Passage

if TYPE_CHECKING:
    from rag.embeddings import TextEmbedder
    from rag.settings import AnswerSettings

UnitKind = Literal["sentence", "item", "code", "formula"]
CountTokens = Callable[[str], int]

_FENCE = re.compile(r"^\s*```", re.M)
_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)]|[a-z][.)]|\|)\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s|^\s*[-=_*]{3,}\s*$")
# A sentence ends at . ! ? followed by whitespace and something that can start a sentence; "np.argsort()",
# "e.g. the", "0.5" and "v1.2" do not end one.
_SENT_END = re.compile(r"(?<![A-Z]\.[a-z])(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\betc)(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9(\"'`*$\\])")
_BACKREF = re.compile(r"^(?:this|these|that|those|it|its|they|their|such|however|but|also|thus|hence|"
                      r"therefore|so|here|then)\b", re.I)
_FORMULA = re.compile(r"^\s*(?:\$\$|\\\[)|[=≈∑Σ∂√]|\\frac|\^\{?\d")


@dataclass(frozen=True)
class Unit:
    """One piece of a passage's text: ``passage`` is its index in the candidate list."""

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
        if not body or _HEADING.match(line):
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
        spans.append((a, end, "code"))
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


def introduction(units: Sequence[Unit], unit: Unit) -> Unit | None:
    """For a list item: the unit that introduces its list (the nearest earlier unit that is not an item),
    when it is short enough to be a heading or an intro ("**GRU:**", "Two options:")."""
    if unit.kind != "item":
        return None
    j = next((i for i, x in enumerate(units) if x.start == unit.start), 0)
    for x in reversed(units[:j]):
        if x.kind != "item":
            return x if len(x.text) <= 120 else None
    return None


@dataclass(frozen=True)
class Scored:
    unit: Unit
    score: float
    dense: float
    terms: float


@dataclass
class Lead:
    """The handbook's own words shown first: the best evidence unit(s), cited."""

    text: str
    citations: list[Citation]

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "citations": [c.to_json() for c in self.citations]}


@dataclass
class Evidence:
    """The excerpts given to the model (``passages[n-1]`` is ``[n]``), the lead, and how they were chosen."""

    passages: list[Passage]
    text: str  # the rendered passages block that goes into the prompt
    tokens: int
    lead: Lead | None
    scored: list[Scored] = field(default_factory=list)  # every unit, best first (for benches and reports)


def _join(text: str, units: Sequence[Unit]) -> str:
    """The units of one passage in document order, "…" where text between them was left out."""
    parts: list[str] = []
    last_end: int | None = None
    for u in sorted(units, key=lambda u: u.start):
        if last_end is not None:
            gap = text[last_end : u.start]
            if gap.strip():
                parts.append(" … " if u.kind == "sentence" and parts and not parts[-1].endswith("\n") else "\n…\n")
            else:
                parts.append("\n" if "\n" in gap or u.kind != "sentence" else " ")
        parts.append(u.text)
        last_end = u.end
    return "".join(parts).strip()


class EvidenceSelector:
    """Cut retrieved passages into units, score them against the question, keep the best under a budget.

    ``idf``: a term's inverse document frequency in the whole index (the keyword index's); without one every
    term weighs the same. ``embedder``: the retrieval embedder (unit vectors are cached by text)."""

    def __init__(self, settings: AnswerSettings, embedder: TextEmbedder | None,
                 idf: Callable[[str], float] | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.idf = idf or (lambda _t: 1.0)
        self._vectors: dict[str, list[float]] = {}

    def _embed(self, texts: list[str]) -> list[list[float]]:
        assert self.embedder is not None
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            if len(self._vectors) > 20000:
                self._vectors.clear()
            self._vectors.update(zip(todo, self.embedder.embed(todo), strict=True))
        return [self._vectors[t] for t in texts]

    def candidates(self, retrieved: Sequence[Passage]) -> list[Passage]:
        """Retrieved passages without duplicates, adjacent chunks merged, delimiter look-alikes removed."""
        kept, _ = dedupe(retrieved)
        out = []
        for group in group_adjacent(kept):
            p = merge_group(group)
            c = p.chunk
            out.append(replace(p, chunk=replace(c, text=sanitize(c.text).strip(), title=sanitize(c.title),
                                                section=sanitize(c.section))))
        return out

    def score(self, question: str, passages: Sequence[Passage]) -> list[Scored]:
        """Every unit of ``passages``, best first. A list item is scored with its list's introduction
        ("GRU:" before "- Fewer parameters"), a unit with fewer than three content words at half weight."""
        s = self.settings
        per_passage = [split_units(p.chunk.text, i) for i, p in enumerate(passages)]
        units = [u for us in per_passage for u in us]
        if not units:
            return []
        framed = {(u.passage, u.start): (f"{intro.text} {u.text}" if (intro := introduction(per_passage[u.passage], u))
                                         else u.text) for u in units}
        q_terms = list(dict.fromkeys(tokenize(question)))
        weights = {t: max(self.idf(t), 0.0) for t in q_terms}
        total = sum(weights.values()) or 1.0
        dense = [0.0] * len(units)
        if self.embedder is not None and s.evidence_dense_weight > 0:
            vecs = self._embed([question] + [framed[(u.passage, u.start)] for u in units])
            qv = vecs[0]
            dense = [sum(a * b for a, b in zip(qv, v, strict=True)) for v in vecs[1:]]
        section_terms = [set(tokenize(p.chunk.section + " " + p.chunk.title)) for p in passages]
        out = []
        for u, d in zip(units, dense, strict=True):
            own = tokenize(u.text)
            have = set(own)
            around = set(tokenize(framed[(u.passage, u.start)])) | section_terms[u.passage]
            terms = sum(w for t, w in weights.items() if t in have) / total
            context = sum(w for t, w in weights.items() if t in around and t not in have) / total
            score = (s.evidence_dense_weight * d + s.evidence_terms_weight * (terms + 0.5 * context)
                     + s.evidence_rank_weight / (1 + u.passage))
            if len(own) < 3 and u.kind != "code":
                score *= 0.5  # a heading-like fragment ("Gradient descent (batch)") states nothing
            out.append(Scored(u, score, d, terms))
        out.sort(key=lambda x: -x.score)
        return out

    def select(self, question: str, retrieved: Sequence[Passage], count_tokens: CountTokens,
               budget: int | None = None) -> Evidence:
        """The evidence for ``question``: the best units under ``budget`` tokens, as numbered excerpts."""
        from rag.prompts import passage_block

        s = self.settings
        budget = budget or s.evidence_budget_tokens
        cands = self.candidates(retrieved)
        scored = self.score(question, cands)
        if not scored:
            return Evidence([], "", 0, None, scored)
        by_passage: dict[int, list[Unit]] = {}
        order: list[int] = []
        all_units = {i: split_units(p.chunk.text, i) for i, p in enumerate(cands)}
        used = 0
        chosen: set[tuple[int, int]] = set()
        top = scored[0].score

        def add(u: Unit) -> bool:
            nonlocal used
            key = (u.passage, u.start)
            if key in chosen:
                return True
            cost = count_tokens(u.text) + 2
            if used + cost > budget and chosen:
                return False
            chosen.add(key)
            used += cost
            by_passage.setdefault(u.passage, []).append(u)
            if u.passage not in order:
                order.append(u.passage)
            return True

        for rank, sc in enumerate(scored):
            if rank >= s.evidence_max_units or (rank and sc.score < top * s.evidence_min_relative):
                break
            u = sc.unit
            siblings = all_units[u.passage]
            j = next(i for i, x in enumerate(siblings) if x.start == u.start)
            if not add(u):
                continue
            if _BACKREF.match(u.text) and j > 0:
                add(siblings[j - 1])
            intro = introduction(siblings, u)
            if intro is not None:
                add(intro)
            if u.text.rstrip().endswith(":") and j + 1 < len(siblings):
                add(siblings[j + 1])
        passages: list[Passage] = []
        blocks: list[str] = []
        for n, i in enumerate(order, start=1):
            p = cands[i]
            excerpt = _join(p.chunk.text, by_passage[i])
            best = max((x.score for x in scored if x.unit.passage == i), default=0.0)
            passages.append(replace(p, chunk=replace(p.chunk, text=excerpt),
                                    extra={**p.extra, "evidence_score": round(best, 4), "candidate": i}))
            blocks.append(passage_block(n, p.chunk.title, p.chunk.section, excerpt))
        text = "\n".join(blocks)
        lead = self._lead(scored, order, passages)
        return Evidence(passages, text, count_tokens(text), lead, scored)

    def _lead(self, scored: list[Scored], order: list[int], passages: list[Passage]) -> Lead | None:
        """The best unit (and the next of the same passage when the best is an introduction ending in ":"
        or very short), cited to its evidence passage."""
        best = scored[0].unit
        if best.passage not in order:
            return None
        n = order.index(best.passage) + 1
        text = best.text
        if text.rstrip().endswith(":") or len(text) < self.settings.lead_min_chars:
            nxt = next((sc.unit for sc in scored[1:] if sc.unit.passage == best.passage
                        and sc.unit.start > best.start), None)
            if nxt is not None:
                text = text + ("\n" if nxt.kind != "sentence" else " ") + nxt.text
        return Lead(text, [Citation.of(n, passages[n - 1].chunk)])
