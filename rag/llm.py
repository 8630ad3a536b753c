"""The LLM layer: one small protocol, a local llama.cpp backend and an OpenAI-compatible server backend.

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

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag.errors import BackendError, BackendUnreachableError, ModelError, QueryError
from rag.settings import Settings

__all__ = ["LLM", "LlamaCppLLM", "OpenAICompatLLM", "Usage", "clear_llm_cache", "get_llm"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # seconds from the call to the first token (model loading not included)
    total_s: float = 0.0
    finish_reason: str | None = None  # "stop" | "length" | None (closed early)


@runtime_checkable
class LLM(Protocol):
    name: str
    n_ctx: int
    last_usage: Usage

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[str]: ...

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> str: ...

    def count_tokens(self, text: str) -> int: ...


# Smallest room that must be left for the answer after the prompt; below this the prompt is "too long".
MIN_ANSWER_TOKENS = 32


def _too_long(prompt_tokens: int, n_ctx: int) -> QueryError:
    return QueryError(
        f"The question and its context are too long for the model ({prompt_tokens} tokens, the window is "
        f"{n_ctx}): shorten the question, clear the chat history or lower STUDYBOT_CONTEXT_BUDGET_TOKENS."
    )


def _check_fits(prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
    if prompt_tokens + min(max_tokens, MIN_ANSWER_TOKENS) > n_ctx:
        raise _too_long(prompt_tokens, n_ctx)


# ------------------------------------------------------------------------------------------------------
# llama.cpp (in process)
# ------------------------------------------------------------------------------------------------------


class LlamaCppLLM:
    """A GGUF model run in process by llama-cpp-python.

    The model is loaded lazily, once, on first use (or explicitly with :meth:`load`). ``llama_cpp.Llama`` is
    not thread-safe, so generations are serialised by a lock: concurrent callers queue. The KV cache is kept
    between calls, and llama-cpp-python re-uses the longest common token prefix with the previous prompt,
    so a fixed system prompt at the start of every request is only evaluated once.
    """

    supports_suppress = True  # stream(..., suppress=[...]) is honoured

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 4096,
        n_threads: int = 2,
        n_gpu_layers: int = 0,
        seed: int = 0,
        preflight: Callable[[Path], object] | None = None,
    ) -> None:
        """``preflight(model_path)`` runs before the model is loaded in process (the runtime check: a build that
        would crash the process raises a one-sentence error there instead)."""
        self.model_path = Path(model_path)
        self.preflight = preflight
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.seed = seed
        self.name = f"llama.cpp:{self.model_path.name}"
        self.last_usage = Usage()
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._formatter: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._grammars: dict[str, Any] = {}

    # --- loading ---------------------------------------------------------------------------------------
    def load(self) -> Any:
        """Load the model (once; later calls return the loaded ``llama_cpp.Llama``)."""
        if self._llama is not None:
            return self._llama
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            from rag.models import load_module

            llama_cpp = load_module(
                "llama_cpp", "run `pip install 'llama-cpp-python[server]==0.3.36'` (or `make run`)."
            )
            path = self.model_path
            if not path.is_file():
                raise ModelError(
                    f"No model file at {path}: fix STUDYBOT_LLM_MODEL or unset it to use the default model."
                )
            if self.preflight is not None:
                self.preflight(path)
            start = time.perf_counter()
            try:
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_batch=512,
                    n_gpu_layers=self.n_gpu_layers,
                    seed=self.seed,
                    verbose=False,
                )
            except Exception as exc:  # llama-cpp raises ValueError/RuntimeError with little detail
                raise ModelError(
                    f"llama.cpp could not load the model {path} ({exc}): check that it is a complete GGUF "
                    "file this llama.cpp supports, or unset STUDYBOT_LLM_MODEL to use the verified default."
                ) from exc
            self.load_seconds = time.perf_counter() - start
            self._formatter = _jinja_formatter(llama)
            self._llama = llama
            return llama

    # --- tokens ----------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Exact token count with the model's tokenizer (no BOS). Tokenizing only reads the vocabulary, so it
        runs without waiting for a generation in progress."""
        if not text:
            return 0
        return len(self.load().tokenize(text.encode("utf-8"), add_bos=False))

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the chat prompt exactly as llama-cpp-python formats it (chat template + special tokens)."""
        llama = self.load()
        if self._formatter is not None:
            result = self._formatter(messages=messages)
            return len(
                llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
            )
        # No Jinja template in the GGUF: approximate (content + a few tokens of role markup per message).
        return sum(self.count_tokens(m.get("content") or "") + 4 for m in messages) + 3

    # --- generation ------------------------------------------------------------------------------------
    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
        suppress: list[str] | None = None,
    ) -> Iterator[str]:
        """Stream the reply's text pieces. ``suppress``: words the model may not generate (each word's
        single-token forms, with and without a leading space, get a -100 logit bias)."""
        llama = self.load()
        start = time.perf_counter()
        prompt_tokens = self.count_prompt_tokens(messages)
        _check_fits(prompt_tokens, max_tokens, self.n_ctx)
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": list(stop or []),
            "seed": self.seed,
        }
        if suppress:
            kwargs["logit_bias"] = {tok: -100.0 for tok in self._single_tokens(llama, suppress)}
        if json_schema is not None:
            # Same grammar response_format={"type": "json_object", "schema": ...} would build, but built here:
            # llama-cpp-python silently falls back to "any JSON" when a schema cannot be converted.
            kwargs["grammar"] = self._grammar(json_schema)
        return self._generate(llama, messages, kwargs, prompt_tokens, start)

    def _generate(
        self,
        llama: Any,
        messages: list[dict[str, str]],
        kwargs: dict[str, Any],
        prompt_tokens: int,
        start: float,
    ) -> Iterator[str]:
        usage = Usage(prompt_tokens=prompt_tokens)
        n_pieces = 0
        with self._gen_lock:
            try:
                for chunk in llama.create_chat_completion(messages=messages, stream=True, **kwargs):
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        usage.finish_reason = choice["finish_reason"]
                    text = choice.get("delta", {}).get("content")
                    if text:
                        if usage.ttft_s is None:
                            usage.ttft_s = time.perf_counter() - start
                        n_pieces += 1
                        yield text
            except ValueError as exc:
                if "context window" in str(exc):
                    raise _too_long(prompt_tokens, self.n_ctx) from exc
                raise BackendError(f"llama.cpp failed while generating ({exc}).") from exc
            except RuntimeError as exc:
                raise BackendError(f"llama.cpp failed while generating ({exc}).") from exc
            finally:
                usage.total_s = time.perf_counter() - start
                # Tokens the model generated = tokens evaluated past the prompt (+1: after "length" the last
                # sampled token is never evaluated). Re-tokenizing the text would under-count grammar output.
                generated = llama.n_tokens - prompt_tokens + (1 if usage.finish_reason == "length" else 0)
                usage.completion_tokens = max(generated, n_pieces)  # each piece is >= 1 token
                self.last_usage = usage

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> str:
        return "".join(
            self.stream(
                messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema
            )
        )

    @staticmethod
    def _single_tokens(llama: Any, words: list[str]) -> set[int]:
        ids: set[int] = set()
        for word in words:
            for form in (word, " " + word):
                toks = llama.tokenize(form.encode("utf-8"), add_bos=False)
                if len(toks) == 1:
                    ids.add(int(toks[0]))
        return ids

    def _grammar(self, schema: dict) -> Any:
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                # The schema in its own key order: llama.cpp's converter keeps the properties' order, so
                # the model writes e.g. the question before the answer (sorted keys would put "answer" first).
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            except Exception as exc:
                raise BackendError(
                    f"This JSON schema cannot be turned into a llama.cpp grammar ({exc})."
                ) from exc
            self._grammars[key] = grammar
        return grammar

    def close(self) -> None:
        """Free the model (a later call loads it again)."""
        with self._load_lock, self._gen_lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def _jinja_formatter(llama: Any) -> Any:
    """The same Jinja2 chat formatter llama-cpp-python builds from the GGUF's ``tokenizer.chat_template``
    (used to count prompt tokens exactly before generating); None when the GGUF has no template or the model
    was given an explicit chat handler."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template or llama.chat_handler is not None:
        return None
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llama._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
    except Exception:  # private API moved or template unparsable: fall back to the approximate count
        return None


