"""The LLM layer: one small protocol, its shared base and the factory; the backends live in
:mod:`rag.llm_llama_cpp` (in process) and :mod:`rag.llm_openai` (an OpenAI-compatible server).

Everything above this module (answers, quizzes, evals, UI) talks to :class:`LLM` only::

    llm = get_llm(settings)
    for piece in llm.stream(messages, max_tokens=320):
        ...
    llm.last_usage  # prompt/completion tokens, time to first token, total time, finish reason

Error contract (every error is one sentence the user can act on):

* :class:`~rag.errors.QueryError` - the prompt does not fit the context window. Raised by ``stream()`` when
  it is *called* (before any token), and by ``complete()``.
* :class:`~rag.errors.BackendError` - the server cannot be reached / refused the request, or generation
  failed. For ``stream()`` it may surface on the first ``next()``; wrap the whole iteration.
* :class:`~rag.errors.ModelError` - the local model file cannot be loaded (raised on first use).

``stream()`` must be iterated to the end (or closed) - the local backend holds its generation lock while a
stream is open, so an abandoned-but-referenced generator blocks the next caller. ``for`` loops and
``"".join(...)`` do this automatically; CPython also closes a generator when its last reference goes away.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import BackendError, QueryError
from rag.settings import Settings

__all__ = ["LLM", "Request", "Usage", "clear_llm_cache", "get_llm"]


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
    temperature: float = 0.1
    stop: tuple[str, ...] = ()
    json_schema: dict | None = None
    suppress: tuple[str, ...] = ()
    shared: str = ""


class LLM(ABC):
    """What every backend (and the test fake) is. A backend implements :meth:`generate` and
    :meth:`count_tokens`; :meth:`stream` and :meth:`complete` are the same for all of them."""

    name: str
    n_ctx: int
    last_usage: Usage
    supports_suppress: bool = False

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.1,
               stop: list[str] | None = None, json_schema: dict | None = None,
               suppress: list[str] | None = None, shared: str = "") -> Iterator[str]:
        """The reply's text pieces (see :class:`Request` for the options)."""
        return self.generate(messages, Request(max_tokens, temperature, tuple(stop or ()), json_schema,
                                               tuple(suppress or ()), shared))

    def complete(self, messages: list[dict[str, str]], **options: Any) -> str:
        """The whole reply: the joined :meth:`stream` (same options)."""
        return "".join(self.stream(messages, **options))

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
    def generate(self, messages: list[dict[str, str]], request: Request) -> Iterator[str]:
        """Stream the reply for ``request`` (may raise before the first piece, see the module doc)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...


# What :meth:`LLM.yes_no` returns for a generated "yes"/"no" when the backend gives no probabilities: about
# P = 0.98, the confidence the local model's log-odds show on clear cases.
YES_NO_TEXT_LOGODDS = 4.0
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")

# Smallest room that must be left for the answer after the prompt; below this the prompt is "too long".
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
# factory
# ------------------------------------------------------------------------------------------------------

_CACHE: dict[tuple, LLM] = {}
_CACHE_LOCK = threading.Lock()


def get_llm(settings: Settings) -> LLM:
    """The LLM the settings describe; one instance per distinct configuration per process (so the local
    model is loaded once). The local model is loaded lazily on first use, not here."""
    if settings.llm.backend == "openai":
        if not settings.llm.base_url:
            raise BackendError(
                "STUDYBOT_LLM_BACKEND=openai needs STUDYBOT_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1); "
                "set it or use STUDYBOT_LLM_BACKEND=llama_cpp."
            )
        key: tuple = (
            "openai",
            settings.llm.base_url.rstrip("/"),
            settings.llm.api_model,
            settings.llm.api_key,
            settings.llm.n_ctx,
        )
    else:
        key = (
            "llama_cpp",
            str(settings.llm.model or ""),
            str(settings.storage.models_dir),
            settings.llm.n_ctx,
            settings.llm.threads,
            settings.llm.n_gpu_layers,
        )
    with _CACHE_LOCK:
        llm = _CACHE.get(key)
        if llm is None:
            llm = _build(settings)
            _CACHE[key] = llm
        return llm


def _build(settings: Settings) -> LLM:
    if settings.llm.backend == "openai":
        from rag.llm_openai import OpenAICompatLLM

        assert settings.llm.base_url
        return OpenAICompatLLM(
            settings.llm.base_url, settings.llm.api_model, settings.llm.api_key, n_ctx=settings.llm.n_ctx
        )
    from rag.llm_llama_cpp import LlamaCppLLM
    from rag.models import resolve_gguf

    preflight = None
    if settings.llm.runtime_check:
        from rag.runtime_check import ensure_runtime

        def preflight(path: Path) -> object:
            return ensure_runtime(path, settings.storage.models_dir, n_threads=settings.llm.threads,
                                  n_gpu_layers=settings.llm.n_gpu_layers)

    return LlamaCppLLM(
        resolve_gguf(settings),
        n_ctx=settings.llm.n_ctx,
        n_threads=settings.llm.threads,
        n_gpu_layers=settings.llm.n_gpu_layers,
        preflight=preflight,
        prefix_dir=settings.storage.models_dir / "prefixes",
    )


def clear_llm_cache() -> None:
    """Forget the cached instances (tests; switching models). Loaded models are freed when unreferenced."""
    with _CACHE_LOCK:
        _CACHE.clear()
