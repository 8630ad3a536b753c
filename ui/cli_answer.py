"""`studybot ask` and `studybot chat`: grounded, cited answers in the terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.answer.events import AnswerEvent, Condensed, Delta, Finished, Quotes
from rag.errors import QueryError, StudybotError
from rag.study.store import LOCAL_USER
from rag.text import strip_controls
from ui.commands import EXIT_ERROR, EXIT_OK, command
from ui.render import answer_turn, passages_to_sources, source_line

if TYPE_CHECKING:
    from rag.answer import Answer
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("ask", help="answer a question from the handbooks, with cited sources")
    s.add_argument("question", help="the question (quote it)")
    s.add_argument("-k", type=int, default=None, help="passages to retrieve (default: settings.retrieval.top_k)")
    s.add_argument("--max-tokens", type=int, default=None, help="longest answer in tokens")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")

    s = sub.add_parser("chat", help="interactive chat with follow-up questions (reads lines from stdin)")
    s.add_argument("-k", type=int, default=None)
    s.add_argument("--max-tokens", type=int, default=None)
    s.add_argument("--user", default=LOCAL_USER, help="whose conversations (saved in the study database)")
    s.add_argument("--resume", nargs="?", const="latest", default=None, metavar="ID",
                   help="continue the latest saved conversation (or the one with this id)")


def print_sources(answer: Answer) -> None:
    if answer.refused:
        if getattr(answer, "missing_terms", None):
            print(f"(No handbook mentions {', '.join(answer.missing_terms)}.)")
        return
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            print(f"  [{c.n}] {source_line(c)}")


def stream_answer(events: Iterator[AnswerEvent]) -> Answer | None:
    """Print the quotes when they are chosen and the explanation's sentences as they pass their check; return
    the final Answer."""
    from rag.answer.pipeline import blockquote

    answer = None
    shown = False
    for event in events:
        if isinstance(event, Condensed):
            print(f"(searching for: {event.question})", flush=True)
        elif isinstance(event, Quotes):
            print("\n\n".join(blockquote(q.marked()) for q in event.quotes) + "\n", flush=True)
        elif isinstance(event, Delta):
            shown = True
            print(event.text, end="", flush=True)
        elif isinstance(event, Finished):
            answer = event.answer
    if shown:
        print(flush=True)
    return answer


def warm_in_background(svc: StudyService) -> threading.Thread | None:
    """Load the model (and its kept prompt prefix) in a thread while the embedder and the index open: a fresh
    process pays the larger of the two, not their sum. Only when both are ready to load silently (the verified
    default model, an index on disk): anything to assemble, check or report happens in the main thread.

    llama.cpp's loader points file descriptors 1 and 2 at /dev/null while it loads (llama-cpp-python's
    ``suppress_stdout_stderr``), for every thread: join the returned thread before printing anything."""
    from rag.backends.models import default_gguf_status
    from rag.backends.store import CURRENT_FILE
    from rag.llm import uses_default_model

    s = svc.settings
    if not uses_default_model(s) or not default_gguf_status(s).verified:
        return None
    if not (s.storage.index_dir / CURRENT_FILE).is_file() and not (s.storage.index_dir / "chroma").is_dir():
        return None

    def warm() -> None:
        with contextlib.suppress(StudybotError):  # the main thread meets the same error and reports it
            svc.warm_up()

    thread = threading.Thread(target=warm, name="studybot-warm-up", daemon=True)
    thread.start()
    return thread


def _joined(thread: threading.Thread | None) -> None:
    if thread is not None:
        thread.join()


def _after(thread: threading.Thread | None, events: Iterator[AnswerEvent]) -> Iterator[AnswerEvent]:
    """``events``, the first one only once the warm-up thread is done (so nothing printed is lost)."""
    first = True
    for event in events:
        if first:
            _joined(thread)
            first = False
        yield event


@command("ask")
def cmd_ask(args: argparse.Namespace, svc: StudyService) -> int:
    warm = None
    if 0 < len(strip_controls(args.question).strip()) <= svc.settings.retrieval.max_question_chars:
        warm = warm_in_background(svc)  # not for a question that is refused before the model
    if args.json:
        try:
            answer_json = svc.ask(args.question, k=args.k, max_tokens=args.max_tokens).to_json()
        finally:
            _joined(warm)  # before main() prints the answer or the error
        print(json.dumps(answer_json, ensure_ascii=False))
        return EXIT_OK
    try:
        answer = stream_answer(_after(warm, svc.ask_stream(args.question, k=args.k, max_tokens=args.max_tokens)))
    except StudybotError:
        _joined(warm)
        print(file=sys.stdout, flush=True)  # end a partly streamed line before main() prints the error
        raise
    if answer is not None:
        print_sources(answer)
    return EXIT_OK


@command("chat")
def cmd_chat(args: argparse.Namespace, svc: StudyService) -> int:
    import uuid

    _joined(warm_in_background(svc))  # nothing may be printed while llama.cpp's loader holds stdout
    session = svc.chat_session()
    conv_id = uuid.uuid4().hex
    saved: list[dict[str, Any]] = []
    if args.resume:
        listed = svc.study.conversations(args.user)
        if args.resume != "latest":
            listed = [c for c in listed if c["id"] == args.resume]
        if not listed:
            print(f"No saved conversation{'' if args.resume == 'latest' else ' ' + args.resume} for {args.user}; "
                  "starting a new one.")
        else:
            conv_id = listed[0]["id"]
            saved = svc.study.conversation(args.user, conv_id) or []
            session.restore(saved)
            print(f"(resuming “{listed[0]['title']}”, {len(saved)} turns)")
    interactive = sys.stdin.isatty()
    if interactive:
        print("Ask about the handbooks; follow-up questions are understood. `exit` or Ctrl-D quits.")
    while True:
        if interactive:
            print("\nyou> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:  # EOF
            break
        question = strip_controls(line).strip()
        if not question:  # a blank line, or one of only control characters (NUL bytes, a stray escape)
            continue
        if question.lower() in ("exit", "quit", ":q"):
            break
        if question.lower() in ("reset", "/reset"):
            session.reset()
            print("(history cleared)")
            continue
        if not interactive:
            print(f"you> {question}")
        print("studybot> ", end="", flush=True)
        try:
            answer = stream_answer(session.ask_stream(question, k=args.k, max_tokens=args.max_tokens))
        except StudybotError as exc:
            # One bad question does not end the chat; a broken model or index does.
            print(flush=True)
            print(f"error: {exc}", file=sys.stderr, flush=True)
            if isinstance(exc, QueryError):
                continue
            return EXIT_ERROR
        if answer is not None:
            print_sources(answer)
            saved.append(answer_turn(question, answer.to_json(), passages_to_sources(answer.passages)))
            svc.study.save_conversation(args.user, conv_id, saved)
    return EXIT_OK
