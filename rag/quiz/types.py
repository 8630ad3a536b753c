"""Quiz types: everything that differs between kinds of question (multiple choice, short answer, flashcard, ...)
in one :class:`QuizType` per kind, held in one registry.

The generation (:mod:`rag.quiz.generation`), the checks (:mod:`rag.quiz.validation`), the grading
(:mod:`rag.quiz.grading`), the question bank (:mod:`rag.quiz.bank`), the CLI, the Quiz and Review tabs and the
exports (:mod:`ui.quiz_export`) read the registry; none of them names a type. The built-in types are in
:mod:`rag.quiz.builtin_types`; a new type is one :class:`QuizType` passed to :func:`register` (README, "Adding a
quiz type").

The names other modules import (:data:`QUIZ_TYPES`, :data:`BANK_TYPES`, :data:`FAST_FIRST`,
:data:`ANSWER_MAX_CHARS`, :data:`SCHEMAS`) are live views of the registry: a type registered later shows in
them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rag import prompts
from rag.quiz.models import QuizError, QuizItem

if TYPE_CHECKING:
    from rag.backends.embeddings import TextEmbedder
    from rag.quiz.generation import Attempt, QuizMaker
    from rag.quiz.models import QuizSession, Verdict
    from rag.settings import QuizSettings
    from rag.types import Chunk

# (item, the student's answer, embedder, settings) -> (score 0..1, verdict)
Grader = Callable[["QuizItem", str, "TextEmbedder", "QuizSettings"], "tuple[float, Verdict]"]
# item -> why it cannot be shown (None when it is fine); run after the checks every item passes
Checker = Callable[["QuizItem"], "str | None"]
# (the model's JSON object, the type's name, the passage) -> the item; ValueError/TypeError when unusable
Parser = Callable[[dict[str, Any], str, "Chunk"], "QuizItem"]
# (quiz maker, passage, topic, session, most items to try) -> the attempts (the last one valid, or all dropped)
Maker = Callable[["QuizMaker", "Chunk", "str | None", "QuizSession", int], "list[Attempt]"]

DEFAULT_TYPE = "mcq"  # what a quiz is when nobody says (the CLI's --type, the Quiz tab's first choice)
LETTERS = "ABCD"


@dataclass(frozen=True)
class Shown:
    """An item as people read it, in plain text (the CLI prints it; the Review tab and the exports escape it):
    the question, its options with their letters, the answer (with its letter when it is one of them)."""

    question: str
    options: list[tuple[str, str]]  # (letter, option)
    answer: str
    answer_letter: str  # "" when the answer is not a lettered option
    explanation: str


def show_item(item: QuizItem) -> Shown:
    """The usual way: options lettered A-D (then 5, 6, ...), the answer's letter when it is one of them."""
    options = [(LETTERS[i] if i < len(LETTERS) else str(i + 1), o) for i, o in enumerate(item.options)]
    idx = item.answer_index
    letter = LETTERS[idx] if idx is not None and idx < len(LETTERS) else ""
    return Shown(item.question, options, item.answer, letter, item.explanation)


@dataclass(frozen=True)
class QuizType:
    """One kind of quiz question. Only ``name`` and ``label`` are required: the defaults describe a free-text
    question written by the model from one passage with the prompt ``rag/prompts/quiz_<name>.txt``."""

    name: str  # the CLI's --type, the JSON "type", what the study cards and the bank store
    label: str  # what people read: "Multiple choice"

    # -- writing an item from one passage -------------------------------------------------------------
    # The model writes one JSON object (``schema``: the grammar makes every reply parse) from the prompt
    # ``template`` (the text) or ``prompt`` (a file under rag/prompts/, default "quiz_<name>"; placeholders
    # {title} {section} {text} {focus} {avoid}), after the shared system prompt (quiz_system.txt).
    schema: dict[str, Any] | None = None
    prompt: str = ""
    template: str = ""
    max_tokens: int = 200
    parse: Parser | None = None  # None: the object's "question", "answer" and "explanation"
    make: Maker | None = None  # the type writes its items itself (MCQs: from the glossaries), not from ``schema``

    # -- checks and grading ---------------------------------------------------------------------------------
    answer_max_chars: int = 240  # the schema's bound: an answer that fills it was cut off
    check: Checker | None = None  # the type's own checks (None: only the common ones)
    grade: Grader | None = None  # None: free text (0.6 x cosine to the reference + 0.4 x key-term recall)
    dedupe_by_question: bool = True  # reject a question close to an earlier one (False: the type finds repeats)

    # -- how people see it ------------------------------------------------------------------------------------
    choice: bool = False  # the student picks one of ``item.options`` (by the option or its letter)
    noun: str = "Question"  # "Question 2 of 5", "Card 2 of 5"
    answer_heading: str = "Answer"  # what the feedback calls the right answer
    answer_hint: str = "Your answer"  # the label of the free-text answer box
    plural: str = ""  # several of them, in a sentence: "flashcards" (default: the label, lower case, plus "s")
    show: Callable[[QuizItem], Shown] = show_item  # the CLI, the Review tab, CSV and Anki exports

    # -- the question bank ----------------------------------------------------------------------------------
    bank_rank: int | None = None  # place in the bank's fill order, quickest first (None: never banked)
    fast_first: str | None = None  # an interactive quiz with nothing banked starts with one item of this type

    @property
    def many(self) -> str:
        return self.plural or f"{self.label[:1].lower()}{self.label[1:]}s"

    def user_template(self) -> str:
        return self.template or prompts.load(self.prompt or f"quiz_{self.name}")


