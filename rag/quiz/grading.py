"""Grading an answer to a quiz item, as its type says (:attr:`rag.quiz.types.QuizType.grade`): a choice by the
option picked, free text by 0.6 x cosine(answer, reference) + 0.4 x key-term recall (fast and deterministic;
thresholds in ``settings.quiz``), a flashcard left blank turned over."""

from __future__ import annotations

import re

from rag.backends.embeddings import TextEmbedder
from rag.quiz.models import GradeResult, QuizItem, Verdict
from rag.quiz.text import best_quote, cos, normalize, term_overlap
from rag.quiz.types import type_of
from rag.settings import QuizSettings

_LETTER = re.compile(r"^\s*\(?([a-dA-D1-4])[).:]?\s*$")


def mcq_choice(item: QuizItem, answer: str) -> str | None:
    """The option the user picked: the option text itself, or a letter A-D / number 1-4."""
    answer = (answer or "").strip()
    if answer in item.options:
        return answer
    m = _LETTER.match(answer)
    if m:
        ch = m.group(1).lower()
        idx = "abcd".index(ch) if ch in "abcd" else int(ch) - 1
        return item.options[idx] if idx < len(item.options) else None
    normed = normalize(answer)
    return next((o for o in item.options if normalize(o) == normed), None)


def free_text_score(answer: str, reference: str, embedder: TextEmbedder) -> float:
    """0.6 x cosine(answer, reference) + 0.4 x share of the reference's key terms in the answer."""
    if not normalize(answer):
        return 0.0
    a, r = embedder.embed([answer, reference])
    recall = term_overlap(reference, answer)
    return max(0.0, 0.6 * cos(a, r) + 0.4 * recall)


def grade_choice(item: QuizItem, answer: str, embedder: TextEmbedder, settings: QuizSettings
                 ) -> tuple[float, Verdict]:
    """A choice among the item's options: right or wrong."""
    correct = mcq_choice(item, answer) == item.answer
    return (1.0, "correct") if correct else (0.0, "incorrect")


def grade_free_text(item: QuizItem, answer: str, embedder: TextEmbedder, settings: QuizSettings
                    ) -> tuple[float, Verdict]:
    """A written answer against the reference (:func:`free_text_score`): correct, partly right or wrong."""
    score = free_text_score(answer, item.answer, embedder)
    return score, ("correct" if score >= settings.grade_correct
                   else "partial" if score >= settings.grade_partial else "incorrect")


def grade_card(item: QuizItem, answer: str, embedder: TextEmbedder, settings: QuizSettings
               ) -> tuple[float, Verdict]:
    """A flashcard: no answer turns the card over; a written one is graded as free text."""
    if not normalize(answer):
        return 0.0, "revealed"
    return grade_free_text(item, answer, embedder, settings)


def grade_answer(item: QuizItem, answer: str, embedder: TextEmbedder, settings: QuizSettings) -> GradeResult:
    """Grade one answer the way the item's type grades (:mod:`rag.quiz.types`), with the passage sentence that
    holds the right one."""
    qtype = type_of(item)
    quote = best_quote(item.citation.text, f"{item.answer} {item.explanation}")
    answered = bool(normalize(answer))
    score, verdict = (qtype.grade or grade_free_text)(item, answer, embedder, settings)
    return GradeResult(verdict, verdict == "correct", score, answered, qtype.choice, quote, item.answer,
                       item.explanation, item.citation)
