"""The Quiz tab: pick a topic, a question type and a count; answer one question at a time; get graded with the
explanation and the cited passage; the score at the end; "More questions"; export to CSV or Anki.

The flow is kept in plain functions over a JSON-able state dict (tested without a browser):

* :func:`start_quiz` - a new quiz (a fresh :class:`rag.quiz.QuizSession`);
* :func:`check_answer` - grade the current question (``StudyService.grade``);
* :func:`next_question` - move on once the current question is checked;
* :func:`more_questions` - a new round on the same topic and type, with the *same* QuizSession, so earlier
  questions and passages are not repeated;
* :func:`export_quiz` - all questions so far as .csv / Anki .txt / Anki .apkg in a server-side export folder;
* :func:`view` - what the page shows for a state (:class:`QuizView`; all document text HTML-escaped).

The browser's ``gr.State`` holds the state dict (items as ``QuizItem.to_json``); the QuizSession objects stay
on the server in :class:`QuizSessions`, a small bounded dict keyed by the state's id. The Gradio wiring in
:func:`build_quiz_tab` only maps components to these functions. The UI talks to :class:`StudyService` only.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import StudybotError
from rag.quiz import QUIZ_TYPES, QuizError, QuizItem, QuizSession, export_items
from ui import render
from ui.tab_chat import LLM_QUEUE

__all__ = [
    "EXPORT_FORMATS",
    "QuizSessions",
    "QuizView",
    "build_quiz_tab",
    "check_answer",
    "export_quiz",
    "more_questions",
    "new_state",
    "next_question",
    "score",
    "start_quiz",
    "view",
]

MIN_COUNT, MAX_COUNT, DEFAULT_COUNT = 1, 10, 5
MAX_TOPIC_CHARS = 120
TYPE_CHOICES: list[tuple[str, str]] = [("Multiple choice", "mcq"), ("Short answer", "short"),
                                       ("Flashcard", "flashcard")]
# label -> file suffix (export_items picks the format from the suffix)
EXPORT_FORMATS: dict[str, str] = {"CSV": ".csv", "Anki deck (.apkg)": ".apkg", "Anki text (.txt)": ".txt"}
DEFAULT_EXPORT = "CSV"

Progress = Callable[[int, int, str], None]


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
            if item.citation.get("chunk_id"):
                session.used_chunks.add(str(item.citation["chunk_id"]))
        return session

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._items.pop(key or "", None)


# --- state ---------------------------------------------------------------------------------------------
def new_state() -> dict[str, Any]:
    """The state before any quiz: no items. ``results[i]`` is None until item i is checked."""
    return {"id": uuid.uuid4().hex, "topic": None, "type": "mcq", "n": DEFAULT_COUNT, "items": [],
            "results": [], "round_start": 0, "index": 0, "rounds": 0, "dropped": 0, "message": "",
            "error": ""}


def _items(state: dict[str, Any]) -> list[QuizItem]:
    return [QuizItem.from_json(d) for d in state.get("items", [])]


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


def _generated_note(n_items: int, dropped: int) -> str:
    note = f"{n_items} question{'s' if n_items != 1 else ''} ready"
    if dropped:
        note += (f"; {dropped} generated item{'s' if dropped != 1 else ''} failed validation and "
                 f"{'were' if dropped != 1 else 'was'} dropped")
    return note + "."


def start_quiz(service: Any, sessions: QuizSessions, topic: Any, qtype: Any, count: Any,
               state: dict[str, Any] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """A new quiz with a fresh QuizSession. On a :class:`StudybotError` (unknown topic, bad count, model
    trouble) the state has no items and ``error`` holds the one-sentence reason."""
    if state and state.get("id"):
        sessions.drop(state["id"])
    st = new_state()
    topic_s = re.sub(r"\s+", " ", str(topic or "")).strip()[:MAX_TOPIC_CHARS] or None
    st["topic"] = topic_s
    try:
        st["type"] = _type(qtype)
        st["n"] = _count(count)
        session = sessions.new(st["id"])
        result = service.quiz(topic_s, st["n"], st["type"], session=session, progress=progress)
    except StudybotError as exc:
        sessions.drop(st["id"])
        st["error"] = str(exc)
        return st
    st["items"] = [i.to_json() for i in result.items]
    st["results"] = [None] * len(result.items)
    st["dropped"] = int(result.dropped)
    st["rounds"] = 1
    st["message"] = _generated_note(len(result.items), result.dropped)
    return st


def _current(state: dict[str, Any]) -> tuple[int, QuizItem] | None:
    items = state.get("items") or []
    i = int(state.get("index", 0))
    if not 0 <= i < len(items):
        return None
    return i, QuizItem.from_json(items[i])


def _begin(state: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, QuizItem] | None]:
    """A copy of the state with the error cleared, and its current question (None: "Start a quiz first.")."""
    st = dict(state)
    st["error"] = ""
    cur = _current(st)
    if cur is None:
        st["message"] = "Start a quiz first."
    return st, cur


def check_answer(service: Any, state: dict[str, Any], answer: Any) -> dict[str, Any]:
    """Grade the current question (once); after the last question of the round the score is shown."""
    st, cur = _begin(state)
    if cur is None:
        return st
    i, item = cur
    results = list(st.get("results") or [None] * len(st["items"]))
    if results[i] is not None:
        st["message"] = "This question is already checked: go to the next one."
        return st
    text = "" if answer is None else str(answer)
    if item.type == "mcq" and not text.strip():
        st["message"] = "Pick one of the four options first."
        return st
    try:
        grade = service.grade(item, text)
    except StudybotError as exc:
        st["error"] = str(exc)
        return st
    results[i] = {"answer": text, "grade": grade.to_json()}
    st["results"] = results
    right, total = score(st)
    answered = sum(1 for r in results[st["round_start"]:] if r is not None)
    st["message"] = f"{answered} of {total} answered, {right} correct."
    return st


def next_question(state: dict[str, Any]) -> dict[str, Any]:
    st, cur = _begin(state)
    if cur is None:
        return st
    i, _ = cur
    if (st.get("results") or [None])[i] is None:
        st["message"] = "Check your answer first."
        return st
    if i + 1 >= len(st["items"]):
        st["message"] = "That was the last question: press More questions for new ones."
        return st
    st["index"] = i + 1
    st["message"] = ""
    return st


def more_questions(service: Any, sessions: QuizSessions, state: dict[str, Any],
                   progress: Progress | None = None) -> dict[str, Any]:
    """A new round on the same topic and type, generated with the same QuizSession (no repeats)."""
    st = dict(state)
    st["error"] = ""
    if not st.get("items"):
        st["message"] = "Start a quiz first."
        return st
    session = sessions.get(st["id"], _items(st))
    try:
        result = service.quiz(st.get("topic"), int(st.get("n") or DEFAULT_COUNT), st.get("type") or "mcq",
                              session=session, progress=progress)
    except StudybotError as exc:
        st["error"] = str(exc)
        return st
    start = len(st["items"])
    st["items"] = [*st["items"], *(i.to_json() for i in result.items)]
    st["results"] = [*(st.get("results") or [None] * start), *([None] * len(result.items))]
    st["round_start"] = start
    st["index"] = start
    st["rounds"] = int(st.get("rounds", 1)) + 1
    st["dropped"] = int(st.get("dropped", 0)) + int(result.dropped)
    st["message"] = _generated_note(len(result.items), result.dropped)
    return st


def score(state: dict[str, Any], *, all_rounds: bool = False) -> tuple[int, int]:
    """(correct answers, questions) in the current round (or in all rounds)."""
    start = 0 if all_rounds else int(state.get("round_start", 0))
    results = (state.get("results") or [])[start:]
    right = sum(1 for r in results if r and r["grade"].get("correct"))
    return right, len(results)


def finished(state: dict[str, Any]) -> bool:
    """Every question of the current round is checked."""
    results = (state.get("results") or [])[int(state.get("round_start", 0)):]
    return bool(results) and all(r is not None for r in results)


_EXPORT_DIR: Path | None = None
_EXPORT_LOCK = threading.Lock()


def export_dir() -> Path:
    """A private folder for this process's quiz exports (file names are built here, never by the user)."""
    global _EXPORT_DIR
    with _EXPORT_LOCK:
        if _EXPORT_DIR is None:
            _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="studybot-quiz-"))
        return _EXPORT_DIR


