"""Quiz questions on demand, from the handbooks' own passages.

* :mod:`rag.quiz.types` - the quiz-type registry: what differs between multiple choice, short answers and
  flashcards (schema, prompt, checks, grading, labels, export) is one :class:`QuizType` each, and everything
  else reads it; :mod:`rag.quiz.builtin_types` registers the three built-in ones;
* :mod:`rag.quiz.models` - items, results, grades, the session;
* :mod:`rag.quiz.generation` - passage picking, prompts, :class:`QuizMaker`;
* :mod:`rag.quiz.validation` - the checks an item passes before it is shown;
* :mod:`rag.quiz.grading` - grading answers;
* exports (CSV, Anki, JSON) are in the UI layer: :mod:`ui.quiz_export`.

The thresholds (``settings.quiz``) were measured on the bundled corpus with ``bench/quiz.py`` (README).
"""

# The built-in types are registered first (this import comes first): rag.quiz.glossary reads the MCQ type's
# answer bound when it is imported.
from rag.quiz.builtin_types import FLASHCARD, MCQ, SHORT
from rag.quiz.generation import Attempt, QuizMaker, parse_item, quiz_messages
from rag.quiz.grading import free_text_score, grade_answer, mcq_choice
from rag.quiz.models import (
    MAX_ITEMS,
    GradeResult,
    QuizError,
    QuizItem,
    QuizResult,
    QuizSession,
    quizzable,
    section_key,
)
from rag.quiz.text import best_quote, key_terms, normalize, term_overlap
from rag.quiz.types import (
    QUIZ_TYPES,
    SCHEMAS,
    QuizType,
    Shown,
    quiz_type,
    quiz_types,
    register,
    type_choices,
    type_of,
    unregister,
)
from rag.quiz.validation import check_item, check_options, is_supported, support_scores

__all__ = [
    "FLASHCARD", "MAX_ITEMS", "MCQ", "QUIZ_TYPES", "SCHEMAS", "SHORT", "Attempt", "GradeResult", "QuizError",
    "QuizItem", "QuizMaker", "QuizResult", "QuizSession", "QuizType", "Shown", "best_quote", "check_item",
    "check_options", "free_text_score", "grade_answer", "is_supported", "key_terms", "mcq_choice", "normalize",
    "parse_item", "quiz_messages", "quiz_type", "quiz_types", "quizzable", "register", "section_key",
    "support_scores", "term_overlap", "type_choices", "type_of", "unregister",
]
