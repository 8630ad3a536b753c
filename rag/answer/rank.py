"""Rank the evidence: which unit of the retrieved passages answers the question.

Two scores, measured on the project's labelled question sets (``bench/rank.py``):

* the **scorer** (:func:`candidates`), cheap and for every quotable unit of the retrieved passages::

      score = w_dense * cos(question, unit as shown)  # the retrieval embedder
            + w_terms * (idf-weighted share of the question's terms in the unit
                         + 0.5 x the share only its context / section path holds)
            + w_rank  * 1 / (1 + passage rank)         # the hybrid retriever's order

  halved for a unit of fewer than three content words. It rewards a unit that restates the question, so it
  only shortlists;
* the **judge** (:class:`Judge`): the model asked, for one unit at a time, "does this excerpt answer the
  question?", read as log P(yes) - log P(no) of its first reply token (:meth:`rag.llm.LLM.yes_no`). The system
  message and the question come first in the prompt, so the KV cache holds them and each unit costs only its
  own tokens. The 1.5B model judges one excerpt well where it cannot choose among ten.

:func:`rank` orders the shortlist's top units by ``scorer + judge_weight x judge`` (the rest keep the scorer's
order below them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rag import prompts
from rag.text import tokenize
from rag.types import Passage
from rag.units import Unit, quotable, split_units, whole

if TYPE_CHECKING:
    from rag.backends.embeddings import TextEmbedder
    from rag.llm import LLM
    from rag.settings import AnswerSettings

# A unit with fewer content words than this is a fragment ("Gradient descent (batch)"): half its score. 3: a design
# choice of the ranking (2026-12-05), not tuned on its own.
MIN_CONTENT_WORDS = 3


@dataclass(frozen=True)
class Candidate:
    """A quotable unit of a retrieved passage, as shown (:func:`rag.units.whole`), with its scores."""

    unit: Unit
    text: str  # the unit whole: with its list introduction, table header row, label or antecedent
    passage: int  # index into the candidate passages
    section: str
    score: float  # the scorer's
    dense: float
    terms: float
    judge: float | None = None  # the model's log-odds that it answers (None: not asked)
    final: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return (self.passage, self.unit.start)


@dataclass
class Ranking:
    """The candidates best first (``judged`` of them asked to the model) and what it cost."""

    candidates: list[Candidate]
    judged: int = 0
    seconds: float = 0.0
    judge_seconds: float = 0.0

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def best_judge(self) -> float | None:
        """The highest judge log-odds among the judged units (None when none was judged)."""
        scores = [c.judge for c in self.candidates if c.judge is not None]
        return max(scores) if scores else None


class Scorer:
    """The cheap unit scorer (see the module doc); unit vectors are cached by text."""

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

    def candidates(self, question: str, passages: Sequence[Passage]) -> list[Candidate]:
        """Every quotable unit of ``passages`` (whole), best scorer score first."""
        s = self.settings
        found: list[tuple[Unit, str, str]] = []
        for i, p in enumerate(passages):
            text = p.chunk.text
            units = split_units(text, i)
            for u in units:
                if quotable(units, u, text):
                    found.append((u, whole(units, u, text), p.chunk.section))
        if not found:
            return []
        q_terms = list(dict.fromkeys(tokenize(question)))
        weights = {t: max(self.idf(t), 0.0) for t in q_terms}
        total = sum(weights.values()) or 1.0
        dense = [0.0] * len(found)
        if self.embedder is not None and s.evidence_dense_weight > 0:
            vecs = self._embed([question] + [shown for _, shown, _ in found])
            qv = vecs[0]
            dense = [sum(a * b for a, b in zip(qv, v, strict=True)) for v in vecs[1:]]
        section_terms = [set(tokenize(p.chunk.section + " " + p.chunk.title)) for p in passages]
        out = []
        for (u, shown, section), d in zip(found, dense, strict=True):
            own = tokenize(u.text)
            have = set(own)
            around = set(tokenize(shown)) | section_terms[u.passage]
            terms = sum(w for t, w in weights.items() if t in have) / total
            ctx = sum(w for t, w in weights.items() if t in around and t not in have) / total
            score = (s.evidence_dense_weight * d + s.evidence_terms_weight * (terms + 0.5 * ctx)
                     + s.evidence_rank_weight / (1 + u.passage))
            if len(own) < MIN_CONTENT_WORDS and u.kind != "code":
                score *= 0.5
            out.append(Candidate(u, shown, u.passage, section, score, d, terms))
        out.sort(key=lambda c: -c.score)
        return out


class Judge:
    """The model's pointwise judgement of units (see the module doc)."""

    def __init__(self, llm: Callable[[], LLM]) -> None:
        self._llm = llm

    def score(self, question: str, cands: Sequence[Candidate]) -> list[float]:
        llm = self._llm()
        out = []
        for c in cands:
            messages, shared = prompts.judge_messages(question, c.text)
            out.append(llm.yes_no(messages, shared))
        return out


def rank(cands: Sequence[Candidate], judge: Callable[[Sequence[Candidate]], list[float]] | None, *,
         top: int, weight: float) -> Ranking:
    """The candidates reordered: the scorer's ``top`` are asked to ``judge`` and ordered by ``scorer + weight x
    judge``; the rest follow in the scorer's order. Without a judge (or ``top`` 0) the scorer's order."""
    t = time.perf_counter()
    head = list(cands[:top]) if judge is not None else []
    judge_s = 0.0
    if head:
        t_judge = time.perf_counter()
        scores = judge(head)  # type: ignore[misc]
        judge_s = time.perf_counter() - t_judge
        head = [replace(c, judge=j, final=c.score + weight * j) for c, j in zip(head, scores, strict=True)]
        head.sort(key=lambda c: -c.final)
    tail = [replace(c, final=c.score - 1e6) for c in cands[len(head):]]  # below every judged unit
    if not head:
        tail = [replace(c, final=c.score) for c in cands]
    return Ranking(head + tail, judged=len(head), seconds=round(time.perf_counter() - t, 3),
                   judge_seconds=round(judge_s, 3))
