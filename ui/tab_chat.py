"""The Chat tab and the ``/ask`` API endpoint.

A question is shown in the conversation the moment it is sent (an unqueued event), then answered by a
queued event that shares the single model (``LLM_QUEUE``); a question sent while the student's previous one
is still being answered waits in the conversation, marked as waiting, and is answered next, in order. While
an answer is written the message says what it waits on (retrieving, choosing the sentences, explaining,
checking); what it shows only grows. Each turn keeps its own sources (anchors ``src-<turn>-<n>``), so an
older answer's ``[n]`` still opens its passage. The UI never retrieves by itself: it only consumes the typed
events of :meth:`StudyService` (:mod:`rag.answer.events`).
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from rag.answer.events import Condensed, Delta, Finished, Passages, Quotes, Stage
from rag.errors import StudybotError
from rag.study.store import LOCAL_USER
from rag.text import clip
from ui import render
from ui.sessions import CAPACITY, SessionStore
from ui.user import user_of

LLM_QUEUE = "llm"  # concurrency_id shared by every event that runs the (single) model

EXAMPLES = [
    "How do I handle a heavily imbalanced dataset?",
    "What is the difference between L1 and L2 regularization?",
    "What does PCA do, and when would you use it?",
    "Explain the bias-variance trade-off.",
]
NOTHING_TO_EXPORT = "Nothing to export yet: ask a question first, then export the conversation with its sources."
NO_PASSAGE = "No passage to show: nothing in the handbooks is close to this question."
# The same question sent twice this quickly (a double click) is asked once. Set by hand, not measured: a double
# click's two clicks come well within it, and a question asked again on purpose comes later.
DUPLICATE_S = 2.0
# Runs in the browser when a question is sent: the question and the moment it was sent (its place in line).
SENT_AT = "(question, state, sent_at) => [question, state, Date.now()]"

_EXPORT_DIR: Path | None = None


def _export_dir() -> Path:
    global _EXPORT_DIR
    if _EXPORT_DIR is None:
        _EXPORT_DIR = Path(tempfile.mkdtemp(prefix="studybot-export-"))
    return _EXPORT_DIR


def new_session(service: Any) -> Any:
    return service.chat_session()


@dataclass
class Conversation:
    """A conversation as the server holds it (the browser's gr.State holds the same ``state`` dict): the chat
    session the model reads follow-ups against (made on first use), the turns, and a lock so a conversation's
    questions are answered one after another, in order."""

    new_chat: Callable[[], Any]  # makes the chat session (StudyService.chat_session)
    state: dict[str, Any] | None = None  # the conversation the browser shows: {"id", "turns"}
    lock: threading.Lock = field(default_factory=threading.Lock)  # one answer at a time per conversation
    _chat: Any = None  # the model's follow-up history (rag.answer.chat.ChatSession)

    @property
    def chat(self) -> Any:
        if self._chat is None:
            self._chat = self.new_chat()
        return self._chat


_STATE_LOCK = threading.Lock()  # a browser's state registered as its conversation's in one step


def chat_sessions(service: Any, capacity: int = CAPACITY) -> SessionStore[Conversation]:
    """Conversations by id, the least recently used dropped first (:class:`ui.sessions.SessionStore`)."""
    return SessionStore(lambda: Conversation(lambda: new_session(service)), capacity)


def conversation(sessions: SessionStore[Conversation], state: dict[str, Any] | None) -> dict[str, Any]:
    """The conversation dict for a browser's state: the one held under its id (so every event of the
    conversation sees the same turns), or ``state`` itself, given an id and registered."""
    state = state if state is not None else {}
    state.setdefault("id", uuid.uuid4().hex)
    state.setdefault("turns", [])
    entry = sessions.get_or_create(state["id"])
    with _STATE_LOCK:
        if entry.state is None or entry.state.get("closed"):
            entry.state = state
        return entry.state


def drop(sessions: SessionStore[Conversation], key: str | None) -> None:
    """Forget conversation ``key``; an answer under way for it stops and shows nothing more."""
    entry = sessions.pop(key)
    if entry is not None and entry.state is not None:
        entry.state["closed"] = True


def stream_answer(session: Any, question: str) -> Iterator[Any]:
    return session.ask_stream(question)


# --- turn state ---------------------------------------------------------------------------------------
# A turn: {"question", "asked_at"} and, while it waits behind an earlier one, "waiting"; while it is answered,
# "pending" and "stage"; then what answer_turn() gives ("quotes", "explanation", "refused", "sources", ...),
# "waited_s" (from the moment it was sent to the answer's end) or "error".
def _quotes_of(turn: dict[str, Any]) -> list[dict[str, Any]]:
    """A turn's quotes (a conversation saved before quotes had one "lead" quote instead)."""
    if "quotes" in turn:
        return list(turn.get("quotes") or [])
    lead = turn.get("lead") or {}
    cites = lead.get("citations") or []
    return [{"text": lead["text"], "citation": cites[0]}] if lead.get("text") and cites else []