def _slug(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:40].strip("-") or "handbooks"


def export_quiz(state: dict[str, Any], fmt: str = DEFAULT_EXPORT, directory: Path | None = None) -> str | None:
    """Write every question so far in the chosen format (one file per quiz and format, overwritten as the
    quiz grows); None when there is nothing to export."""
    items = _items(state)
    if not items:
        return None
    suffix = EXPORT_FORMATS.get(fmt, ".csv")
    sid = re.sub(r"[^a-f0-9]", "", str(state.get("id", "")))[:12] or "quiz"
    name = f"studybot-quiz-{_slug(state.get('topic'))}-{sid}{suffix}"
    path = export_items(items, (directory or export_dir()) / name, topic=state.get("topic"),
                        qtype=str(state.get("type") or "mcq"))
    return str(path)


# --- rendering -----------------------------------------------------------------------------------------
@dataclass
class QuizView:
    """What the tab shows for a state; every string that holds document text is already HTML-escaped."""

    question_html: str
    options: list[str] = field(default_factory=list)  # MCQ options (raw text: the radio shows it as text)
    selected: str | None = None
    show_options: bool = False
    show_answer_box: bool = False
    answer_text: str = ""
    answer_label: str = "Your answer"
    can_answer: bool = False
    feedback_html: str = ""
    can_check: bool = False
    can_next: bool = False
    score_html: str = ""
    can_more: bool = False
    status_html: str = ""


