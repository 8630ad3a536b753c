"""The Quiz tab's flow, as plain functions over a typed :class:`QuizState` (tested without a browser).

* :func:`start_quiz` - a new quiz (a fresh :class:`rag.quiz.QuizSession`);
* :func:`check_answer` - grade the current question (``StudyService.grade``);
* :func:`next_question` - move on once the current question is checked;
* :func:`more_questions` - a new round on the same topic and type, with the *same* QuizSession, so earlier
  questions and passages are not repeated;
* :func:`export_quiz` - all questions so far as .csv / Anki .txt / Anki .apkg in a server-side export folder.

The browser's ``gr.State`` holds the QuizState; the QuizSession objects stay on the server in
:class:`QuizSessions`, a small bounded dict keyed by the state's id.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rag.errors import StudybotError
from rag.quiz import QUIZ_TYPES, GradeResult, QuizError, QuizItem, QuizResult, QuizSession
from rag.study.store import LOCAL_USER, VERDICT_RATING
from rag.types import Progress
from ui.quiz_export import export_items

if TYPE_CHECKING:
    from collections.abc import Callable

    from ui.service import StudyService

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_COUNT, MAX_COUNT, DEFAULT_COUNT = 1, 10, 5
MAX_TOPIC_CHARS = 120
# label -> file suffix (export_items picks the format from the suffix)
EXPORT_FORMATS: dict[str, str] = {"CSV": ".csv", "Anki deck (.apkg)": ".apkg", "Anki text (.txt)": ".txt"}
DEFAULT_EXPORT = "CSV"


# --- server-side quiz sessions ------------------------------------------------------------------------
class QuizSessions:
    """QuizSession objects by state id (the browser holds only the id and the items); oldest dropped first."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, QuizSession] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def new(self, key: str) -> QuizSession:
        session = QuizSession()
        with self._lock:
            self._items[key] = session
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return session

    def get(self, key: str, items: list[QuizItem] | None = None) -> QuizSession:
        """The session of ``key``; a lost one (evicted, server restarted) is rebuilt from the items so far
        (their passages count as used and their questions are avoided for the same passage)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        session = self.new(key)
        for item in items or []:
            session.items.append(item)
            if item.citation.chunk_id:
                session.used_chunks.add(item.citation.chunk_id)
        return session

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._items.pop(key or "", None)


# --- state ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checked:
    answer: str  # what the student answered
    grade: GradeResult


@dataclass(frozen=True)
class QuizState:
    """One quiz as the page holds it: the questions of every round so far, and what was answered."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    topic: str | None = None
    type: str = "mcq"
    n: int = DEFAULT_COUNT
    items: tuple[QuizItem, ...] = ()
    results: tuple[Checked | None, ...] = ()  # results[i] is None until item i is checked
    round_start: int = 0  # index of the first item of the current round
    index: int = 0  # the current item
    rounds: int = 0
    dropped: int = 0  # generated items that failed validation, all rounds
    message: str = ""
    error: str = ""
    user: str = LOCAL_USER  # whose study cards the items become (the signed-in user)
    card_ids: tuple[int, ...] = ()  # card_ids[i]: item i's study card
    weak: bool = False  # questions from the user's weak spots (StudyService.weak_quiz)

    @property
    def current(self) -> tuple[int, QuizItem] | None:
        return (self.index, self.items[self.index]) if 0 <= self.index < len(self.items) else None

    def score(self, *, all_rounds: bool = False) -> tuple[int, int]:
        """(correct answers, questions) in the current round (or in all rounds)."""
        results = self.results[0 if all_rounds else self.round_start:]
        return sum(1 for r in results if r and r.grade.correct), len(results)

    @property
    def finished(self) -> bool:
        """Every question of the current round is checked."""
        results = self.results[self.round_start:]
        return bool(results) and all(r is not None for r in results)


def _count(value: Any) -> int:
    try:
        n = int(float(value))
    except (TypeError, ValueError):
        raise QuizError(f"Choose how many questions: a number from {MIN_COUNT} to {MAX_COUNT}.") from None
    if not MIN_COUNT <= n <= MAX_COUNT:
        raise QuizError(f"Choose between {MIN_COUNT} and {MAX_COUNT} questions (got {n}).")
    return n


