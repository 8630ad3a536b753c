"""Grading an answer to a quiz item: MCQ by choice, free text by 0.6 x cosine(answer, reference) + 0.4 x
key-term recall (fast and deterministic; thresholds in ``settings.quiz``)."""

from __future__ import annotations

import re

from rag.embeddings import TextEmbedder
from rag.quiz.models import GradeResult, QuizItem, Verdict
from rag.quiz.text import best_quote, cos, normalize, term_overlap
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


def grade_answer(item: QuizItem, answer: str, embedder: TextEmbedder, settings: QuizSettings) -> GradeResult:
    """Grade one answer, with the passage sentence that holds the right one."""
    quote = best_quote(item.citation.text, f"{item.answer} {item.explanation}")
    answered = bool(normalize(answer))
    verdict: Verdict
    if item.type == "mcq":
        correct = mcq_choice(item, answer) == item.answer
        score = 1.0 if correct else 0.0
        verdict = "correct" if correct else "incorrect"
    elif item.type == "flashcard" and not answered:
        score, verdict = 0.0, "revealed"
    else:
        score = free_text_score(answer, item.answer, embedder)
        verdict = ("correct" if score >= settings.grade_correct
                   else "partial" if score >= settings.grade_partial else "incorrect")
    return GradeResult(verdict, verdict == "correct", score, answered, item.type == "mcq", quote, item.answer,
                       item.explanation, item.citation)