# ------------------------------------------------------------------------------------------------------
# OpenAI-compatible server (llama_cpp.server, llama.cpp's llama-server, vLLM, Ollama, LM Studio, ...)
# ------------------------------------------------------------------------------------------------------

CHARS_PER_TOKEN = 3.5

# How a JSON schema is sent, best first: the OpenAI standard, llama_cpp.server's extension (it rejects
# "json_schema" with a 422 but constrains {"type": "json_object", "schema": ...}), then plain JSON mode.
_JSON_MODES = ("json_schema", "json_object+schema", "json_object")


def _response_format(mode: str, schema: dict) -> dict[str, Any]:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    if mode == "json_object+schema":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


class OpenAICompatLLM:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (streamed).

    ``count_tokens`` is an approximation - ``ceil(len(text) / 3.5)`` - because the OpenAI API has no
    tokenizer endpoint and the server's model is unknown here. It over-counts ordinary English (about four
    characters a token), so context budgets built on it stay on the safe side. The server's own usage
    numbers are used in :attr:`last_usage` when it sends them.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "studybot",
        api_key: str = "not-needed",
        timeout: float = 120,
        n_ctx: int = 4096,
    ) -> None:
        from rag.models import load_module

        openai = load_module("openai", "run `pip install 'openai>=1.40'` (or `make run`).")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.n_ctx = n_ctx
        self.name = f"openai:{self.base_url}"
        self.last_usage = Usage()
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )
        self._json_mode: str | None = None  # the first mode the server accepted

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0

    def _unreachable(self) -> BackendError:
        return BackendUnreachableError(
            f"Cannot reach the model server at {self.base_url}: start it (e.g. `python -m llama_cpp.server "
            "--model <gguf>`) or fix STUDYBOT_LLM_BASE_URL."
        )

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[str]:
        start = time.perf_counter()
        approx_prompt = sum(self.count_tokens(m.get("content") or "") + 4 for m in messages) + 3
        if approx_prompt >= self.n_ctx:
            raise _too_long(approx_prompt, self.n_ctx)
        return self._generate(messages, max_tokens, temperature, stop, json_schema, approx_prompt, start)

    def _open(
        self,
        messages: list[dict[str, str]],
        request: dict[str, Any],
        json_schema: dict | None,
        approx_prompt: int,
    ) -> Any:
        """Send the request; with a schema, walk down ``_JSON_MODES`` until the server accepts one."""
        openai = self._openai
        modes = (
            [None] if json_schema is None else ([self._json_mode] if self._json_mode else list(_JSON_MODES))
        )
        for i, mode in enumerate(modes):
            extra = (
                {}
                if mode is None or json_schema is None
                else {"response_format": _response_format(mode, json_schema)}
            )
            try:
                response = self._client.chat.completions.create(messages=messages, **request, **extra)
            except openai.APIStatusError as exc:
                if _is_context_error(exc):
                    raise _too_long(approx_prompt, self.n_ctx) from exc
                if mode is not None and i + 1 < len(modes) and _rejects_response_format(exc):
                    continue  # this server does not take this response_format: try the next one
                raise
            if mode is not None:
                self._json_mode = mode
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _generate(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        json_schema: dict | None,
        approx_prompt: int,
        start: float,
    ) -> Iterator[str]:
        import httpx

        openai = self._openai
        usage = Usage(prompt_tokens=approx_prompt)
        n_pieces = 0
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            request["stop"] = list(stop)
        try:
            response = self._open(messages, request, json_schema, approx_prompt)
            with response:
                for chunk in response:
                    if chunk.usage is not None:
                        usage.prompt_tokens = chunk.usage.prompt_tokens or usage.prompt_tokens
                        usage.completion_tokens = chunk.usage.completion_tokens or 0
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.finish_reason:
                        usage.finish_reason = choice.finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        if usage.ttft_s is None:
                            usage.ttft_s = time.perf_counter() - start
                        n_pieces += 1
                        yield text
        except (openai.APIConnectionError, httpx.TransportError) as exc:
            raise self._unreachable() from exc
        except openai.APIStatusError as exc:
            if _is_context_error(exc):
                raise _too_long(approx_prompt, self.n_ctx) from exc
            raise BackendError(
                f"The model server at {self.base_url} failed ({exc.status_code}: {_api_message(exc)})."
            ) from exc
        except openai.APIError as exc:
            raise BackendError(f"The model server at {self.base_url} failed ({_api_message(exc)}).") from exc
        finally:
            usage.total_s = time.perf_counter() - start
            if not usage.completion_tokens:
                usage.completion_tokens = n_pieces  # servers stream about one token per chunk
            self.last_usage = usage

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> str:
        return "".join(
            self.stream(
                messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema
            )
        )


