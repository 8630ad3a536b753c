"""The LLM layer: one small protocol, the one streaming loop every backend shares (:class:`Response`), and the
registry of backends (:data:`BACKENDS`) that ``settings.llm.backend`` chooses from; the backends live in
:mod:`rag.backends.llama_cpp` (in process) and :mod:`rag.backends.openai_server` (an OpenAI-compatible server).

Everything above this module (answers, quizzes, evals, UI) talks to :class:`LLM` only::

    llm = get_llm(settings)
    response = llm.stream(messages, max_tokens=320, temperature=0.0)
    for piece in response:           # the reply's text, piece by piece, as it is generated
        ...
    response.usage                   # this call's prompt/completion tokens, time to first token, total time,
                                     # finish reason (filled when the stream ends)
    llm.complete(messages, ...)      # the whole reply's text: llm.stream(...).text()

Every call returns its own :class:`Response` (simonw/llm's shape): its usage belongs to the call, not to the
shared model object, so a later call (a verification) never overwrites the figures of an earlier one.

A backend only turns a request into raw :class:`Piece` s (text, finish reason, its own token counts) and
returns them as a :class:`Response`; timing, the finish reason and the token counts are kept by the one loop
in :func:`_loop` (behind :class:`Response`).

Error contract (every error is one sentence the user can act on):

* :class:`~rag.errors.QueryError` - the prompt does not fit the context window. Raised by ``stream()`` when
  it is *called* (before any token), and by ``complete()``.
* :class:`~rag.errors.BackendError` - the server cannot be reached / refused the request, or generation
  failed. For ``stream()`` it may surface on the first ``next()``; wrap the whole iteration.
* :class:`~rag.errors.ModelError` - the local model file cannot be loaded (raised on first use).

A :class:`Response` must be iterated to the end (or closed) - the local backend holds its generation lock
while a stream is open, so an abandoned-but-referenced response blocks the next caller. ``for`` loops,
``.text()`` and ``"".join(...)`` do this; a response is also closed when its last reference goes away.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from rag.errors import BackendError, QueryError
from rag.settings import Settings

__all__ = ["BACKENDS", "LLM", "Backend", "Piece", "Request", "Response", "Usage", "build_llm", "clear_llm_cache",
           "get_llm"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # seconds from the call to the first token (model loading not included)
    total_s: float = 0.0
    finish_reason: str | None = None  # "stop" | "length" | None (closed early)


@dataclass(frozen=True)
class Request:
    """One generation's parameters. ``suppress``: words the model may not generate (honoured by backends with
    ``supports_suppress``); ``json_schema``: constrain the reply to JSON of this schema; ``shared``: the start of
    the last message that other calls share (the local backend evaluates it as a step of its own, so the
    reply never depends on what its KV cache held before)."""

    max_tokens: int
    temperature: float
    stop: tuple[str, ...] = ()
    json_schema: dict | None = None
    suppress: tuple[str, ...] = ()
    shared: str = ""


@dataclass(frozen=True)
class Piece:
    """What a backend streams, raw: a piece of the reply's text (may be empty) and what the backend knows at
    that point: the finish reason, and its own token counts (``None``: it does not know; the completion
    tokens are then the number of text pieces, each at least one token)."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Response:
    """One model call's reply. Iterate it for the text as it is generated; :meth:`text` waits for the rest and
    returns all of it; :attr:`usage` is this call's (filled as the stream goes, complete when it ends: exhausted,
    failed or closed). ``start``: when the call started (the clock of ``usage.ttft_s`` and ``usage.total_s``)."""

    def __init__(self, pieces: Iterable[Piece], *, prompt_tokens: int = 0, start: float | None = None) -> None:
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self._start = time.perf_counter() if start is None else start
        self._texts: Iterator[str] = _loop(iter(pieces), self.usage, self._start)  # (no reference back to self:
        # a response read in part and dropped is closed at once, not at the next garbage collection)
        self._inner: list[Iterator[str]] = []  # what :meth:`through` wrapped, innermost first
        self._chunks: list[str] = []
        self._on_end: list[Callable[[], None]] = []
        self._ended = False

    def __iter__(self) -> Response:
        return self

    def __next__(self) -> str:
        try:
            text = next(self._texts)
        except BaseException:
            self.close()  # exhausted or failed: nothing is left to read
            raise
        self._chunks.append(text)
        return text

    def text(self) -> str:
        """The whole reply (what was iterated already and the rest, waited for)."""
        for _ in self:
            pass
        return "".join(self._chunks)

    def close(self) -> None:
        """Stop the reply here (the backend releases the model); :attr:`usage` counts what was generated. The
        callbacks of :meth:`on_end` run once, after the backend's stream is closed."""
        if self._ended:
            return
        self._ended = True
        try:
            for texts in (self._texts, *reversed(self._inner)):  # the outermost wrapper first, the loop last
                close = getattr(texts, "close", None)
                if close is not None:
                    close()
        finally:
            for callback in self._on_end:
                callback()

    def through(self, wrap: Callable[[Iterator[str]], Iterator[str]]) -> Response:
        """Pass the text through ``wrap`` (a generator over the pieces, e.g. one that stops when other work
        arrives); the usage stays this call's, and the iterator ``wrap`` was given is closed after it."""
        self._inner.append(self._texts)
        self._texts = wrap(self._texts)
        return self

    def on_end(self, callback: Callable[[], None]) -> Response:
        """Call ``callback`` once, after the reply ended: exhausted, failed, closed, or never read and dropped."""
        self._on_end.append(callback)
        return self

    def __del__(self) -> None:
        if not getattr(self, "_ended", True):
            self.close()