def _type(value: Any) -> str:
    qtype = str(value or "mcq")
    if qtype not in QUIZ_TYPES:
        raise QuizError(f"Unknown question type {qtype!r}: choose multiple choice, short answer or flashcard.")
    return qtype


def _generated_note(n_items: int, asked: int, dropped: int) -> str:
    """The line a student reads when the questions are ready. How many generated items the checks dropped
    is for the log, not the student (they see only the questions that passed)."""
    if dropped:
        log.info("quiz: %d generated item(s) failed validation and were dropped", dropped)
    ready = f"{n_items} question{'s' if n_items != 1 else ''} ready"
    if n_items >= asked:
        return ready + "."
    return (f"{ready} (you asked for {asked}): the handbooks' passages on this topic gave no more questions "
            "that could be checked against them.")


def _generate(service: StudyService, st: QuizState, session: QuizSession, progress: Progress | None
              ) -> tuple[QuizResult, tuple[int, ...], str | None]:
    """(the quiz, the items' study card ids, the topic shown): a quiz on the topic or from the weak spots;
    its items become the user's study cards."""
    topic = st.topic
    if st.weak:
        result, weak = service.weak_quiz(st.user, st.n, st.type, session=session, progress=progress)
        topic = "your weak spots: " + "; ".join(w["section"] for w in weak)
    else:
        result = service.quiz(st.topic, st.n, st.type, session=session, progress=progress)
    return result, tuple(service.record_quiz(st.user, result.items)), topic


def start_quiz(service: StudyService, sessions: QuizSessions, topic: Any, qtype: Any, count: Any,
               state: QuizState | None = None, progress: Progress | None = None, *, user: str = LOCAL_USER,
               weak: bool = False) -> QuizState:
    """A new quiz with a fresh QuizSession (``weak``: from the user's weak spots, ignoring ``topic``); its
    items become ``user``'s study cards. On a :class:`StudybotError` (unknown topic, no weak spot, bad count,
    model trouble) the state has no items and ``error`` holds the one-sentence reason."""
    if state is not None:
        sessions.drop(state.id)
    text = None if weak else re.sub(r"\s+", " ", str(topic or "")).strip()[:MAX_TOPIC_CHARS] or None
    st = QuizState(topic=text, user=user, weak=weak)
    try:
        st = replace(st, type=_type(qtype), n=_count(count))
        session = sessions.new(st.id)
        result, ids, shown = _generate(service, st, session, progress)
    except StudybotError as exc:
        sessions.drop(st.id)
        return replace(st, error=str(exc))
    return replace(st, topic=shown, items=tuple(result.items), results=(None,) * len(result.items),
                   card_ids=ids, dropped=result.dropped, rounds=1,
                   message=_generated_note(len(result.items), st.n, result.dropped))


def _begin(state: QuizState) -> tuple[QuizState, tuple[int, QuizItem] | None]:
    """The state with the error cleared, and its current question (None: "Start a quiz first.")."""
    st = replace(state, error="")
    cur = st.current
    return (st if cur is not None else replace(st, message="Start a quiz first.")), cur


def check_answer(service: StudyService, state: QuizState, answer: Any) -> QuizState:
    """Grade the current question (once); after the last question of the round the score is shown."""
    st, cur = _begin(state)
    if cur is None:
        return st
    i, item = cur
    if st.results[i] is not None:
        return replace(st, message="This question is already checked: go to the next one.")
    text = "" if answer is None else str(answer)
    if item.type == "mcq" and not text.strip():
        return replace(st, message="Pick one of the four options first.")
    try:
        grade = service.grade(item, text)
    except StudybotError as exc:
        return replace(st, error=str(exc))
    results = list(st.results)
    results[i] = Checked(text, grade)
    st = replace(st, results=tuple(results))
    rating = VERDICT_RATING.get(grade.verdict)
    if rating and i < len(st.card_ids):
        try:  # the answer is the card's first review: FSRS schedules it
            service.study.review(st.user, st.card_ids[i], rating, answer=text, correct=grade.correct)
        except StudybotError as exc:
            return replace(st, error=str(exc))
    right, total = st.score()
    answered = sum(1 for r in st.results[st.round_start:] if r is not None)
    return replace(st, message=f"{answered} of {total} answered, {right} correct.")