_VERDICT_STYLE = {"correct": "#15803d", "partial": "#b45309", "incorrect": "#b91c1c", "revealed": "#1d4ed8"}


def _location(citation: dict[str, Any]) -> str:
    parts = []
    if citation.get("title"):
        parts.append(f'<span class="sb-src-title">{render.esc(citation["title"])}</span>')
    if citation.get("section"):
        parts.append(f'<span class="sb-src-section">{render.esc(citation["section"])}</span>')
    if citation.get("page"):
        parts.append(f'<span class="sb-quiz-page">p. {render.esc(citation["page"])}</span>')
    if citation.get("source"):
        parts.append(f'<span class="sb-src-meta">{render.esc(citation["source"])}</span>')
    return " · ".join(parts)


def feedback_html(item: QuizItem, result: dict[str, Any]) -> str:
    """The graded feedback: verdict, the user's and the right answer, the explanation and the cited passage
    (the quoted sentence plus the whole passage, with title, section, page and file)."""
    grade = result["grade"]
    verdict = str(grade.get("verdict", "incorrect"))
    opening = str(grade.get("feedback", "")).split("\n", 1)[0] or verdict.capitalize()
    color = _VERDICT_STYLE.get(verdict, "inherit")
    answer = result.get("answer", "")
    idx = item.answer_index
    label = f"{'ABCD'[idx]}) " if item.type == "mcq" and idx is not None and idx < 4 else ""
    rows = [f'<div class="sb-quiz-verdict" style="font-weight:700;color:{color}">{render.esc(opening)}</div>']
    if answer.strip():
        rows.append(f'<div class="sb-quiz-your"><b>Your answer:</b> {render.esc(answer)}</div>')
    rows.append(f'<div class="sb-quiz-right"><b>{"Back of the card" if item.type == "flashcard" else "Answer"}:'
                f"</b> {render.esc(label)}{render.esc(item.answer)}</div>")
    if item.explanation:
        rows.append(f'<div class="sb-quiz-explanation">{render.esc(item.explanation)}</div>')
    citation = grade.get("citation") or item.citation
    quote = grade.get("quote") or ""
    if quote:
        rows.append(f'<blockquote class="sb-quiz-quote" style="margin:6px 0;padding-left:8px;'
                    f'border-left:3px solid var(--color-accent)">{render.esc(quote)}</blockquote>')
    rows.append(f'<div class="sb-quiz-cite">{_location(citation)}</div>')
    rows.append(f'<details class="sb-quiz-passage"><summary>Cited passage</summary>'
                f'<div class="sb-passage">{render.esc(citation.get("text", ""))}</div></details>')
    return (f'<div class="sb-quiz-result sb-quiz-{render.esc(verdict)}" data-verdict="{render.esc(verdict)}">'
            f'{"".join(rows)}</div>')


