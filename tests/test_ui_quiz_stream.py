"""The Quiz tab streams (issue 29): a quiz's first question is there as soon as it exists and the rest are made on
the server while the student answers (ui.quiz_state.LiveQuiz); an MCQ quiz with nothing banked starts with a
flashcard; a banked topic needs no model call; a failure half-way keeps what was made and says why in one
sentence; a new quiz stops the old one's making. The question bank's figures as the tab words them, and the
bank's worker in `studybot serve` (started once the app is up, planning again after an upload, stopped on the
way out). Real SQLite, the real embedder and real ingests; the model is scripted (tests.fakes) and held where
a test needs a question "still being made"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.errors import BackendError
from rag.llm import Request
from rag.quiz.bank import BankStats, SectionCount
from rag.settings import Settings
from tests.fakes import PassageLLM, good
from tests.helpers import MODELS_CACHE
from ui.quiz_state import (
    check_answer,
    live_round,
    more_questions,
    next_question,
    open_quiz,
    quiz_sessions,
    shown,
    start_quiz,
    sync,
)
from ui.service import StudyService
from ui.tab_quiz import bank_line_html, bank_sections_html, bank_view, making_html, view, waiting_html

SENTENCE = "The model server stopped answering: start it again."


def flashcards(n: int = 12) -> list[Any]:
    return [good("flashcard") for _ in range(n)]


class Held(PassageLLM):
    """PassageLLM that lets ``free`` model calls through, then holds each further call until :meth:`allow`
    gives it a turn (``held`` is set once a call waits): a question "still being made"."""

    def __init__(self, *args: Any, free: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns = threading.Semaphore(free)
        self.held = threading.Event()

    def generate(self, messages: list[dict[str, str]], request: Request) -> Any:
        if not self.turns.acquire(blocking=False):
            self.held.set()
            assert self.turns.acquire(timeout=120), "the test never let the held call go on"
        return super().generate(messages, request)

    def allow(self, n: int = 50) -> None:
        for _ in range(n):
            self.turns.release()


@pytest.fixture
def held_svc(quiz_svc: Callable[..., StudyService]) -> Iterator[Callable[..., tuple[StudyService, Held]]]:
    """``held_svc(replies, free=1)``: a service over the shared corpus whose model holds calls after ``free``."""
    made: list[Held] = []

    def make(replies: list[Any], free: int = 1) -> tuple[StudyService, Held]:
        base = quiz_svc()
        llm = Held(replies, free=free, texts=[c.text for c in base.retriever.chunks.values()])
        made.append(llm)
        return StudyService(base.settings, embedder=base.embedder, index=base.index, retriever=base.retriever,
                            llm=llm), llm

    yield make
    for llm in made:  # nothing left waiting after the test
        llm.allow(200)


def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for another thread to make ``condition`` true (a deadline against hanging, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


# --- streaming ------------------------------------------------------------------------------------------------
def test_the_first_question_is_answered_while_the_rest_are_made(held_svc: Callable[..., Any]) -> None:
    svc, llm = held_svc(flashcards(), free=1)
    sessions = quiz_sessions()
    st = open_quiz(svc, sessions, "regularization", "flashcard", 3, user="ann")
    assert st.pending and st.items == () and st.error == ""
    st = shown(sessions, sync(sessions, st, wait=60))
    assert len(st.items) == 1 and st.pending and st.message == ""  # the progress display says the rest
    assert llm.held.wait(60)  # question 2 is being made (held)
    live = live_round(sessions, st.id)
    assert live is not None and not live.done

    v = view(st)
    assert "Card 1 of 3" in v.question_html and v.can_answer and v.can_check and not v.can_next
    making = making_html(live)
    assert 'class="sb-work"' in making and "Question 2 of 3 is being made" in making and "1 of 3 ready" in making
    assert [c.item.question for c in svc.cards("ann")] == [st.items[0].question]  # a card as soon as it is shown

    # Answered while question 2 is being made; Next is offered, and waits (saying so) until it exists.
    st = check_answer(svc, st, "")
    v = view(st)
    assert st.results[0] is not None and st.results[0].grade.verdict == "revealed"
    assert st.message == "1 of 3 answered, 0 correct." and v.can_next and not v.can_more and v.score_html == ""
    stuck = next_question(st)
    assert stuck.index == 0 and "still being made" in stuck.message
    assert "Question 2 of 3 is being made" in waiting_html(st)
    assert sync(sessions, st, wait=0.2).items == st.items  # nothing new while the model is held

    llm.allow()
    st = sync(sessions, st, wait=None)
    assert len(st.items) == 3 and not st.pending and st.results[1:] == (None, None)
    assert len(set(st.card_ids)) == 3 and {c.item.question for c in svc.cards("ann")} == {i.question for i in st.items}
    assert making_html(live) == ""  # every question made: the display is gone
    for _ in range(2):
        st = next_question(st)
        st = check_answer(svc, st, st.items[st.index].answer)
    v = view(st)
    assert st.finished and "Score: 2/3" in v.score_html and v.can_more


def test_a_round_with_every_question_made_is_shown_as_ready(quiz_svc: Callable[..., StudyService]) -> None:
    """The round's end comes a moment after its last question (its counts): the question is shown with the
    ready line, as a finished round, not as one still being made."""
    svc = quiz_svc(good("flashcard"))
    ending = threading.Event()
    last: list[str] = []

    def progress(message: str, done: int, total: int) -> None:
        last.append(message)
        if message == "done":  # the round's end, held a moment after its only question is made
            assert ending.wait(30)

    sessions = quiz_sessions()
    st = open_quiz(svc, sessions, "regularization", "flashcard", 1, progress=progress)
    until(lambda: last[-1:] == ["done"], "the only question made")
    threading.Timer(0.3, ending.set).start()
    st = shown(sessions, sync(sessions, st, wait=30))
    assert len(st.items) == 1 and not st.pending and st.message == "1 question ready."
    st = check_answer(svc, st, "")
    assert not view(st).can_next and "Score: 0/1" in view(st).score_html


def test_an_mcq_quiz_with_nothing_banked_starts_with_a_flashcard_unless_it_has_one_question(
        quiz_svc: Callable[..., StudyService]) -> None:
    svc = quiz_svc(good("flashcard"))
    st = start_quiz(svc, quiz_sessions(), "regularization", "mcq", 2, fast_start=True)
    assert st.error == "" and [i.type for i in st.items] == ["flashcard", "mcq"]
    assert "Card 1 of 2" in view(st).question_html and view(st).show_answer_box

    svc = quiz_svc()  # no reply scripted: a flashcard would fail the test (MCQs are written by rule)
    one = start_quiz(svc, quiz_sessions(), "regularization", "mcq", 1, fast_start=True)
    assert one.error == "" and [i.type for i in one.items] == ["mcq"] and len(one.items[0].options) == 4


def test_a_banked_topic_is_all_there_at_once_without_a_model_call(quiz_svc: Callable[..., StudyService]) -> None:
    assert quiz_svc(*flashcards()).fill_bank("regularization", ["flashcard"], limit=4).made == 4
    svc = quiz_svc()  # no reply scripted: any model call fails the test
    sessions = quiz_sessions()
    st = open_quiz(svc, sessions, "regularization", "flashcard", 3, fast_start=True)
    st = shown(sessions, sync(sessions, st, wait=60))
    if st.pending:  # the bank's items come at once; the round ends right after them
        st = shown(sessions, sync(sessions, st, wait=None))
    assert len(st.items) == 3 and not st.pending and st.message == "3 questions ready."
    assert svc.llm.calls == []  # type: ignore[attr-defined]
    assert making_html(live_round(sessions, st.id)) == ""

    line, table = bank_view(svc)
    assert "Questions ready in advance: 4 (flashcards 4); " in line and "% of passages covered." in line
    assert 'data-items="4"' in line and "filling" not in line  # no worker in this process
    sections = {i.citation.section.split(" > ")[0] for i in st.items if i.citation.section}
    assert all(s.split("&")[0][:15] in table for s in sections), (sections, table)
    assert table.count("<tr>") == 1 + len(svc.bank_status().sections)


def test_a_failure_half_way_keeps_the_questions_made_and_says_why(quiz_svc: Callable[..., StudyService]) -> None:
    svc = quiz_svc(good("flashcard"), BackendError(SENTENCE))
    sessions = quiz_sessions()
    st = sync(sessions, open_quiz(svc, sessions, "regularization", "flashcard", 3), wait=None)
    assert len(st.items) == 1 and not st.pending and st.error == SENTENCE
    live = live_round(sessions, st.id)
    assert making_html(live, with_error=True).count(SENTENCE) == 1
    assert making_html(live) == ""  # the status line says it there: once
    v = view(st)
    assert SENTENCE in v.status_html and "Card 1 of 1" in v.question_html
    st = check_answer(svc, st, "")
    assert st.finished and "Score: 0/1" in view(st).score_html

    # Nothing made at all: the sentence, and the quiz is forgotten.
    svc = quiz_svc(BackendError(SENTENCE))
    st = shown(sessions, sync(sessions, open_quiz(svc, sessions, "dropout", "flashcard", 2), wait=None))
    assert st.items == () and st.error == SENTENCE and st.id not in sessions and not view(st).can_check


def test_a_weak_spot_quiz_streams_from_the_weak_sections_only(quiz_svc: Callable[..., StudyService]) -> None:
    from rag.quiz import QuizItem
    from rag.study.store import top_section
    from rag.types import Citation

    svc = quiz_svc(*flashcards())
    sessions = quiz_sessions()
    none = shown(sessions, sync(sessions, open_quiz(svc, sessions, None, "flashcard", 2, user="bob", weak=True),
                                wait=None))
    assert none.items == () and none.error.startswith("No weak spots for bob yet") and svc.llm.calls == []  # type: ignore[attr-defined]

    chunks = [c for c in svc.retriever.chunks.values() if c.section and len(c.text) > 300]
    weak = chunks[0]
    strong = next(c for c in chunks if top_section(c.section) != top_section(weak.section))
    ids = svc.record_quiz("ann", [QuizItem("flashcard", q, "an answer", "", [], Citation.of(1, c))
                                  for q, c in (("What is this section's first idea?", weak),
                                               ("What is the other section about?", strong))])
    svc.study.review("ann", ids[0], "again")
    svc.study.review("ann", ids[1], "easy")
    st = open_quiz(svc, sessions, "ignored", "mcq", 2, user="ann", weak=True, fast_start=True)
    st = shown(sessions, sync(sessions, st, wait=None))
    assert st.error == "" and st.topic == f"your weak spots: {top_section(weak.section)}"
    assert len(st.items) == 2 and st.items[0].type == "flashcard"  # nothing banked: a flashcard first
    assert all((i.citation.source, top_section(i.citation.section)) == (weak.source, top_section(weak.section))
               for i in st.items)
    assert "your weak spots" in view(st).question_html


def test_a_failed_round_of_more_questions_keeps_the_quiz_as_it_was(quiz_svc: Callable[..., StudyService]) -> None:
    svc = quiz_svc(good("flashcard"), BackendError(SENTENCE))
    sessions = quiz_sessions()
    st = start_quiz(svc, sessions, "regularization", "flashcard", 1)
    st = check_answer(svc, st, st.items[0].answer)
    more = more_questions(svc, sessions, st)
    assert more.error == SENTENCE and more.items == st.items and (more.index, more.round_start, more.rounds) == (0, 0, 1)
    v = view(more)
    assert v.can_more and "Score: 1/1" in v.score_html and SENTENCE in v.status_html


def test_a_new_quiz_stops_the_making_of_the_one_it_replaces(held_svc: Callable[..., Any]) -> None:
    svc, llm = held_svc(flashcards(), free=1)
    sessions = quiz_sessions()
    first = sync(sessions, open_quiz(svc, sessions, "regularization", "flashcard", 3, user="ann"), wait=60)
    assert len(first.items) == 1 and llm.held.wait(60)
    old = live_round(sessions, first.id)
    assert old is not None

    second = open_quiz(svc, sessions, "dropout", "flashcard", 1, first, user="ann")
    assert first.id not in sessions and live_round(sessions, first.id) is None
    assert not sync(sessions, first).pending  # the old state knows it gets nothing more
    llm.allow()
    second = sync(sessions, second, wait=None)
    assert len(second.items) == 1 and second.error == ""
    until(lambda: old.done, "the replaced quiz's making ended")
    # The question the old quiz was writing when it was replaced is dropped: no card from it.
    assert old.made().items == first.items
    assert sorted(c.item.question for c in svc.cards("ann")) == sorted([first.items[0].question,
                                                                        second.items[0].question])


# --- the question bank's figures ------------------------------------------------------------------------------
def test_the_bank_line_is_in_words_a_student_reads() -> None:
    stats = BankStats(items=42, by_type={"flashcard": 20, "short": 14, "mcq": 8}, chunks_covered=35,
                      chunks_total=100)
    filling = {"running": True, "state": "filling", "error": ""}
    assert bank_line_html(stats, filling).endswith(
        '>Questions ready in advance: 42 (flashcards 20, short answers 14, multiple choice 8); 35% of passages '
        "covered; filling in the background while you are idle.</div>")
    assert "35% of passages covered.<" in bank_line_html(stats)  # no worker: nothing said about filling
    assert "every passage has had its questions made" in bank_line_html(stats, {**filling, "state": "waiting"})
    stopped = {**filling, "error": "The question bank /x cannot be used (disk full): delete the file."}
    assert "filling in the background is paused (The question bank /x cannot be used (disk full): delete the " \
           "file)." in bank_line_html(stats, stopped)
    assert "filling" not in bank_line_html(stats, {**filling, "running": False})

    empty = BankStats(chunks_total=80)
    assert ">No questions are ready in advance yet: each quiz makes its questions as you go.<" in bank_line_html(empty)
    assert ">No questions are ready in advance yet; filling in the background while you are idle.<" in \
        bank_line_html(empty, filling)

    sections = BankStats(items=1, by_type={"short": 1}, chunks_covered=1, chunks_total=3,
                         sections=[SectionCount("ml <b>.md", "Trees & <i>forests</i>", 1, 1, 3)])
    table = bank_sections_html(sections)
    assert "ml &lt;b&gt;.md" in table and "Trees &amp; &lt;i&gt;forests&lt;/i&gt;" in table and "<i>" not in table
    assert "<td class='sb-num'>1 of 3</td>" in table
    assert "(short answers 1)" in bank_line_html(sections)


def test_a_damaged_bank_says_so_in_one_sentence(quiz_svc: Callable[..., StudyService]) -> None:
    svc = quiz_svc()
    path = svc.settings.storage.bank_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    line, table = bank_view(svc)
    assert "cannot be used" in line and str(path) in line and table == ""


# --- the bank's worker in the web app ---------------------------------------------------------------------------
L1 = ("L1 regularization adds the sum of the absolute values of the weights to the loss function. It drives "
      "many weights to exactly zero, which gives sparse models that select features.")
DROPOUT = ("Dropout randomly disables a fraction of the units of a neural network at every training step. The "
           "network cannot rely on any single unit, so it learns redundant features and overfits less.")
TREES = ("Random forests train many decision trees on bootstrap samples of the training data and pick each split "
         "from a random subset of the features. Averaging the decorrelated trees lowers the variance.")


@pytest.fixture
def small_library(tmp_path: Path, embedder: Any) -> Callable[..., StudyService]:
    """``small_library(**quiz)``: a service over two small handbooks (three passages) ingested for real, its
    model writing flashcards and MCQs by rule (tests.fakes)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "reg.md").write_text(f"# Regularization\n\n## L1\n\n{L1}\n\n## Dropout\n\n{DROPOUT}\n")
    (corpus / "trees.md").write_text(f"# Trees\n\n## Random forests\n\n{TREES}\n")

    def make(**quiz: Any) -> StudyService:
        settings = Settings(storage={"home": tmp_path / "home", "corpus_dir": corpus, "models_cache": MODELS_CACHE},
                            quiz=quiz)
        svc = StudyService(settings, embedder=embedder,
                           llm=PassageLLM(flashcards(200), texts=[L1, DROPOUT, TREES, BOOSTING]))
        assert svc.ingest().ok
        return svc

    return make


