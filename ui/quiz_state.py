"""The Quiz tab's flow, as plain functions over a typed :class:`QuizState` (tested without a browser).

* :func:`open_quiz` - a new quiz (a fresh :class:`rag.quiz.QuizSession`) whose questions come as they are made:
  a :class:`LiveQuiz` on the server (the question bank's at once, the rest written in a thread while the
  student answers); :func:`sync` brings the state up to what is ready (waiting a little if asked);
  :func:`shown` is the state as its first question is shown;
* :func:`start_quiz` - the same, waiting for every question (the API's and the tests' one-call quiz);
* :func:`check_answer` - grade the current question (``StudyService.grade``);
* :func:`next_question` - move on once the current question is checked;
* :func:`open_more` / :func:`more_questions` - a new round on the same topic and type, with the *same*
  QuizSession, so earlier questions and passages are not repeated;
* :func:`export_quiz` - all questions so far as .csv / Anki .txt / Anki .apkg in a server-side export folder.

The browser's ``gr.State`` holds the QuizState (the questions it has been given so far); the QuizSession and the
round being made (:class:`LiveQuiz`) stay on the server as a :class:`HeldQuiz` in a bounded
:class:`ui.sessions.SessionStore` keyed by the state's id (:func:`quiz_sessions`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rag.errors import StudybotError
from rag.quiz import QUIZ_TYPES, GradeResult, QuizError, QuizItem, QuizSession, type_of
from rag.quiz.types import DEFAULT_TYPE, spoken_choices
from rag.study.store import LOCAL_USER, VERDICT_RATING
from rag.types import Progress
from ui.quiz_export import export_items
from ui.sessions import CAPACITY, SessionStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from rag.quiz.bank import QuizStream
    from ui.service import StudyService

    # (progress) -> the round's stream and the topic to show
    Opener = Callable[[Progress], tuple[QuizStream, str | None]]

log = logging.getLogger(__name__)
T = TypeVar("T")

# The Quiz tab's question count: 1 to 10, 5 to start with. Set by hand with the Quiz tab (2026-11-25), not tuned:
# 10 glossary MCQs made with nothing banked take some 5 minutes on 2 cores (32.6 s a valid item, README).
MIN_COUNT, MAX_COUNT, DEFAULT_COUNT = 1, 10, 5
# A topic is a few words (a section's title); the box takes at most this many characters. Set by hand, not tuned.
MAX_TOPIC_CHARS = 120
# label -> file suffix (export_items picks the format from the suffix)
EXPORT_FORMATS: dict[str, str] = {"CSV": ".csv", "Anki deck (.apkg)": ".apkg", "Anki text (.txt)": ".txt"}
DEFAULT_EXPORT = "CSV"
# The longest a round with every question made is waited for to end (its counts, no model call): set by hand
# (2026-12-06), a bound on a stuck thread, not a wait the round is expected to reach.
ROUND_END_S = 5.0


# --- server-side quiz sessions ------------------------------------------------------------------------
@dataclass
class HeldQuiz:
    """What the server holds for one quiz (the browser holds only its id and items): the QuizSession and the round
    it is making, or made last (:class:`LiveQuiz`)."""

    session: QuizSession = field(default_factory=QuizSession)
    live: LiveQuiz | None = None


def _stop(held: HeldQuiz) -> None:
    if held.live is not None:
        held.live.close()


def quiz_sessions(capacity: int = CAPACITY) -> SessionStore[HeldQuiz]:
    """Quizzes by state id (:class:`ui.sessions.SessionStore`); the least recently used dropped first (its round
    stops making questions)."""
    return SessionStore(HeldQuiz, capacity, on_evict=_stop)


def session_of(sessions: SessionStore[HeldQuiz], key: str, items: list[QuizItem] | None = None) -> QuizSession:
    """The session of quiz ``key``; a lost one (evicted, server restarted) is rebuilt from the items so far
    (their passages count as used and their questions are avoided for the same passage) and held again."""
    held = sessions.get(key)
    if held is not None:
        return held.session
    session = QuizSession()
    for item in items or []:
        session.items.append(item)
        if item.citation.chunk_id:
            session.used_chunks.add(item.citation.chunk_id)
    sessions.put(key, HeldQuiz(session))
    return session


def live_round(sessions: SessionStore[HeldQuiz], key: str | None) -> LiveQuiz | None:
    """The round quiz ``key`` is making (or made last); None when there is none (or it was dropped)."""
    held = sessions.get(key)
    return held.live if held is not None else None


def drop(sessions: SessionStore[HeldQuiz], key: str | None) -> None:
    """Forget a quiz; the round it was making stops (after the question in progress)."""
    held = sessions.pop(key)
    if held is not None:
        _stop(held)


# --- a round whose questions come as they are made -------------------------------------------------------
@dataclass(frozen=True)
class Made:
    """What a :class:`LiveQuiz` has so far (a consistent copy)."""

    items: tuple[QuizItem, ...]
    card_ids: tuple[int, ...]
    done: bool
    error: str
    n: int  # questions asked for
    topic: str | None  # the topic as shown ("your weak spots: ..." for a weak-spot quiz)
    dropped: int  # generated items that failed validation (for the log)
    banked: int  # items from the question bank


class LiveQuiz:
    """One round of a quiz, made on the server while the student answers: ``open_stream(progress)`` (in a thread
    of its own) returns the :class:`rag.quiz.bank.QuizStream` and the topic to show; each item it gives becomes a
    study card at once (``record``) and is kept in order. :meth:`made` is what is ready, :meth:`wait` waits a
    little for more, :attr:`step` is the quiz maker's last progress step (message, done, total) for the progress
    display, :meth:`close` stops the making after the question in progress (that one is not kept). A
    :class:`StudybotError` (an unknown topic, the model failing) ends the round with its sentence in ``error``."""

    def __init__(self, open_stream: Opener, record: Callable[[list[QuizItem]], list[int]], n: int, *,
                 progress: Progress | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.n = n
        self.step: tuple[str, int, int] = ("", 0, 0)
        self._clock = clock
        self.started = clock()
        self._progress = progress
        self._cond = threading.Condition()
        self._items: list[QuizItem] = []
        self._card_ids: list[int] = []
        self._done = False
        self._error = ""
        self._topic: str | None = None
        self._dropped = 0
        self._banked = 0
        self._stream: QuizStream | None = None
        self._closed = False
        self.version = 0  # grows on every change (a new item, a step, the end): the progress display's redraws
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run, open_stream, record),
                                        name="studybot-quiz-round", daemon=True)
        self._thread.start()

    def _report(self, message: str, done: int, total: int) -> None:
        with self._cond:
            self.step = (message, done, total)
            self.version += 1
            self._cond.notify_all()
        if self._progress is not None:
            self._progress(message, done, total)

    def _run(self, open_stream: Opener, record: Callable[[list[QuizItem]], list[int]]) -> None:
        error = ""
        try:
            stream, topic = open_stream(self._report)
            with self._cond:
                self._stream, self._topic, self._banked = stream, topic, len(stream.banked)
                closed = self._closed
            if closed:
                stream.close()
            for item in stream:
                if self._closed:
                    break
                ids = record([item])
                with self._cond:
                    self._items.append(item)
                    self._card_ids.extend(ids)
                    self.version += 1
                    self._cond.notify_all()
            if not self._closed:
                self._dropped = stream.result().dropped
        except StudybotError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: the student reads one sentence, the log has the traceback
            log.exception("quiz round failed")
            error = f"Making the questions stopped on an unexpected error ({type(exc).__name__}): start the quiz again."
        finally:
            with self._cond:
                self._error = error
                self._done = True
                self.version += 1
                self._cond.notify_all()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def done(self) -> bool:
        return self._done

    def made(self) -> Made:
        with self._cond:
            return Made(tuple(self._items), tuple(self._card_ids), self._done, self._error, self.n, self._topic,
                        self._dropped, self._banked)

    def wait(self, count: int, timeout: float | None) -> bool:
        """Wait until ``count`` questions are ready or the round ended (at most ``timeout`` seconds; None: no
        limit); whether that happened."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._items) >= count or self._done, timeout)

    def wait_change(self, version: int, timeout: float) -> int:
        """Wait until something changed after ``version`` (at most ``timeout`` seconds); the version now."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version or self._done, timeout)
            return self.version

    def close(self) -> None:
        """Stop making questions (the one in progress is finished and dropped)."""
        with self._cond:
            self._closed = True
            stream = self._stream
        if stream is not None:
            stream.close()


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
    type: str = DEFAULT_TYPE
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
    pending: bool = False  # more questions of the current round are being made (LiveQuiz)

    @property
    def current(self) -> tuple[int, QuizItem] | None:
        return (self.index, self.items[self.index]) if 0 <= self.index < len(self.items) else None

    @property
    def round_total(self) -> int:
        """Questions in the current round: as many as asked for while they are being made, then those made."""
        have = len(self.items) - self.round_start
        return max(have, self.n) if self.pending else have

    def score(self, *, all_rounds: bool = False) -> tuple[int, int]:
        """(correct answers, questions) in the current round (or in all rounds)."""
        results = self.results[0 if all_rounds else self.round_start:]
        return sum(1 for r in results if r and r.grade.correct), len(results)

    @property
    def finished(self) -> bool:
        """Every question of the current round is made and checked."""
        results = self.results[self.round_start:]
        return not self.pending and bool(results) and all(r is not None for r in results)


def _count(value: Any) -> int:
    try:
        n = int(float(value))
    except (TypeError, ValueError):
        raise QuizError(f"Choose how many questions: a number from {MIN_COUNT} to {MAX_COUNT}.") from None
    if not MIN_COUNT <= n <= MAX_COUNT:
        raise QuizError(f"Choose between {MIN_COUNT} and {MAX_COUNT} questions (got {n}).")
    return n


def _type(value: Any) -> str:
    qtype = str(value or DEFAULT_TYPE)
    if qtype not in QUIZ_TYPES:
        raise QuizError(f"Unknown question type {qtype!r}: choose {spoken_choices()}.")
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


def ready_note(n_items: int, asked: int) -> str:
    """"3 questions ready." (or why fewer than asked for came)."""
    return _generated_note(n_items, asked, 0)


def _opener(service: StudyService, st: QuizState, session: QuizSession, fast_start: bool) -> Opener:
    """How a round's stream is opened: a quiz on the topic, or from the user's weak spots."""

    def open_stream(progress: Progress) -> tuple[QuizStream, str | None]:
        if st.weak:
            stream, weak = service.weak_quiz_stream(st.user, st.n, st.type, session=session, progress=progress,
                                                    threaded=False, fast_start=fast_start)
            return stream, "your weak spots: " + "; ".join(w["section"] for w in weak)
        return service.quiz_stream(st.topic, st.n, st.type, session=session, progress=progress,
                                   threaded=False, fast_start=fast_start), st.topic

    return open_stream


def open_quiz(service: StudyService, sessions: SessionStore[HeldQuiz], topic: Any, qtype: Any, count: Any,
              state: QuizState | None = None, progress: Progress | None = None, *, user: str = LOCAL_USER,
              weak: bool = False, fast_start: bool = False) -> QuizState:
    """A new quiz with a fresh QuizSession (``weak``: from the user's weak spots, ignoring ``topic``), its
    questions made on the server as a :class:`LiveQuiz` (:func:`sync` fetches them; each becomes one of
    ``user``'s study cards as it is made). The quiz ``state`` replaces stops making questions. ``fast_start``:
    a quiz of more than one question whose type takes long to make (an MCQ) and has nothing in the question bank
    starts with a quicker one, so its first question shows in seconds and the rest are made while it is
    answered (a one-question quiz is of the type asked for). A bad count or type: the state's ``error`` holds
    the one-sentence reason (other errors come with the round's end)."""
    if state is not None:
        drop(sessions, state.id)
    text = None if weak else re.sub(r"\s+", " ", str(topic or "")).strip()[:MAX_TOPIC_CHARS] or None
    st = QuizState(topic=text, user=user, weak=weak)
    try:
        st = replace(st, type=_type(qtype), n=_count(count))
    except StudybotError as exc:
        return replace(st, error=str(exc))
    return _open_round(service, sessions, replace(st, rounds=1, pending=True), QuizSession(), progress,
                       fast_start and st.n > 1)


def _open_round(service: StudyService, sessions: SessionStore[HeldQuiz], st: QuizState, session: QuizSession,
                progress: Progress | None, fast_start: bool) -> QuizState:
    user = st.user
    live = LiveQuiz(_opener(service, st, session, fast_start), lambda items: service.record_quiz(user, items), st.n,
                    progress=progress)
    old = sessions.put(st.id, HeldQuiz(session, live))  # an earlier round's making stops
    if old is not None and old.live is not None and old.live is not live:
        old.live.close()
    return st


def sync(sessions: SessionStore[HeldQuiz], state: QuizState, wait: float | None = 0.0) -> QuizState:
    """The state with the current round's questions made so far (each a study card already), waiting for one
    more than it has, or the round's end, at most ``wait`` seconds (None: until the round ends). Once the round
    ended, ``pending`` is off and a failure's sentence is in ``error``."""
    if not state.pending:
        return state
    live = live_round(sessions, state.id)
    if live is None:  # dropped (another quiz started) or lost (server restarted): what the state has is all
        return replace(state, pending=False)
    have = len(state.items) - state.round_start
    if wait is None:
        live.wait(live.n + 1, None)
    elif wait > 0:
        live.wait(have + 1, wait)
    made = live.made()
    if not made.done and len(made.items) >= made.n:  # all made: the round ends in a moment (its counts)
        live.wait(made.n + 1, ROUND_END_S)
        made = live.made()
    new = made.items[have:]
    st = replace(state, items=(*state.items, *new), results=(*state.results, *([None] * len(new))),
                 card_ids=(*state.card_ids, *made.card_ids[have:]), topic=made.topic if made.topic else state.topic)
    if made.done:
        if made.dropped:
            log.info("quiz: %d generated item(s) failed validation and were dropped", made.dropped)
        st = replace(st, pending=False, dropped=st.dropped + made.dropped, error=made.error or st.error)
    return st


def shown(sessions: SessionStore[HeldQuiz], state: QuizState, before: QuizState | None = None) -> QuizState:
    """The state as a round's first question is shown (or as the round ended without one): the ready line when
    every question is made, none while the rest are being made (the progress display says so). A round that
    gave nothing leaves ``before`` (the quiz as it was before "More questions") with the reason in ``error``;
    a new quiz that gave nothing is forgotten."""
    have = len(state.items) - state.round_start
    if have == 0:
        reason = state.error or "No question could be made: try another topic or question type."
        if before is not None and before.items:
            return replace(before, error=reason, message="")
        drop(sessions, state.id)
        return replace(state, pending=False, error=reason, message="")
    return replace(state, message="" if state.pending else _generated_note(have, state.n, 0))


def start_quiz(service: StudyService, sessions: SessionStore[HeldQuiz], topic: Any, qtype: Any, count: Any,
               state: QuizState | None = None, progress: Progress | None = None, *, user: str = LOCAL_USER,
               weak: bool = False, fast_start: bool = False) -> QuizState:
    """A new quiz (:func:`open_quiz`), returned once every question is made. On a :class:`StudybotError`
    (unknown topic, no weak spot, bad count, model trouble) the state has no items and ``error`` holds the
    one-sentence reason."""
    st = open_quiz(service, sessions, topic, qtype, count, state, progress, user=user, weak=weak,
                   fast_start=fast_start)
    if st.error:
        return st
    return shown(sessions, sync(sessions, st, wait=None))


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
    if type_of(item).choice and not text.strip():
        count = {2: "two", 3: "three", 4: "four"}.get(len(item.options), str(len(item.options)))
        return replace(st, message=f"Pick one of the {count} options first.")
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
    right, _ = st.score()
    answered = sum(1 for r in st.results[st.round_start:] if r is not None)
    return replace(st, message=f"{answered} of {st.round_total} answered, {right} correct.")


def next_question(state: QuizState) -> QuizState:
    st, cur = _begin(state)
    if cur is None:
        return st
    i, _ = cur
    if st.results[i] is None:
        return replace(st, message="Check your answer first.")
    if i + 1 >= len(st.items):
        if st.pending:
            return replace(st, message="The next question is still being made: it shows here as soon as it is ready.")
        return replace(st, message="That was the last question: press More questions for new ones.")
    return replace(st, index=i + 1, message="")


def open_more(service: StudyService, sessions: SessionStore[HeldQuiz], state: QuizState, progress: Progress | None = None,
              *, fast_start: bool = False) -> QuizState:
    """A new round on the same topic and type, made with the same QuizSession (no repeats) as a
    :class:`LiveQuiz`: the state's current question is the round's first, once :func:`sync` has it."""
    st = replace(state, error="", message="")
    if not st.items:
        return replace(st, message="Start a quiz first.")
    session = session_of(sessions, st.id, list(st.items))
    start = len(st.items)
    st = replace(st, round_start=start, index=start, rounds=st.rounds + 1, pending=True)
    return _open_round(service, sessions, st, session, progress, fast_start and st.n > 1)


def more_questions(service: StudyService, sessions: SessionStore[HeldQuiz], state: QuizState,
                   progress: Progress | None = None) -> QuizState:
    """A new round (:func:`open_more`), returned once every question is made; on an error the quiz as it was,
    with the sentence in ``error``."""
    st = open_more(service, sessions, state, progress)
    if not st.pending:
        return st
    return shown(sessions, sync(sessions, st, wait=None), before=state)


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
