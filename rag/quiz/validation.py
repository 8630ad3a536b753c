"""Checks a quiz item must pass before a student sees it (thresholds in ``settings.quiz``)."""

from __future__ import annotations

import re

from rag.backends.embeddings import TextEmbedder
from rag.quiz.models import QuizItem
from rag.quiz.text import cos, normalize, term_overlap
from rag.quiz.types import type_of
from rag.settings import QuizSettings

_BAD_OPTION = re.compile(r"^(?:all|none|both|neither) of (?:the )?(?:above|these|them)$")
# An answer that stops on one of these words was cut off ("... not reliant on"): the sentence has no end.
_DANGLING = re.compile(
    r"\b(?:a|an|the|of|on|in|to|for|with|by|from|at|as|and|or|but|nor|than|that|which|whose|is|are|was|"
    r"were|be|its|their|not|into|onto|between|such|very|more|most|less|across|over|under|about|through|"
    r"within|without|per|via|vs|versus|like|including|among|toward|towards|each|both|every|all)$", re.I)


def cut_off(text: str, max_chars: int) -> bool:
    """Whether a field reads as truncated: it filled its schema bound (within 3 characters: the grammar stopped
    it, and "... feature reuse across" was 108 of 110), ends on a function word or an ellipsis, or leaves a
    bracket or quote open."""
    t = text.strip()
    if max_chars - 3 <= len(t) <= max_chars or t.endswith(("…", "...", ",", ":", ";", "-", "(")):
        return True
    if _DANGLING.search(t.rstrip(".!?")):
        return True
    return t.count("(") > t.count(")") or t.count("[") > t.count("]") or t.count('"') % 2 == 1


def support_scores(item: QuizItem, embedder: TextEmbedder, passage: str) -> dict[str, float]:
    """How well the cited passage supports the item: embedding similarities and key-term overlap."""
    qa = f"{item.question} {item.answer}"
    vecs = embedder.embed([qa, item.answer, passage, item.question])
    return {
        "sim_qa": round(cos(vecs[0], vecs[2]), 4),
        "sim_answer": round(cos(vecs[1], vecs[2]), 4),
        "overlap": round(term_overlap(item.answer, passage), 4),
        "sim_q_answer": round(cos(vecs[3], vecs[1]), 4),
    }


def is_supported(scores: dict[str, float], settings: QuizSettings) -> bool:
    return scores["sim_qa"] >= settings.support_min_similarity or scores["overlap"] >= settings.support_min_overlap


def check_options(item: QuizItem) -> str | None:
    """Why the MCQ options are unusable (None when they are fine)."""
    if len(item.options) != 4:
        return f"MCQ needs exactly 4 distinct options, got {len(item.options)}"
    normed = [normalize(o) for o in item.options]
    if any(not n for n in normed):
        return "an option is empty"
    if len(set(normed)) != 4:
        return "options are not distinct"
    if item.answer not in item.options:
        return "the answer is not among the options"
    if any(_BAD_OPTION.match(n) for n in normed):
        return 'an option is "all/none of the above"'
    return None


def check_choice(item: QuizItem) -> str | None:
    """A multiple-choice item's own checks: no distractor cut off, and usable options (:func:`check_options`)."""
    if any(cut_off(o, type_of(item).answer_max_chars) for o in item.options if o != item.answer):
        return "an option is cut off"
    return check_options(item)


def answer_differs(item: QuizItem) -> str | None:
    """A written answer must say more than its question."""
    return "the answer repeats the question" if normalize(item.answer) == normalize(item.question) else None


def check_item(item: QuizItem) -> str | None:
    """Shape checks that need no embedder (None when the item is fine): those every item passes, then its
    type's own (:attr:`rag.quiz.types.QuizType.check`)."""
    qtype = type_of(item)
    if len(item.question) < 8 or not re.search(r"[A-Za-z]", item.question):
        return "the question is empty or too short"
    if not normalize(item.answer):
        return "the answer is empty"
    if cut_off(item.answer, qtype.answer_max_chars):
        return "the answer is cut off"
    return qtype.check(item) if qtype.check is not None else None


def rejection(item: QuizItem, passage: str, earlier: list[tuple[str, list[float]]], embedder: TextEmbedder,
              settings: QuizSettings) -> tuple[str | None, list[float]]:
    """(why the item is rejected, or None; the question's embedding). ``earlier``: the session's questions
    and their embeddings (near-duplicates are rejected)."""
    reason = check_item(item)
    if reason:
        return reason, []
    item.support = support_scores(item, embedder, passage)
    if not is_supported(item.support, settings):
        return (
            f"answer not supported by its passage (similarity {item.support['sim_qa']:.2f}, "
            f"term overlap {item.support['overlap']:.2f})",
            [],
        )
    vector = embedder.embed_query(item.question)
    for question, vec in earlier:
        sim = cos(vector, vec)
        if sim > settings.duplicate_similarity:
            return f"near-duplicate of an earlier question ({sim:.2f}): {question[:60]}", []
    return None, vector