def _loop(source: Iterator[Piece], usage: Usage, start: float) -> Iterator[str]:
    """The streaming loop of every backend: the time to the first text and of the whole call, the finish reason,
    the backend's token counts (completion tokens: the backend's count, at least one per text piece), written into
    ``usage``; the backend's stream is closed when this one ends, so a backend releases the model then."""
    n_pieces = 0
    counted = 0
    try:
        for piece in source:
            if piece.prompt_tokens:
                usage.prompt_tokens = piece.prompt_tokens
            if piece.completion_tokens is not None:
                counted = piece.completion_tokens
            if piece.finish_reason:
                usage.finish_reason = piece.finish_reason
            if piece.text:
                if usage.ttft_s is None:
                    usage.ttft_s = time.perf_counter() - start
                n_pieces += 1
                yield piece.text
    finally:
        usage.total_s = time.perf_counter() - start
        usage.completion_tokens = max(counted, n_pieces)
        close = getattr(source, "close", None)
        if close is not None:
            close()


class LLM(ABC):
    """What every backend (and the test fake) is. A backend implements :meth:`generate` (its raw pieces as a
    :class:`Response`) and :meth:`count_tokens`; :meth:`stream` and :meth:`complete` are the same for all."""

    name: str
    n_ctx: int
    supports_suppress: bool = False

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               stop: list[str] | None = None, json_schema: dict | None = None,
               suppress: list[str] | None = None, shared: str = "") -> Response:
        """The reply, streamed: iterate it for its text pieces; its ``usage`` is this call's (see
        :class:`Request` for the options)."""
        return self.generate(messages, Request(max_tokens, temperature, tuple(stop or ()), json_schema,
                                               tuple(suppress or ()), shared))

    def complete(self, messages: list[dict[str, str]], **options: Any) -> str:
        """The whole reply's text: ``stream(...).text()`` (same options), for a caller that needs no usage."""
        return self.stream(messages, **options).text()

    def keep_prefix(self, messages: list[dict[str, str]]) -> int:
        """Keep the prompt prefix ``messages`` (a fixed system message and example turns) evaluated for later
        prompts that start with it; returns its length in tokens (0: this backend keeps nothing, a server
        caches prompts itself)."""
        return 0

    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        """The log-odds of "yes" over "no" as the reply's first token: log P(yes) - log P(no), each summed over
        its spellings ("Yes", " yes", ...). One forward pass, nothing generated: a small model *chooses*
        far better than it writes. ``shared``: as in :class:`Request`. The base version generates one word
        greedily (+/-``YES_NO_TEXT_LOGODDS``) for backends that expose no probabilities."""
        word = self.complete(messages, max_tokens=2, temperature=0.0).strip().lower()
        if word.startswith("yes"):
            return YES_NO_TEXT_LOGODDS
        return -YES_NO_TEXT_LOGODDS if word.startswith("no") else 0.0

    @abstractmethod
    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        """The reply for ``request``: the backend's raw pieces as a :class:`Response` (may raise before the first
        piece, see the module doc)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...


# What :meth:`LLM.yes_no` returns for a generated "yes"/"no" when the backend gives no probabilities: about
# P = 0.98, the confidence the local model's log-odds show on clear cases.
YES_NO_TEXT_LOGODDS = 4.0
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")

# Smallest room that must be left for the answer after the prompt; below this the prompt is "too long" (a larger
# request is cut by the window, finish "length", not refused). 32: a design choice of the first LLM layer, not
# measured: one short sentence (~25 words) or a yes/no; a request for fewer tokens needs only its own count.
MIN_ANSWER_TOKENS = 32


def too_long(prompt_tokens: int, n_ctx: int) -> QueryError:
    return QueryError(
        f"The question and its context are too long for the model ({prompt_tokens} tokens, the window is "
        f"{n_ctx}): shorten the question, clear the chat history or lower STUDYBOT_ANSWER_CONTEXT_BUDGET_TOKENS."
    )


def check_fits(prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
    if prompt_tokens + min(max_tokens, MIN_ANSWER_TOKENS) > n_ctx:
        raise too_long(prompt_tokens, n_ctx)


# ------------------------------------------------------------------------------------------------------
# the backends, registered in one place, chosen by settings.llm.backend
# ------------------------------------------------------------------------------------------------------


class BackendModule(Protocol):
    """What a backend's module (in ``rag/backends/``) defines for the registry."""

    def build(self, settings: Settings) -> LLM:
        """A new instance from the settings (section ``llm``; ``storage`` for where models live)."""

    def check(self, settings: Settings, *, runtime: bool) -> list[tuple[str, bool, str]]:
        """`studybot doctor`'s lines for this backend: (name, ok, what was found or the fix); ``runtime``: also
        the checks that load the model (slow)."""

    def prepare(self, settings: Settings) -> None:
        """Before serving (`serve --prepare`): what must pass before the first call, raising its one-sentence
        error when it does not (or nothing)."""


