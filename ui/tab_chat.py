"""The Chat tab and the ``/ask`` API endpoint.

The answer streams into the chatbot; the passages appear in the sources panel as soon as retrieval is done.
Each browser session holds its own chat session (follow-ups use the conversation); the UI never retrieves
by itself: it only consumes the events of :meth:`StudyService` (passages, text deltas, the final answer).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import StudybotError
from rag.events import Condensed, Delta, Finished, Passages, Quotes, Stage
from rag.study.store import LOCAL_USER
from ui import render
from ui.user import user_of

LLM_QUEUE = "llm"  # concurrency_id shared by every event that runs the (single) model

EXAMPLES = [
    "How do I handle a heavily imbalanced dataset?",
    "What is the difference between L1 and L2 regularization?",
    "What does PCA do, and when would you use it?",
    "Explain the bias-variance trade-off.",
]

_EXPORT_DIR: Path | None = None


def _export_dir() -> Path:
    global _EXPORT_DIR
    if _EXPORT_DIR is None:
        _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="studybot-export-"))
    return _EXPORT_DIR


def new_session(service: Any) -> Any:
    return service.chat_session()


class Sessions:
    """Chat sessions by id (the browser's gr.State holds only the id and the turns); oldest dropped first."""

    def __init__(self, service: Any, capacity: int = 256) -> None:
        self.service = service
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        session = new_session(self.service)
        with self._lock:
            self._items[key] = session
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return session

    def drop(self, key: str | None) -> None:
        with self._lock:
            self._items.pop(key or "", None)


def stream_answer(session: Any, question: str) -> Iterator[Any]:
    return session.ask_stream(question)


# --- turn state ---------------------------------------------------------------------------------------
def _quotes_of(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A turn's quotes (a conversation saved before quotes had one "lead" quote instead)."""
    if "quotes" in turn:
        return list(turn.get("quotes") or [])
    lead = turn.get("lead") or {}
    cites = lead.get("citations") or []
    return [{"text": lead["text"], "citation": cites[0]}] if lead.get("text") and cites else []


def _turn_messages(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for all turns; only the last turn's citations link (its sources are on the panel)."""
    messages: list[dict[str, Any]] = []
    for i, t in enumerate(turns):
        last = i == len(turns) - 1
        valid = [s["n"] for s in t.get("sources", [])]
        messages.append({"role": "user", "content": render.esc(t["question"])})
        quotes = render.quotes_markdown(_quotes_of(t), valid, links=last) if not t.get("refused") else ""
        explanation = t.get("explanation", "") if "quotes" in t else t.get("answer", "")
        if t.get("error"):
            content = render.error_markdown(t["error"])
        elif t.get("pending"):
            content = render.answer_markdown(explanation, streaming=True, valid=valid, stage=t.get("stage"))
        elif t.get("refused"):
            content = render.answer_markdown(t.get("answer", ""), refused=True, valid=valid, links=last,
                                             missing_terms=t.get("missing_terms", ()))
        else:
            content = render.answer_markdown(explanation, valid=valid, links=last)
        if quotes and not t.get("error"):
            content = f"{quotes}\n\n{content}".strip()
        messages.append({"role": "assistant", "content": content})
    return messages


def _export(turns: list[dict[str, Any]]) -> str | None:
    done = [t for t in turns if not t.get("pending")]
    if not done:
        return None
    path = _export_dir() / f"studybot-conversation-{time.strftime('%Y%m%d-%H%M%S')}-{id(turns) % 10000}.md"
    path.write_text(render.conversation_markdown(done), encoding="utf-8")
    return str(path)


def _status(turn: dict[str, Any]) -> str:
    n = len(turn.get("sources", []))
    searched = f" for “{turn['standalone']}”" if turn.get("standalone") else ""
    if turn.get("error"):
        return "The question could not be answered."
    if turn.get("pending"):
        stage = render.STAGE_TEXT.get(turn.get("stage") or "retrieving", "")
        return (f"Retrieved {n} passages{searched}; working on the answer: {stage}" if n
                else f"Searching the handbooks{searched}…")
    cited = sum(1 for s in turn.get("sources", []) if s.get("cited"))
    if turn.get("refused"):
        return f"Not answered from the handbooks ({n} passages retrieved)."
    total = (turn.get("timings") or {}).get("total_s")
    took = f" in {total:.1f} s" if isinstance(total, int | float) else ""
    return f"{cited} of {n} passages cited{searched}{took}."


SAVED_KEYS = ("question", "standalone", "answer", "quotes", "explanation", "refused", "lead", "sources", "timings",
              "missing_terms", "error")


def save_turns(service: Any, user: str, state: dict[str, Any]) -> None:
    """Save the conversation (its finished turns, with their sources) to the user's study database."""
    turns = [{k: t[k] for k in SAVED_KEYS if k in t} for t in state.get("turns", []) if not t.get("pending")]
    if turns and state.get("id"):
        service.study.save_conversation(user, state["id"], turns)


def saved_choices(service: Any, user: str) -> list[tuple[str, str]]:
    """(label, id) of the user's saved conversations, newest first: the first question and the date."""
    try:
        saved = service.study.conversations(user)
    except StudybotError:  # a damaged study database: the chat still answers; saving says why it failed
        return []
    return [(f"{c['title'][:70]} · {str(c['updated'])[:16].replace('T', ' ')}", c["id"]) for c in saved]


def reopen(sessions: Sessions, user: str, conv_id: str | None) -> dict[str, Any] | None:
    """The chat state of a saved conversation (None if it is not the user's), with the model's follow-up
    history restored, so the next question reads against it."""
    turns = sessions.service.study.conversation(user, conv_id or "")
    if turns is None:
        return None
    sessions.drop(conv_id)
    sessions.get(str(conv_id)).restore(turns)
    return {"id": conv_id, "turns": turns}


def respond(sessions: Sessions, question: str, state: dict[str, Any] | None, user: str = LOCAL_USER
            ) -> Iterator[tuple[Any, ...]]:
    """One chat turn: yields (messages, sources html, state, textbox, export file) as the answer streams;
    the finished turn is saved in ``user``'s conversations."""
    state = state or {}
    state.setdefault("id", uuid.uuid4().hex)
    turns: list[dict[str, Any]] = state.setdefault("turns", [])
    question = (question or "").strip()
    if not question:
        yield (_turn_messages(turns), gr.skip(), state, "", gr.skip())
        return
    turn: dict[str, Any] = {"question": question, "answer": "", "sources": [], "pending": True}
    turns.append(turn)
    yield (_turn_messages(turns), render.sources_html([], status=_status(turn)), state, "", gr.skip())
    try:
        for event in stream_answer(sessions.get(state["id"]), question):  # rag.events, in their order
            if isinstance(event, Condensed):
                turn["standalone"] = event.question
                yield (gr.skip(), render.sources_html([], status=_status(turn)), state, "", gr.skip())
            elif isinstance(event, Passages):
                turn["sources"] = render.passages_to_sources(event.passages)
                yield (_turn_messages(turns), render.sources_html(turn["sources"], status=_status(turn)),
                       state, "", gr.skip())
            elif isinstance(event, Stage):
                turn["stage"] = event.name
                yield (_turn_messages(turns), render.sources_html(turn["sources"], status=_status(turn)),
                       state, "", gr.skip())
            elif isinstance(event, Quotes):
                turn["quotes"] = [q.to_json() for q in event.quotes]
                turn["sources"] = render.merge_citations(turn["sources"], [q["citation"] for q in turn["quotes"]])
                yield (_turn_messages(turns), render.sources_html(turn["sources"], status=_status(turn)),
                       state, "", gr.skip())
            elif isinstance(event, Delta):
                turn["explanation"] = turn.get("explanation", "") + event.text
                yield (_turn_messages(turns), gr.skip(), state, "", gr.skip())
            elif isinstance(event, Finished):
                turn.update(render.answer_turn(question, event.answer.to_json(), turn["sources"]), pending=False)
    except StudybotError as exc:
        turn.update(error=str(exc), pending=False)
    turn["pending"] = False
    try:
        save_turns(sessions.service, user, state)
    except StudybotError as exc:  # the answer is still shown; saving it is what failed
        turn["error"] = turn.get("error") or str(exc)
    yield (_turn_messages(turns), render.sources_html(turn["sources"], status=_status(turn)), state, "",
           _export(turns))


def ask_api(service: Any, question: str) -> dict[str, Any]:
    """The ``/ask`` endpoint: the same dict as ``studybot ask --json``."""
    try:
        return service.ask(question).to_json()
    except StudybotError as exc:
        raise gr.Error(str(exc)) from exc


def event_json(event: Any) -> dict[str, Any] | None:
    """One answer event as the ``/ask_stream`` endpoint sends it (None: not sent)."""
    if isinstance(event, Stage):
        return {"event": "stage", "stage": event.name}
    if isinstance(event, Passages):
        return {"event": "passages", "passages": render.passages_to_sources(event.passages)}
    if isinstance(event, Quotes):
        return {"event": "quotes", "quotes": [q.to_json() for q in event.quotes]}
    if isinstance(event, Delta):
        return {"event": "delta", "text": event.text}
    if isinstance(event, Finished):
        return {"event": "finished", **event.answer.to_json()}
    return None


def ask_stream_api(service: Any, question: str) -> Iterator[dict[str, Any]]:
    """The ``/ask_stream`` endpoint: each event as it happens, the last one the ``/ask`` JSON (``finished``)."""
    try:
        for event in service.ask_stream(question):
            out = event_json(event)
            if out is not None:
                yield out
    except StudybotError as exc:
        raise gr.Error(str(exc)) from exc


def register_api(service: Any) -> None:
    """The named ``/ask`` and ``/ask_stream`` endpoints (call it inside the app's ``gr.Blocks``, outside any
    ``gr.Tabs``)."""

    def ask(question: str) -> dict:
        """Answer a question from the handbooks: the same JSON as `studybot ask --json`."""
        return ask_api(service, question)

    def ask_stream(question: str) -> Iterator[dict]:
        """The same answer, streamed: {"event": "stage"|"passages"|"quotes"|"delta"|"finished", ...}; the
        finished event carries the `/ask` JSON."""
        yield from ask_stream_api(service, question)

    gr.api(ask, api_name="ask", concurrency_id=LLM_QUEUE)
    gr.api(ask_stream, api_name="ask_stream", concurrency_id=LLM_QUEUE)


# --- the tab ------------------------------------------------------------------------------------------
def build_chat_tab(service: Any) -> dict[str, Any]:
    with gr.Tab("Chat", id="chat"):
        state = gr.State({})
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Conversation", height=520, buttons=["copy", "copy_all"], elem_id="sb-chatbot",
                    feedback_options=None, placeholder="Ask a question about the ML handbooks.",
                    latex_delimiters=[], layout="bubble",
                )
                with gr.Row():
                    question = gr.Textbox(placeholder="Ask a question (Enter to send)", show_label=False,
                                          scale=5, elem_id="sb-question", max_lines=6,
                                          max_length=service.settings.retrieval.max_question_chars)
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, elem_id="sb-ask")
                # Where the app's queue shows this question's place and Gradio's estimate ("queue: 2/3 |
                # 4.1/14.0s") while it waits behind another student's, and the elapsed time while it runs.
                wait = gr.HTML("", elem_id="sb-wait", min_height=28, padding=False)
                with gr.Row():
                    clear_btn = gr.Button("New conversation", size="sm", elem_id="sb-clear")
                    export_btn = gr.DownloadButton("Export conversation (.md)", value=None, size="sm",
                                                   elem_id="sb-export")
                with gr.Row(equal_height=True):
                    saved = gr.Dropdown(choices=[], value=None, label="Saved conversations", scale=4,
                                        elem_id="sb-saved", allow_custom_value=False)
                    open_btn = gr.Button("Open", size="sm", scale=1, elem_id="sb-saved-open")
                    delete_btn = gr.Button("Delete", size="sm", scale=1, elem_id="sb-saved-delete")
                gr.Examples(EXAMPLES, inputs=[question], label="Example questions")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(render.sources_html([]), elem_id="sb-sources")

    outputs = [chatbot, sources, state, question, export_btn, saved]
    sessions = Sessions(service)

    def on_ask(q: str, st: dict[str, Any] | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        last: tuple[Any, ...] = ()
        for out in respond(sessions, q, st, user):
            if last:
                yield (*last, gr.skip())
            last = out
        if last:
            yield (*last, gr.update(choices=saved_choices(service, user), value=last[2].get("id")))

    def on_clear(st: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
        sessions.drop((st or {}).get("id"))
        return [], render.sources_html([]), {}, "", None, gr.update(choices=saved_choices(service, user_of(request)),
                                                                     value=None)

    def on_open(conv_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        try:
            st = reopen(sessions, user_of(request), conv_id)
        except StudybotError as exc:
            return (gr.skip(), render.sources_html([], status=str(exc)), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        if st is None:
            return (gr.skip(), render.sources_html([], status="Pick a saved conversation to open."), gr.skip(),
                    gr.skip(), gr.skip(), gr.skip())
        last = st["turns"][-1] if st["turns"] else {}
        return (_turn_messages(st["turns"]), render.sources_html(last.get("sources", []), status=_status(last)),
                st, "", _export(st["turns"]), gr.skip())

    def on_delete(conv_id: str | None, st: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        if conv_id:
            try:
                service.study.delete_conversation(user, conv_id)
            except StudybotError as exc:
                return (gr.skip(), render.sources_html([], status=str(exc)), gr.skip(), gr.skip(), gr.skip(),
                        gr.skip())
            sessions.drop(conv_id)
        choices = gr.update(choices=saved_choices(service, user), value=None)
        if conv_id and (st or {}).get("id") == conv_id:  # the open conversation was deleted: start afresh
            return [], render.sources_html([]), {}, "", None, choices
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), choices

    def on_load(request: gr.Request) -> Any:
        return gr.update(choices=saved_choices(service, user_of(request)), value=None)

    for trigger in (ask_btn.click, question.submit):
        trigger(on_ask, [question, state], outputs, concurrency_id=LLM_QUEUE, api_visibility="private",
                show_progress="full", show_progress_on=[wait])
    clear_btn.click(on_clear, [state], outputs, queue=False, api_visibility="private")
    open_btn.click(on_open, [saved], outputs, queue=False, api_visibility="private")
    delete_btn.click(on_delete, [saved, state], outputs, queue=False, api_visibility="private")

    return {"chatbot": chatbot, "sources": sources, "state": state, "question": question, "saved": saved,
            "load": on_load}