def _busy(turn: dict[str, Any]) -> bool:
    return bool(turn.get("pending") or turn.get("waiting"))


def _assistant_message(turn: dict[str, Any], number: int, behind: bool = False) -> str:
    """Turn ``number``'s answer as Markdown. What was shown of it is never changed afterwards: the quotes,
    then the explanation as it grows; while it is unfinished a last line says what it waits on (``behind``:
    an earlier question of the conversation is answered first)."""
    if turn.get("waiting"):
        return render.stage_line("waiting" if behind else "queued")
    valid = [s["n"] for s in turn.get("sources", [])]
    refused = bool(turn.get("refused")) and not turn.get("pending")
    quotes = "" if refused else render.quotes_markdown(_quotes_of(turn), valid, turn=number)
    explanation = turn.get("explanation", "") if "quotes" in turn else turn.get("answer", "")
    if turn.get("pending"):
        content = render.answer_markdown(explanation, streaming=True, valid=valid, stage=turn.get("stage"),
                                         turn=number)
    elif refused:
        content = render.answer_markdown("", refused=True, missing_terms=turn.get("missing_terms", ()))
    else:
        content = render.answer_markdown(explanation, valid=valid, turn=number)
    content = f"{quotes}\n\n{content}".strip() if quotes else content
    if turn.get("error") and not turn.get("pending"):
        content = f"{content}\n\n{render.error_markdown(turn['error'])}".strip()
    return content