BOOSTING = ("Gradient boosting adds shallow trees one after another, each fitted to the residual errors of the "
            "ensemble so far. A small learning rate and early stopping keep it from overfitting.")


def test_serve_starts_the_bank_worker_once_the_app_is_up_and_stops_it_on_the_way_out(
        small_library: Callable[..., StudyService]) -> None:
    from tests.helpers import free_port
    from ui.cli_serve import serve_app, wait_accepting

    svc = small_library()
    said: list[str] = []
    seen: dict[str, Any] = {}

    def block(app: Any) -> None:  # instead of waiting for Ctrl+C
        seen["up"] = wait_accepting("127.0.0.1", int(app.server_port), timeout=5)
        worker = svc.bank_worker
        seen["running"] = worker is not None and worker.running
        until(lambda: worker is not None and worker.state == "filling", "the worker planned")
        seen["left"] = worker.left if worker is not None else 0
        seen["line"] = bank_view(svc)[0]

    port = free_port()
    svc.gate.enter()  # a student's request runs all along: the worker plans, then waits for the model
    try:
        serve_app(svc, "127.0.0.1", port, None, said.append, block=block)
    finally:
        svc.gate.leave()
    assert said == [f"studybot is ready: open http://127.0.0.1:{port}; Ctrl+C stops it"]
    assert seen["up"] and seen["running"] and seen["left"] == 3 * 3  # three passages, three question types
    assert "filling in the background while you are idle" in seen["line"]
    worker = svc.bank_worker
    assert worker is not None and not worker.running and worker.status()["state"] == "stopped"
    assert not wait_accepting("127.0.0.1", port, timeout=0.5)  # the app is closed too
    assert svc.llm.calls == []  # type: ignore[attr-defined]

    off = small_library(bank_background=False)
    serve_app(off, "127.0.0.1", free_port(), None, said.append, block=lambda app: None)
    assert off.bank_worker is None  # quiz.bank_background off: no worker


def test_an_upload_makes_the_running_worker_plan_again(small_library: Callable[..., StudyService],
                                                       tmp_path: Path) -> None:
    svc = small_library(bank_idle_s=0)
    worker = svc.start_bank_worker()
    assert worker is not None
    try:
        until(lambda: worker.state == "waiting", "the worker tried every passage and type", timeout=120)
        before = {h for h, _, _ in svc.bank.counts()}
        assert "every passage has had its questions made" in bank_view(svc)[0]
        doc = tmp_path / "boosting.md"
        doc.write_text(f"# Boosting\n\n## Gradient boosting\n\n{BOOSTING}\n")
        assert [r.ok for r in svc.add_documents([doc])] == [True]  # what the Library tab's upload does
        new = {c.content_hash for c in svc.retriever.chunks.values() if c.source.endswith("boosting.md")}
        assert len(new) == 1 and not new & before
        until(lambda: bool(new & {h for h, _, _ in svc.bank.counts()}), "the new passage banked", timeout=120)
    finally:
        svc.stop_bank_worker()
    assert worker.error == ""