def _question_html(state: dict[str, Any], i: int, item: QuizItem) -> str:
    start = int(state.get("round_start", 0))
    total = len(state["items"]) - start
    noun = "Card" if item.type == "flashcard" else "Question"
    topic = state.get("topic") or "across the handbooks"
    return (f'<div class="sb-quiz-q" data-index="{i - start + 1}" data-total="{total}">'
            f'<div class="sb-src-meta sb-quiz-qnum">{noun} {i - start + 1} of {total} · {render.esc(topic)}</div>'
            f'<div class="sb-quiz-qtext" style="font-size:1.1em;font-weight:600;margin-top:4px">'
            f"{render.esc(item.question)}</div></div>")


def _score_html(state: dict[str, Any]) -> str:
    right, total = score(state)
    line = f'<div class="sb-quiz-score-line" style="font-size:1.2em;font-weight:700">Score: {right}/{total}</div>'
    if int(state.get("rounds", 1)) > 1:
        all_right, all_total = score(state, all_rounds=True)
        line += f'<div class="sb-quiz-score-all">All rounds: {all_right}/{all_total}</div>'
    return (f'<div class="sb-quiz-score-box" data-right="{right}" data-total="{total}">{line}'
            '<div class="sb-src-meta">Press “More questions” for new questions on the same topic, '
            "or export them below.</div></div>")


def view(state: dict[str, Any] | None) -> QuizView:
    st = state or new_state()
    status_parts = []
    if st.get("error"):
        status_parts.append(f'<div class="sb-quiz-error" style="color:#b91c1c">{render.esc(st["error"])}</div>')
    if st.get("message"):
        status_parts.append(f'<div class="sb-quiz-message">{render.esc(st["message"])}</div>')
    status = "".join(status_parts)
    cur = _current(st)
    if cur is None:
        return QuizView(
            question_html='<div class="sb-empty">Pick a topic (or leave it empty for questions across the '
                          "handbooks), a question type and a count, then press “Start quiz”.</div>",
            status_html=status,
        )
    i, item = cur
    result = (st.get("results") or [None] * len(st["items"]))[i]
    checked = result is not None
    done = finished(st)
    v = QuizView(question_html=_question_html(st, i, item), status_html=status, can_check=not checked,
                 can_answer=not checked, can_next=checked and i + 1 < len(st["items"]), can_more=done)
    if item.type == "mcq":
        v.options = list(item.options)
        v.show_options = True
        v.selected = result["answer"] if checked and result["answer"] in item.options else None
    else:
        v.show_answer_box = True
        v.answer_text = result["answer"] if checked else ""
        v.answer_label = ("Your answer (or leave it empty and check to turn the card over)"
                          if item.type == "flashcard" else "Your answer")
    if checked:
        v.feedback_html = feedback_html(item, result)
    if done:
        v.score_html = _score_html(st)
    return v