def _turn_messages(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for all turns; each turn's ``[n]`` links to that turn's own sources (``#src-<turn>-<n>``)."""
    messages: list[dict[str, Any]] = []
    behind = False
    for number, t in enumerate(turns, start=1):
        messages.append({"role": "user", "content": render.esc(t["question"])})
        messages.append({"role": "assistant", "content": _assistant_message(t, number, behind)})
        behind = behind or _busy(t)
    return messages


def _finished(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in turns if not _busy(t)]


def _export(turns: list[dict[str, Any]]) -> str | None:
    done = _finished(turns)
    if not done:
        return None
    path = _export_dir() / f"studybot-conversation-{time.strftime('%Y%m%d-%H%M%S')}-{id(turns) % 10000}.md"
    path.write_text(render.conversation_markdown(done), encoding="utf-8")
    return str(path)


def _summary(turn: dict[str, Any]) -> str:
    """What a turn's sources are, in a few words (the heading of its part of the sources panel)."""
    n = len(turn.get("sources", []))
    if turn.get("error") and not turn.get("quotes"):
        return "not answered (an error)"
    if turn.get("refused"):
        return f"not answered; {n} passages found" if n else "not answered"
    cited = sum(1 for s in turn.get("sources", []) if s.get("cited"))
    return f"{cited} of {n} passages cited"


def _status(turn: dict[str, Any]) -> str:
    """The sources panel's line about ``turn``: what its answer waits on, or how it ended and how long the
    student waited for it (from the moment the question was sent)."""
    n = len(turn.get("sources", []))
    searched = f" for “{turn['standalone']}”" if turn.get("standalone") else ""
    if turn.get("waiting"):
        return render.STAGE_TEXT["waiting"]
    if turn.get("pending"):
        stage = render.STAGE_TEXT.get(turn.get("stage") or "retrieving", "")
        return (f"Found {n} passages{searched}, closest first; working on the answer: {stage}" if n
                else stage)
    if turn.get("error") and not turn.get("quotes"):
        return "The question could not be answered."
    waited = turn.get("waited_s")
    if not isinstance(waited, int | float):
        waited = (turn.get("timings") or {}).get("total_s")
    took = f" You waited {waited:.1f} s." if isinstance(waited, int | float) else ""
    if turn.get("refused"):
        missing = ", ".join(str(t) for t in turn.get("missing_terms") or ())
        found = (f"no handbook mentions {missing}." if missing
                 else f"none of the {n} passages found{searched} answers it (they are below)." if n
                 else f"no passage in the handbooks is close to “{turn.get('standalone') or turn['question']}”.")
        return f"Not answered: {found}{took}"
    cited = sum(1 for s in turn.get("sources", []) if s.get("cited"))
    return f"{cited} of {n} passages cited{searched}, closest first.{took}"


def sources_panel(turns: list[dict[str, Any]], conversation: str = "") -> str:
    """The sources panel for a conversation (id ``conversation``): every answered (or answering) turn's own
    sources, the one being answered, else the latest, shown; its status line."""
    shown = [(i, t) for i, t in enumerate(turns, start=1) if not t.get("waiting")]
    if not shown:
        waiting = next((t for t in turns if t.get("waiting")), None)
        status = render.STAGE_TEXT["queued"] if waiting else ""
        return render.conversation_sources_html([], current=0, status=status, busy=waiting is not None,
                                                conversation=conversation)
    current, turn = next(((i, t) for i, t in shown if t.get("pending")), shown[-1])
    sections = [{"turn": i, "question": t["question"], "sources": t.get("sources", []), "summary": _summary(t),
                 "empty": "" if t.get("pending") else NO_PASSAGE} for i, t in shown]
    return render.conversation_sources_html(sections, current=current, status=_status(turn),
                                            busy=any(_busy(t) for t in turns), conversation=conversation)


SAVED_KEYS = ("question", "standalone", "answer", "quotes", "explanation", "refused", "lead", "sources", "timings",
              "missing_terms", "error", "waited_s")


def save_turns(service: Any, user: str, state: dict[str, Any]) -> None:
    """Save the conversation (its finished turns, with their sources) to the user's study database."""
    turns = [{k: t[k] for k in SAVED_KEYS if k in t} for t in _finished(state.get("turns", []))]
    if turns and state.get("id"):
        service.study.save_conversation(user, state["id"], turns)


# A saved conversation is listed by its first question, cut at a word to this many characters, then its date:
# set by hand to fit the list's width (2026-12-05), not measured.
TITLE_CHARS = 60


def saved_choices(service: Any, user: str) -> list[tuple[str, str]]:
    """(label, id) of the user's saved conversations, newest first: the first question (cut at a word, with
    " …", to fit the list's width) and the date."""
    try:
        saved = service.study.conversations(user)
    except StudybotError:  # a damaged study database: the chat still answers; saving says why it failed
        return []
    return [(f"{clip(' '.join(str(c['title']).split()), TITLE_CHARS)} · {str(c['updated'])[:16].replace('T', ' ')}",
             c["id"]) for c in saved]


def reopen(service: Any, sessions: SessionStore[Conversation], user: str, conv_id: str | None
           ) -> dict[str, Any] | None:
    """The chat state of a saved conversation (None if it is not the user's), with the model's follow-up
    history restored, so the next question reads against it."""
    turns = service.study.conversation(user, conv_id or "")
    if turns is None:
        return None
    drop(sessions, conv_id)
    sessions.get_or_create(str(conv_id)).chat.restore(turns)
    return conversation(sessions, {"id": conv_id, "turns": turns})


def enqueue(sessions: SessionStore[Conversation], question: str, state: dict[str, Any] | None, sent_at: float | None = None
            ) -> tuple[Any, ...]:
    """A question sent: shown in the conversation at once, waiting for its answer (:func:`answer_next`);
    behind the student's previous question when that one is still being answered. ``sent_at``: when the
    browser sent it (ms since the epoch): two questions sent close together can reach the server in either
    order, and are put back in the order they were sent. Returns (messages, sources panel, state, textbox,
    note)."""
    state = conversation(sessions, state)
    turns: list[dict[str, Any]] = state["turns"]
    question = (question or "").strip()
    now = time.time()
    sent = float(sent_at) / 1000 if isinstance(sent_at, int | float) and sent_at > 0 else now
    if not question or any(_busy(t) and t.get("question") == question
                           and abs(float(t.get("sent_at") or 0) - sent) < DUPLICATE_S for t in turns):
        return (gr.skip(), gr.skip(), state, "", gr.skip())
    busy = any(_busy(t) for t in turns)
    turn = {"question": question, "asked_at": now, "sent_at": sent, "sources": [], "waiting": True}
    at = len(turns)  # after the last, unless waiting questions were sent after this one
    while at > 0 and turns[at - 1].get("waiting") and float(turns[at - 1].get("sent_at") or 0) > sent:
        at -= 1
    turns.insert(at, turn)
    return (_turn_messages(turns), gr.skip() if busy else sources_panel(turns, state["id"]), state, "", "")


def answer_next(service: Any, sessions: SessionStore[Conversation], state: dict[str, Any] | None,
                user: str = LOCAL_USER) -> Iterator[tuple[Any, ...]]:
    """Answer the conversation's oldest waiting question (one per sent question, so each is answered once,
    in order): yields (messages, sources panel, export file) as the answer streams; the finished turn is
    saved in ``user``'s conversations."""
    state = conversation(sessions, state)
    held = sessions.get_or_create(state["id"])
    with held.lock:
        turns: list[dict[str, Any]] = state["turns"]
        turn = next((t for t in turns if t.get("waiting")), None)
        if turn is None or state.get("closed"):
            yield (gr.skip(), gr.skip(), gr.skip())
            return
        chat = held.chat
        turn.pop("waiting", None)
        turn.update(pending=True, stage="reading" if getattr(chat, "history", None) else "retrieving")
        yield (_turn_messages(turns), sources_panel(turns, state["id"]), gr.skip())
        stream = stream_answer(chat, turn["question"])
        try:
            for event in stream:  # rag.answer.events, in their order
                if state.get("closed"):  # the conversation was cleared or replaced: stop answering it
                    return
                if isinstance(event, Condensed):
                    turn["standalone"] = event.question
                elif isinstance(event, Passages):
                    turn["sources"] = render.passages_to_sources(event.passages)
                elif isinstance(event, Stage):
                    turn["stage"] = event.name
                elif isinstance(event, Quotes):
                    turn["quotes"] = [q.to_json() for q in event.quotes]
                    turn["sources"] = render.merge_citations(turn["sources"],
                                                             [q["citation"] for q in turn["quotes"]])
                elif isinstance(event, Delta):
                    if "quotes" not in turn:  # no quotes: the refusal's sentence, said by the refused note
                        continue
                    turn["explanation"] = turn.get("explanation", "") + event.text
                    yield (_turn_messages(turns), gr.skip(), gr.skip())
                    continue
                elif isinstance(event, Finished):
                    _finish(turn, event.answer.to_json())
                yield (_turn_messages(turns), sources_panel(turns, state["id"]), gr.skip())
        except StudybotError as exc:
            turn["error"] = str(exc)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            turn["pending"] = False
            turn["waited_s"] = round(time.time() - _start(turn), 1)
        if state.get("closed"):
            return
        try:
            save_turns(service, user, state)
        except StudybotError as exc:  # the answer is still shown; saving it is what failed
            turn["error"] = turn.get("error") or str(exc)
        yield (_turn_messages(turns), sources_panel(turns, state["id"]), _export(turns))


def _start(turn: dict[str, Any]) -> float:
    """When the student sent the question: the browser's click when its clock agrees with the server's
    (it includes the request's way to the server), else when the request arrived."""
    asked = float(turn.get("asked_at") or time.time())
    sent = float(turn.get("sent_at") or asked)
    return sent if 0 <= asked - sent < 30 else asked


def _finish(turn: dict[str, Any], answer: dict[str, Any]) -> None:
    """The turn's final data from the ``Finished`` answer; what was already shown (its quotes and the
    explanation's sentences as they came) stays as it was drawn."""
    shown = {k: turn[k] for k in ("quotes", "explanation") if k in turn}
    turn.update(render.answer_turn(turn["question"], answer, turn.get("sources", [])))
    if "quotes" in shown:
        turn.update(quotes=shown["quotes"], explanation=shown.get("explanation", ""))


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
                # 4.1/14.0s") while it waits behind another student's, and the elapsed time while it runs:
                # the one place that shows the queue's progress (no control is dimmed or labelled).
                wait = gr.HTML("", elem_id="sb-wait", min_height=28, padding=False)
                with gr.Row():
                    clear_btn = gr.Button("New conversation", size="sm", elem_id="sb-clear")
                    export_btn = gr.DownloadButton("Export conversation (.md)", value=None, size="sm",
                                                   elem_id="sb-export")
                note = gr.HTML("", elem_id="sb-chat-note", padding=False)
                saved = gr.Dropdown(choices=[], value=None, label="Saved conversations", elem_id="sb-saved",
                                    allow_custom_value=False)
                with gr.Row(elem_id="sb-saved-actions"):
                    open_btn = gr.Button("Open", size="sm", scale=0, min_width=72, elem_id="sb-saved-open")
                    delete_btn = gr.Button("Delete", size="sm", scale=0, min_width=72, elem_id="sb-saved-delete")
                examples = gr.Examples(EXAMPLES, inputs=[question], label="Example questions (click one to ask it)")
                sent_at = gr.Number(visible=False)  # when the browser sent the question (set by SENT_AT below)
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(render.sources_html([]), elem_id="sb-sources")

    outputs = [chatbot, sources, state, question, export_btn, saved, note]
    sessions = chat_sessions(service)

    def on_send(q: str, st: dict[str, Any] | None, sent_at: float | None) -> tuple[Any, ...]:
        return enqueue(sessions, q, st, sent_at)

    def on_answer(st: dict[str, Any] | None, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        last: tuple[Any, ...] = ()
        for out in answer_next(service, sessions, st, user):
            if last:
                yield (*last, gr.skip())
            last = out
        if last:  # the answer is saved: the saved list shows it, selected
            conv = conversation(sessions, st)
            done = _finished(conv["turns"]) and not conv.get("closed")
            yield (*last, gr.update(choices=saved_choices(service, user), value=conv["id"]) if done else gr.skip())

    def on_export(st: dict[str, Any] | None) -> str:
        done = _finished(conversation(sessions, st)["turns"]) if st else []
        return "" if done else f'<p class="sb-note">{render.esc(NOTHING_TO_EXPORT)}</p>'

    def on_clear(st: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
        drop(sessions, (st or {}).get("id"))
        return ([], render.sources_html([]), {}, "", None,
                gr.update(choices=saved_choices(service, user_of(request)), value=None), "")

    def on_open(conv_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        try:
            st = reopen(service, sessions, user_of(request), conv_id)
        except StudybotError as exc:
            return (gr.skip(), render.sources_html([], status=str(exc)), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    gr.skip())
        if st is None:
            return (gr.skip(), render.sources_html([], status="Pick a saved conversation to open."), gr.skip(),
                    gr.skip(), gr.skip(), gr.skip(), gr.skip())
        return (_turn_messages(st["turns"]), sources_panel(st["turns"], st["id"]), st, "", _export(st["turns"]), gr.skip(),
                "")

    def on_delete(conv_id: str | None, st: dict[str, Any] | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        if conv_id:
            try:
                service.study.delete_conversation(user, conv_id)
            except StudybotError as exc:
                return (gr.skip(), render.sources_html([], status=str(exc)), gr.skip(), gr.skip(), gr.skip(),
                        gr.skip(), gr.skip())
        choices = gr.update(choices=saved_choices(service, user), value=None)
        if conv_id and (st or {}).get("id") == conv_id:  # the open conversation was deleted: start afresh
            drop(sessions, conv_id)
            return [], render.sources_html([]), {}, "", None, choices, ""
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), choices, gr.skip()

    def on_load(request: gr.Request) -> Any:
        return gr.update(choices=saved_choices(service, user_of(request)), value=None)

    # Sending is unqueued (the question shows at once, the box empties) and may happen while an answer is
    # written ("multiple"); each send queues one answer, which takes the oldest waiting question.
    sent_outputs = [chatbot, sources, state, question, note]
    answer_outputs = [chatbot, sources, export_btn, saved]
    for trigger in (ask_btn.click, question.submit):
        trigger(on_send, [question, state, sent_at], sent_outputs, queue=False, api_visibility="private",
                show_progress="hidden", trigger_mode="multiple", js=SENT_AT).then(
            on_answer, [state], answer_outputs, concurrency_id=LLM_QUEUE, api_visibility="private",
            show_progress="full", show_progress_on=[wait], trigger_mode="multiple")
    # An example question fills the box (Gradio's own event), then is sent like a typed one.
    examples.load_input_event.then(
        on_send, [question, state, sent_at], sent_outputs, queue=False, api_visibility="private",
        show_progress="hidden", trigger_mode="multiple", js=SENT_AT).then(
        on_answer, [state], answer_outputs, concurrency_id=LLM_QUEUE, api_visibility="private",
        show_progress="full", show_progress_on=[wait], trigger_mode="multiple")
    export_btn.click(on_export, [state], [note], queue=False, api_visibility="private", show_progress="hidden")
    clear_btn.click(on_clear, [state], outputs, queue=False, api_visibility="private", show_progress="hidden")
    open_btn.click(on_open, [saved], outputs, queue=False, api_visibility="private", show_progress="hidden")
    delete_btn.click(on_delete, [saved, state], outputs, queue=False, api_visibility="private",
                     show_progress="hidden")

    return {"chatbot": chatbot, "sources": sources, "state": state, "question": question, "saved": saved,
            "load": on_load}
