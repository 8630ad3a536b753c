"""The quiz nouns: items, results, grades, and the session that remembers what a student was asked."""

from __future__ import annotations

import random
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rag.errors import QueryError
from rag.types import Chunk, Citation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    # Views of the quiz-type registry (rag.quiz.types), read through __getattr__ below.
    QUIZ_TYPES: Sequence[str]
    ANSWER_MAX_CHARS: Mapping[str, int]

# The most questions one quiz may ask for (QuizMaker, the CLI and the API; the Quiz tab stops at 10): a product
# choice of the first quiz code (2026-11-25), not tuned; 20 glossary MCQs take some 11 minutes on 2 cores at the
# measured 32.6 s a valid item (README, quizzes).
MAX_ITEMS = 20
# A passage shorter than this is not quizzed (a heading and a line): set by hand with the first quiz code, not
# tuned; 12 of the handbooks' 234 chunks are shorter.
MIN_PASSAGE_CHARS = 150
# Sections that are reading lists, link collections or chatty endings: nothing to quiz on.
_SKIP_SECTION = re.compile(
    r"recommended books|additional resources|next steps|table of contents|further reading|references\b",
    re.I,
)


def __getattr__(name: str) -> Any:
    """``QUIZ_TYPES`` and ``ANSWER_MAX_CHARS`` are views of the quiz-type registry (:mod:`rag.quiz.types`),
    still importable from here."""
    if name in ("QUIZ_TYPES", "ANSWER_MAX_CHARS"):
        from rag.quiz import types

        return getattr(types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def string_schema(min_len: int, max_len: int) -> dict[str, Any]:
    """A JSON-schema string of bounded length (the grammar stops the model at ``max_len``)."""
    return {"type": "string", "minLength": min_len, "maxLength": max_len}


class QuizError(QueryError):
    """A quiz cannot be made (unknown topic, bad request); ``str(err)`` is one sentence for the user."""


@dataclass
class QuizItem:
    type: str
    question: str
    answer: str
    explanation: str
    options: list[str]
    citation: Citation  # the one passage the item was written from (n = 1)
    support: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "explanation": self.explanation,
            "citation": self.citation.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuizItem:
        return cls(
            type=str(data.get("type", "short")),
            question=str(data["question"]),
            answer=str(data["answer"]),
            explanation=str(data.get("explanation", "")),
            options=[str(o) for o in data.get("options") or []],
            citation=Citation.from_json(data.get("citation") or {}),
        )

    @property
    def answer_index(self) -> int | None:
        try:
            return self.options.index(self.answer)
        except ValueError:
            return None


@dataclass
class QuizResult:
    topic: str | None
    type: str
    items: list[QuizItem]
    dropped: int = 0
    generated: int = 0  # model calls (valid + dropped)
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)  # why each dropped item was dropped
    coverage: tuple[int, int] = (0, 0)  # (sections quizzed in the session so far, quizzable sections)
    banked: int = 0  # items served from the question bank (rag.quiz.bank), made before they were asked for

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "type": self.type,
            "items": [i.to_json() for i in self.items],
            "dropped": self.dropped,
        }


Verdict = Literal["correct", "partial", "incorrect", "revealed"]  # revealed: a flashcard turned over


@dataclass
class GradeResult:
    """A grade as data: the UI writes the feedback (``ui.render.grade_feedback``)."""

    verdict: Verdict
    correct: bool
    score: float
    answered: bool  # the student gave an answer at all
    mcq: bool  # the item was multiple choice
    quote: str  # the passage sentence that holds the answer
    reference: str  # the right answer
    explanation: str
    citation: Citation

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "correct": self.correct,
            "score": round(self.score, 3),
            "answered": self.answered,
            "mcq": self.mcq,
            "quote": self.quote,
            "reference": self.reference,
            "explanation": self.explanation,
            "citation": self.citation.to_json(),
        }


def section_key(chunk: Chunk) -> str:
    """The coverage unit: a document's top-level section ("file::Section 8 — Ensemble Methods")."""
    top = chunk.section.split(" > ")[0].strip() if chunk.section else "(start)"
    return f"{chunk.source}::{top}"


def quizzable(chunk: Chunk) -> bool:
    return len(chunk.text.strip()) >= MIN_PASSAGE_CHARS and not _SKIP_SECTION.search(chunk.section or "")


class QuizSession:
    """What one user has been quizzed on: used sections (coverage) and chunks, earlier questions (so
    "more questions" does not repeat one), and the random generator for passage and option order."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.used_sections: dict[str, int] = {}
        self.used_chunks: set[str] = set()
        self.last_section: str | None = None
        self.questions: list[str] = []
        self.question_vectors: list[list[float]] = []
        self.items: list[QuizItem] = []

    def record(self, item: QuizItem, chunk: Chunk, vector: list[float]) -> None:
        key = section_key(chunk)
        self.used_sections[key] = self.used_sections.get(key, 0) + 1
        self.used_chunks.add(chunk.id)
        self.last_section = key
        self.questions.append(item.question)
        self.question_vectors.append(vector)
        self.items.append(item)

    def avoid(self, questions: list[str], vectors: list[list[float]], chunk_ids: Collection[str] = ()) -> None:
        """Questions asked before (a student's earlier cards): a new item too close to one is rejected, and
        their passages are used last."""
        self.questions.extend(questions)
        self.question_vectors.extend(vectors)
        self.used_chunks |= set(chunk_ids)

    def coverage(self, chunks: dict[str, Chunk]) -> tuple[int, int]:
        """(sections quizzed so far, quizzable sections in the index)."""
        keys = {section_key(c) for c in chunks.values() if quizzable(c)}
        return len(keys & set(self.used_sections)), len(keys)
