"""Quiz questions on demand, from the handbooks' own passages.

* :mod:`rag.quiz.models` - items, results, grades, the session;
* :mod:`rag.quiz.generation` - passage picking, prompts and schemas, :class:`QuizMaker`;
* :mod:`rag.quiz.validation` - the checks an item passes before it is shown;
* :mod:`rag.quiz.grading` - grading answers;
* exports (CSV, Anki, JSON) are in the UI layer: :mod:`ui.quiz_export`.

The thresholds (``settings.quiz``) were measured on the bundled corpus with ``bench/quiz.py`` (README).
"""

from rag.quiz.generation import SCHEMAS, Attempt, QuizMaker, parse_item, quiz_messages
from rag.quiz.grading import free_text_score, grade_answer, mcq_choice
from rag.quiz.models import (
    MAX_ITEMS,
    QUIZ_TYPES,
    GradeResult,
    QuizError,
    QuizItem,
    QuizResult,
    QuizSession,
    QuizType,
    quizzable,
    section_key,
)
from rag.quiz.text import best_quote, key_terms, normalize, term_overlap
from rag.quiz.validation import check_item, check_options, is_supported, support_scores

__all__ = [
    "MAX_ITEMS", "QUIZ_TYPES", "SCHEMAS", "Attempt", "GradeResult", "QuizError", "QuizItem", "QuizMaker",
    "QuizResult", "QuizSession", "QuizType", "best_quote", "check_item", "check_options", "free_text_score",
    "grade_answer", "is_supported", "key_terms", "mcq_choice", "normalize", "parse_item", "quiz_messages",
    "quizzable", "section_key", "support_scores", "term_overlap",
]
