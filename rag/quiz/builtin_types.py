"""The three built-in quiz types, one :class:`rag.quiz.types.QuizType` each, registered in the order people see
them (multiple choice first: the default). A new type is written the same way (README, "Adding a quiz type")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.quiz.grading import grade_card, grade_choice
from rag.quiz.models import string_schema
from rag.quiz.types import QuizType, register
from rag.quiz.validation import answer_differs, check_choice

if TYPE_CHECKING:
    from rag.quiz.generation import Attempt, QuizMaker
    from rag.quiz.models import QuizSession
    from rag.types import Chunk


def _glossary_mcqs(maker: QuizMaker, chunk: Chunk, topic: str | None, session: QuizSession, limit: int
                   ) -> list[Attempt]:
    return maker.generate_mcq(chunk, session, limit)


# Multiple choice from the glossaries: the key is a term the passage defines, the distractors other terms'
# definitions (rag.quiz.glossary, rag.quiz.mcq). 110 characters for an option: a glossary definition of at most
# about 16 words (the glossary's schema reads this bound). A valid one took 32.6 s on 2 cores (bench/quiz.py), so
# a quiz with nothing banked starts with a flashcard.
MCQ = register(QuizType(
    name="mcq",
    label="Multiple choice",
    make=_glossary_mcqs,
    answer_max_chars=110,
    check=check_choice,
    grade=grade_choice,
    dedupe_by_question=False,  # the question is a template around its term: repeats are found by term
    choice=True,
    plural="multiple choice",
    bank_rank=2,
    fast_first="flashcard",
))

# The longest short answer the schema lets the model write (an answer that fills it was cut off by the grammar:
# rag.quiz.validation.cut_off). Set by hand with the first quiz code (2026-11-25), not measured.
SHORT_ANSWER_MAX_CHARS = 200
SHORT = register(QuizType(
    name="short",
    label="Short answer",
    schema={
        "type": "object",
        "properties": {"question": string_schema(10, 180), "answer": string_schema(2, SHORT_ANSWER_MAX_CHARS),
                       "explanation": string_schema(10, 220)},
        "required": ["question", "answer", "explanation"],
    },
    prompt="quiz_short",
    max_tokens=220,
    answer_max_chars=SHORT_ANSWER_MAX_CHARS,
    check=answer_differs,
    plural="short answers",
    bank_rank=1,
))

# The longest back of a flashcard, read the same way: set by hand with the first quiz code, not measured.
FLASHCARD_ANSWER_MAX_CHARS = 240
FLASHCARD = register(QuizType(
    name="flashcard",
    label="Flashcard",
    schema={
        "type": "object",
        "properties": {"question": string_schema(2, 120), "answer": string_schema(2, FLASHCARD_ANSWER_MAX_CHARS)},
        "required": ["question", "answer"],
    },
    prompt="quiz_flashcard",
    max_tokens=170,
    answer_max_chars=FLASHCARD_ANSWER_MAX_CHARS,
    check=answer_differs,
    grade=grade_card,
    noun="Card",
    answer_heading="Back of the card",
    answer_hint="Your answer (or leave it empty and check to turn the card over)",
    bank_rank=0,
))