@dataclass(frozen=True)
class Backend:
    """An LLM backend as the settings name it: ``module`` (``rag.backends.<name>``) defines :class:`BackendModule`'s
    ``build``, ``check`` and ``prepare`` and is imported on first use; ``key``: the settings (``"group.field"``)
    that make a different instance (:func:`get_llm` keeps one per distinct configuration, so the local model is
    loaded once); ``local``: it runs a GGUF in this process (the verified default one unless ``llm.model`` names
    another)."""

    name: str
    module: str
    key: tuple[str, ...]
    local: bool = False

    def load(self) -> BackendModule:
        return cast(BackendModule, importlib.import_module(self.module))

    def build(self, settings: Settings) -> LLM:
        return self.load().build(settings)

    def check(self, settings: Settings, *, runtime: bool) -> list[tuple[str, bool, str]]:
        return self.load().check(settings, runtime=runtime)

    def prepare(self, settings: Settings) -> None:
        self.load().prepare(settings)


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add a backend (a new one: a module in ``rag/backends/`` with an :class:`LLM` subclass and the functions of
    :class:`BackendModule`, registered just below)."""
    BACKENDS[backend.name] = backend
    return backend


register(Backend("llama_cpp", "rag.backends.llama_cpp",
                 key=("llm.model", "storage.models_dir", "llm.n_ctx", "llm.threads", "llm.n_gpu_layers"), local=True))
register(Backend("openai", "rag.backends.openai_server",
                 key=("llm.base_url", "llm.api_model", "llm.api_key", "llm.n_ctx", "llm.timeout")))


def known_backends() -> str:
    """The registered backends' names in words: "llama_cpp or openai"."""
    names = list(BACKENDS)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def backend_for(name: str) -> Backend:
    """The registered backend ``name``; an unknown name is one sentence listing the known ones."""
    backend = BACKENDS.get(name)
    if backend is None:
        raise BackendError(f"STUDYBOT_LLM_BACKEND={name} is not a known LLM backend: it takes one of "
                           f"{known_backends()}.")
    return backend


def uses_default_model(settings: Settings) -> bool:
    """Whether the settings run the verified default GGUF in process (a local backend, no ``llm.model``): what
    `doctor --fix` provisions and the CLI warms up early."""
    return backend_for(settings.llm.backend).local and settings.llm.model is None


def _setting(settings: Settings, path: str) -> Any:
    group, field = path.split(".")
    return getattr(getattr(settings, group), field)


_CACHE: dict[tuple, LLM] = {}
_CACHE_LOCK = threading.Lock()


def get_llm(settings: Settings) -> LLM:
    """The LLM the settings describe; one instance per distinct configuration per process (so the local
    model is loaded once). The local model is loaded lazily on first use, not here."""
    backend = backend_for(settings.llm.backend)
    key = (backend.name, *(_setting(settings, path) for path in backend.key))
    with _CACHE_LOCK:
        llm = _CACHE.get(key)
        if llm is None:
            llm = backend.build(settings)
            _CACHE[key] = llm
        return llm


def build_llm(settings: Settings) -> LLM:
    """A new instance of the LLM the settings describe (not cached: the evals judge, a bench's own model)."""
    return backend_for(settings.llm.backend).build(settings)


def clear_llm_cache() -> None:
    """Forget the cached instances (tests; switching models). Loaded models are freed when unreferenced."""
    with _CACHE_LOCK:
        _CACHE.clear()