def next_question(state: QuizState) -> QuizState:
    st, cur = _begin(state)
    if cur is None:
        return st
    i, _ = cur
    if st.results[i] is None:
        return replace(st, message="Check your answer first.")
    if i + 1 >= len(st.items):
        return replace(st, message="That was the last question: press More questions for new ones.")
    return replace(st, index=i + 1, message="")


def more_questions(service: StudyService, sessions: QuizSessions, state: QuizState,
                   progress: Progress | None = None) -> QuizState:
    """A new round on the same topic and type, generated with the same QuizSession (no repeats)."""
    st = replace(state, error="")
    if not st.items:
        return replace(st, message="Start a quiz first.")
    session = sessions.get(st.id, list(st.items))
    try:
        result, ids, _ = _generate(service, st, session, progress)
    except StudybotError as exc:
        return replace(st, error=str(exc))
    start = len(st.items)
    return replace(st, items=(*st.items, *result.items), results=(*st.results, *([None] * len(result.items))),
                   card_ids=(*st.card_ids, *ids),
                   round_start=start, index=start, rounds=st.rounds + 1, dropped=st.dropped + result.dropped,
                   message=_generated_note(len(result.items), st.n, result.dropped))


# --- long jobs, with their progress ----------------------------------------------------------------------
class Background(Generic[T]):
    """``work(progress)`` in a thread of its own, so the page can show its progress while it runs: the last
    step it reported (:attr:`step`: message, done, total) and the seconds so far. The tab polls
    :meth:`wait` and redraws one progress display; :meth:`result` returns the value or raises the error."""

    def __init__(self, work: Callable[[Progress], T], clock: Callable[[], float] = time.monotonic) -> None:
        self.step: tuple[str, int, int] = ("", 0, 0)
        self._clock = clock
        self._start = clock()
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name="studybot-job", daemon=True)
        self._thread.start()

    def _report(self, message: str, done: int, total: int) -> None:
        self.step = (message, done, total)

    def _run(self, work: Callable[[Progress], T]) -> None:
        try:
            self._value = work(self._report)
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc
        finally:
            self._done.set()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def wait(self, timeout: float) -> bool:
        """Whether the work is finished (waiting at most ``timeout`` seconds)."""
        return self._done.wait(timeout)

    def result(self) -> T:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def quiz_step(message: str, done: int, total: int) -> str:
    """A quiz's progress as a student reads it: "Making question 2 of 5…" (from the quiz maker's step)."""
    if not total:
        return "Finding passages on the topic…"
    if message == "done" or done >= total:
        return "Saving the questions as review cards…"
    return f"Making question {done + 1} of {total}… ({done} ready)"


# --- export --------------------------------------------------------------------------------------------
_EXPORT_DIR: Path | None = None
_EXPORT_LOCK = threading.Lock()


def export_dir() -> Path:
    """A private folder for this process's quiz exports (file names are built here, never by the user)."""
    global _EXPORT_DIR
    with _EXPORT_LOCK:
        if _EXPORT_DIR is None:
            _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="studybot-quiz-"))
        return _EXPORT_DIR


def slug(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:40].strip("-") or "handbooks"


def export_quiz(state: QuizState, fmt: str = DEFAULT_EXPORT, directory: Path | None = None) -> str | None:
    """Write every question so far in the chosen format (one file per quiz and format, overwritten as the
    quiz grows); None when there is nothing to export."""
    if not state.items:
        return None
    suffix = EXPORT_FORMATS.get(fmt, ".csv")
    sid = re.sub(r"[^a-f0-9]", "", state.id)[:12] or "quiz"
    name = f"studybot-quiz-{slug(state.topic)}-{sid}{suffix}"
    path = export_items(list(state.items), (directory or export_dir()) / name, topic=state.topic, qtype=state.type)
    return str(path)