# --- the tab -------------------------------------------------------------------------------------------
def build_quiz_tab(service: Any) -> dict[str, Any]:
    """Build the Quiz tab inside the current ``gr.Blocks``; returns its components."""
    sessions = QuizSessions()

    with gr.Tab("Quiz", id="quiz"):
        state = gr.State(new_state())
        with gr.Row():
            topic = gr.Textbox(label="Topic", placeholder="e.g. regularization (empty: across the handbooks)",
                               max_lines=1, max_length=MAX_TOPIC_CHARS, scale=3, elem_id="sb-quiz-topic")
            qtype = gr.Radio(choices=TYPE_CHOICES, value="mcq", label="Question type", scale=2,
                             elem_id="sb-quiz-type")
            count = gr.Slider(MIN_COUNT, MAX_COUNT, value=DEFAULT_COUNT, step=1, label="Questions", scale=1,
                              elem_id="sb-quiz-count")
        start_btn = gr.Button("Start quiz", variant="primary", elem_id="sb-quiz-start")
        status = gr.HTML("", elem_id="sb-quiz-status")
        question = gr.HTML(view(None).question_html, elem_id="sb-quiz-question")
        options = gr.Radio(choices=[], value=None, label="Options", visible=False, elem_id="sb-quiz-options")
        answer = gr.Textbox(label="Your answer", lines=2, max_lines=8, max_length=1000, visible=False,
                            elem_id="sb-quiz-answer")
        with gr.Row():
            check_btn = gr.Button("Check answer", variant="primary", interactive=False, elem_id="sb-quiz-check")
            next_btn = gr.Button("Next question", interactive=False, elem_id="sb-quiz-next")
        feedback = gr.HTML("", elem_id="sb-quiz-feedback")
        score_box = gr.HTML("", elem_id="sb-quiz-score")
        with gr.Row():
            more_btn = gr.Button("More questions", interactive=False, elem_id="sb-quiz-more")
            export_fmt = gr.Radio(choices=list(EXPORT_FORMATS), value=DEFAULT_EXPORT, label="Export format",
                                  elem_id="sb-quiz-export-format")
            export_btn = gr.DownloadButton("Export questions", value=None, interactive=False,
                                           elem_id="sb-quiz-export")

    outputs = [state, question, options, answer, check_btn, next_btn, feedback, score_box, more_btn, status,
               export_btn]

    def updates(st: dict[str, Any], fmt: str | None, export: bool = False) -> tuple[Any, ...]:
        v = view(st)
        export_update: Any = gr.skip()
        if export:
            path = export_quiz(st, fmt or DEFAULT_EXPORT) if st.get("items") else None
            export_update = gr.update(value=path, interactive=path is not None)
        return (
            st,
            v.question_html,
            gr.update(choices=v.options, value=v.selected, visible=v.show_options, interactive=v.can_answer),
            gr.update(value=v.answer_text, visible=v.show_answer_box, interactive=v.can_answer,
                      label=v.answer_label),
            gr.update(interactive=v.can_check),
            gr.update(interactive=v.can_next),
            v.feedback_html,
            v.score_html,
            gr.update(interactive=v.can_more),
            v.status_html,
            export_update,
        )

    def gr_progress(progress: Any) -> Progress:
        def cb(done: int, total: int, msg: str) -> None:
            progress((done, total), desc=msg)

        return cb

    def on_start(topic_v: str, type_v: str, count_v: Any, st: dict[str, Any] | None, fmt: str | None,
                 progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        new = start_quiz(service, sessions, topic_v, type_v, count_v, st, progress=gr_progress(progress))
        return updates(new, fmt, export=True)

    def on_check(choice: str | None, text: str | None, st: dict[str, Any]) -> tuple[Any, ...]:
        cur = _current(st or new_state())
        given = choice if cur is not None and cur[1].type == "mcq" else text
        return updates(check_answer(service, st or new_state(), given), None)

    def on_next(st: dict[str, Any]) -> tuple[Any, ...]:
        return updates(next_question(st or new_state()), None)

    def on_more(st: dict[str, Any], fmt: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return updates(more_questions(service, sessions, st or new_state(), progress=gr_progress(progress)),
                       fmt, export=True)

    def on_format(fmt: str | None, st: dict[str, Any]) -> Any:
        path = export_quiz(st or new_state(), fmt or DEFAULT_EXPORT)
        return gr.update(value=path, interactive=path is not None)

    # "undocumented": callable by name (gradio_client, tests) but not listed on the API page.
    start_btn.click(on_start, [topic, qtype, count, state, export_fmt], outputs, concurrency_id=LLM_QUEUE,
                    api_name="quiz_start", api_visibility="undocumented")
    topic.submit(on_start, [topic, qtype, count, state, export_fmt], outputs, concurrency_id=LLM_QUEUE,
                 api_visibility="private")
    check_btn.click(on_check, [options, answer, state], outputs, api_name="quiz_check",
                    api_visibility="undocumented", show_progress="minimal")
    next_btn.click(on_next, [state], outputs, api_name="quiz_next", api_visibility="undocumented",
                   queue=False, show_progress="hidden")
    more_btn.click(on_more, [state, export_fmt], outputs, concurrency_id=LLM_QUEUE, api_name="quiz_more",
                   api_visibility="undocumented")
    export_fmt.change(on_format, [export_fmt, state], [export_btn], api_visibility="private", queue=False)

    return {"state": state, "topic": topic, "type": qtype, "count": count, "start": start_btn,
            "question": question, "options": options, "answer": answer, "check": check_btn, "next": next_btn,
            "feedback": feedback, "score": score_box, "more": more_btn, "export": export_btn,
            "export_format": export_fmt, "status": status, "sessions": sessions}