_TYPES: dict[str, QuizType] = {}


def register(qtype: QuizType, *, replace: bool = False) -> QuizType:
    """Add a type to the registry (the order of registration is the order people see); :class:`QuizError` when
    the name is taken (``replace=True`` swaps it in place) or names no usable type."""
    if not qtype.name or not qtype.name.isidentifier() or not qtype.label.strip():
        raise QuizError(f"A quiz type needs a name that is one word and a label; got {qtype.name!r}.")
    if qtype.name in _TYPES and not replace:
        raise QuizError(f"The quiz type {qtype.name!r} is registered already.")
    if qtype.make is None and qtype.schema is None:
        raise QuizError(f"The quiz type {qtype.name!r} needs a JSON schema for the model or its own maker.")
    _TYPES[qtype.name] = qtype
    return qtype


def unregister(name: str) -> None:
    """Remove a type (a test's or a plugin's); unknown names are ignored."""
    _TYPES.pop(name, None)


def lookup(name: str) -> QuizType | None:
    return _TYPES.get(name)


def quiz_type(name: str) -> QuizType:
    """The registered type called ``name``; :class:`QuizError` (one sentence) for an unknown one."""
    found = _TYPES.get(name)
    if found is None:
        raise QuizError(f"Unknown quiz type {name!r}: use one of {', '.join(_TYPES)}.")
    return found


def type_of(item: QuizItem) -> QuizType:
    """The type of an item; an item of a type not registered (a card from a removed plugin) is shown and graded
    as a free-text question."""
    return _TYPES.get(item.type) or QuizType(item.type or "question", item.type or "Question")


def quiz_types() -> list[QuizType]:
    return list(_TYPES.values())


def type_choices() -> list[tuple[str, str]]:
    """(label, name) of every type, for a menu."""
    return [(t.label, t.name) for t in _TYPES.values()]


def spoken_choices() -> str:
    """The types as a sentence says them: "multiple choice, short answer or flashcard"."""
    labels = [t.label[:1].lower() + t.label[1:] for t in _TYPES.values()]
    return " or ".join([", ".join(labels[:-1]), labels[-1]]) if len(labels) > 1 else "".join(labels)


# --- live views of the registry ----------------------------------------------------------------------------
V = TypeVar("V")


class _Names(Sequence[str]):
    """A tuple of type names computed from the registry on each use."""

    def __init__(self, pick: Callable[[], list[str]]) -> None:
        self._pick = pick

    def __getitem__(self, i: Any) -> Any:
        return tuple(self._pick())[i]

    def __len__(self) -> int:
        return len(self._pick())

    def __iter__(self) -> Iterator[str]:
        return iter(self._pick())

    def __eq__(self, other: object) -> bool:
        return tuple(self._pick()) == (tuple(other) if isinstance(other, Sequence) else other)

    def __repr__(self) -> str:
        return repr(tuple(self._pick()))


class _Table(Mapping[str, V]):
    """A dict (type name -> value) computed from the registry on each use."""

    def __init__(self, pick: Callable[[], dict[str, V]]) -> None:
        self._pick = pick

    def __getitem__(self, key: str) -> V:
        return self._pick()[key]

    def __len__(self) -> int:
        return len(self._pick())

    def __iter__(self) -> Iterator[str]:
        return iter(self._pick())

    def __repr__(self) -> str:
        return repr(self._pick())


# Every type, in registration order.
QUIZ_TYPES: Sequence[str] = _Names(lambda: list(_TYPES))
# The types the question bank fills, the quickest first.
BANK_TYPES: Sequence[str] = _Names(
    lambda: [t.name for t in sorted((t for t in _TYPES.values() if t.bank_rank is not None),
                                    key=lambda t: t.bank_rank or 0)])
# type -> the type an interactive quiz of it starts with when the bank has nothing ready.
FAST_FIRST: Mapping[str, str] = _Table(lambda: {t.name: t.fast_first for t in _TYPES.values() if t.fast_first})
# type -> the longest answer its schema allows.
ANSWER_MAX_CHARS: Mapping[str, int] = _Table(lambda: {t.name: t.answer_max_chars for t in _TYPES.values()})
# type -> the JSON schema the model writes an item in (the types the model writes from a schema).
SCHEMAS: Mapping[str, dict[str, Any]] = _Table(
    lambda: {t.name: t.schema for t in _TYPES.values() if t.schema is not None})
