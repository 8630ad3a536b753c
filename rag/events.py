"""What an answer stream yields: small typed events, in this order.

1. :class:`Condensed` (chat only): the follow-up question rewritten to stand alone, before retrieval;
2. :class:`Passages`: as soon as retrieval and packing are done, before generation: the numbered passages
   given to the model (``[n]`` is ``passages[n-1]``; empty when the question was refused on retrieval
   evidence alone);
   :class:`LeadReady` (evidence-first answers): the handbook's own best sentence(s), cited, within a second;
3. :class:`Delta` ...: answer text as it is generated (invalid citation markers already removed);
4. :class:`Finished`: the final :class:`rag.answer.Answer` (its text is authoritative: replace the streamed text).

Consumers branch on the class (``match event: case Delta(text=t): ...``), never on strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.types import Passage

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.evidence import Lead


@dataclass(frozen=True)
class Condensed:
    question: str


@dataclass(frozen=True)
class Passages:
    passages: list[Passage]


@dataclass(frozen=True)
class LeadReady:
    """The extractive lead; ``seconds``: from the question entering the pipeline. A later refusal withdraws it
    (the :class:`Finished` answer then has no lead)."""

    lead: Lead
    seconds: float


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    answer: Answer


AnswerEvent = Condensed | Passages | LeadReady | Delta | Finished