def _api_message(exc: Exception) -> str:
    """The server's error message on one line (at most 300 characters)."""
    body = getattr(exc, "body", None)
    msg: Any = None
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
    text = " ".join(str(msg or getattr(exc, "message", None) or exc).split())
    return text[:300]


def _rejects_response_format(exc: Any) -> bool:
    """A 400/422 - or llama_cpp.server's 500 wrapping a pydantic error - about ``response_format``."""
    if exc.status_code in (400, 422):
        return True
    text = _api_message(exc).lower()
    return "response_format" in text or "json_schema" in text


def _is_context_error(exc: Exception) -> bool:
    text = _api_message(exc).lower()
    return "context" in text and any(w in text for w in ("exceed", "too long", "length", "window", "maximum"))


# ------------------------------------------------------------------------------------------------------
# factory
# ------------------------------------------------------------------------------------------------------

_CACHE: dict[tuple, LLM] = {}
_CACHE_LOCK = threading.Lock()


def get_llm(settings: Settings) -> LLM:
    """The LLM the settings describe; one instance per distinct configuration per process (so the local
    model is loaded once). The local model is loaded lazily on first use, not here."""
    if settings.llm_backend == "openai":
        if not settings.llm_base_url:
            raise BackendError(
                "STUDYBOT_LLM_BACKEND=openai needs STUDYBOT_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1); "
                "set it or use STUDYBOT_LLM_BACKEND=llama_cpp."
            )
        key: tuple = (
            "openai",
            settings.llm_base_url.rstrip("/"),
            settings.llm_api_model,
            settings.llm_api_key,
            settings.n_ctx,
        )
    else:
        key = (
            "llama_cpp",
            str(settings.llm_model or ""),
            str(settings.models_dir),
            settings.n_ctx,
            settings.threads,
            settings.n_gpu_layers,
        )
    with _CACHE_LOCK:
        llm = _CACHE.get(key)
        if llm is None:
            llm = _build(settings)
            _CACHE[key] = llm
        return llm


def _build(settings: Settings) -> LLM:
    if settings.llm_backend == "openai":
        assert settings.llm_base_url
        return OpenAICompatLLM(
            settings.llm_base_url, settings.llm_api_model, settings.llm_api_key, n_ctx=settings.n_ctx
        )
    from rag.models import resolve_gguf

    preflight = None
    if settings.runtime_check:
        from rag.runtime_check import ensure_runtime

        def preflight(path: Path) -> object:
            return ensure_runtime(path, settings.models_dir, n_threads=settings.threads,
                                  n_gpu_layers=settings.n_gpu_layers)

    return LlamaCppLLM(
        resolve_gguf(settings),
        n_ctx=settings.n_ctx,
        n_threads=settings.threads,
        n_gpu_layers=settings.n_gpu_layers,
        preflight=preflight,
    )


def clear_llm_cache() -> None:
    """Forget the cached instances (tests; switching models). Loaded models are freed when unreferenced."""
    with _CACHE_LOCK:
        _CACHE.clear()
