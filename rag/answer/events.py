"""What an answer stream yields: small typed events, in this order.

1. :class:`Condensed` (chat only): the follow-up question rewritten to stand alone, before retrieval;
2. :class:`Stage` "retrieving", then :class:`Passages`: the retrieved passages as soon as retrieval is done
   (``[n]`` is ``passages[n-1]``; empty when the question was refused on retrieval evidence alone);
3. :class:`Stage` "ranking", then :class:`Quotes`: the handbook's own words that answer the question, whole and
   cited, once the ranking is done (none: the question is refused);
4. :class:`Stage` "explaining" and "checking", then :class:`Delta` ...: the explanation, one verified sentence
   at a time (a sentence is shown only after it passed; nothing shown is withdrawn);
5. :class:`Finished`: the final :class:`rag.answer.Answer` (quotes, explanation, citations, timings).

Consumers branch on the class (``match event: case Delta(text=t): ...``), never on strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rag.types import Passage

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.answer.select import Quote

StageName = Literal["retrieving", "ranking", "explaining", "checking"]


@dataclass(frozen=True)
class Condensed:
    question: str


@dataclass(frozen=True)
class Stage:
    """The step the answer is waiting on now (what a student is told while nothing new is shown);
    ``seconds``: since the question entered the pipeline."""

    name: StageName
    seconds: float


@dataclass(frozen=True)
class Passages:
    passages: list[Passage]


@dataclass(frozen=True)
class Quotes:
    """The selected units, whole and cited; ``seconds``: since the question entered the pipeline."""

    quotes: list[Quote]
    seconds: float


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    answer: Answer


AnswerEvent = Condensed | Stage | Passages | Quotes | Delta | Finished
