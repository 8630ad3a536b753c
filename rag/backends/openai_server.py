"""The OpenAI-compatible server backend (llama_cpp.server, llama.cpp's llama-server, vLLM, Ollama, LM Studio):
streamed chat completions, JSON schemas sent as the server accepts them, and the registry's entry points
(:func:`build`, :func:`check`, :func:`prepare`; see :class:`rag.llm.BackendModule`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from rag.errors import BackendError, BackendUnreachableError
from rag.llm import LLM, NO_WORDS, YES_WORDS, Piece, Request, Response, too_long
from rag.settings import Settings

# 3.5: characters per token of the approximate count (the API has no tokenizer endpoint); ordinary English is
# about 4 characters a token, so a budget built on 3.5 over-counts and stays on the safe side.
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


class OpenAICompatLLM(LLM):
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (streamed).

    ``count_tokens`` is an approximation - ``ceil(len(text) / 3.5)`` - because the OpenAI API has no
    tokenizer endpoint and the server's model is unknown here. It over-counts ordinary English (about four
    characters a token), so context budgets built on it stay on the safe side. The server's own usage
    numbers replace it in a response's ``usage`` when it sends them.

    ``model``, ``api_key``, ``timeout``, ``n_ctx``: the ``llm`` settings' (``api_model``, ``api_key``,
    ``timeout``, ``n_ctx``; the registry in :mod:`rag.llm` passes them).
    """

    def __init__(self, base_url: str, *, model: str, api_key: str, timeout: float, n_ctx: int) -> None:
        from rag.backends.models import load_module

        openai = load_module("openai", "run `pip install 'openai>=1.40'` (or `make run`).")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.n_ctx = n_ctx
        self.name = f"openai:{self.base_url}"
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )
        self._json_mode: str | None = None  # the first mode the server accepted
        self._logprobs: bool | None = None  # whether the server returns top log-probabilities

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0

    def _unreachable(self) -> BackendError:
        return BackendUnreachableError(
            f"Cannot reach the model server at {self.base_url}: start it (e.g. `python -m llama_cpp.server "
            "--model <gguf>`) or fix STUDYBOT_LLM_BASE_URL."
        )

    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        """log P(yes) - log P(no) of the first reply token from the server's top log-probabilities (a "yes"
        or "no" missing from them counts at the least probable listed token); a server that returns none
        (llama_cpp.server without ``logits_all``) answers by one generated word (:meth:`LLM.yes_no`)."""
        if self._logprobs is not False:
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=1, temperature=0.0, logprobs=True,
                    top_logprobs=20)
                content = (response.choices[0].logprobs or None) and response.choices[0].logprobs.content
                top = content[0].top_logprobs if content else None
            except self._openai.APIConnectionError as exc:
                raise self._unreachable() from exc
            except self._openai.APIError:
                top = None
            if top:
                self._logprobs = True
                floor = min(t.logprob for t in top)
                yes = [t.logprob for t in top if t.token.strip().lower() in YES_NO["yes"]]
                no = [t.logprob for t in top if t.token.strip().lower() in YES_NO["no"]]
                return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])
            self._logprobs = False
        return super().yes_no(messages)

    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        start = time.perf_counter()
        approx_prompt = sum(self.count_tokens(m.get("content") or "") + 4 for m in messages) + 3
        if approx_prompt >= self.n_ctx:
            raise too_long(approx_prompt, self.n_ctx)
        return Response(self._pieces(messages, request, approx_prompt), prompt_tokens=approx_prompt, start=start)

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
                    raise too_long(approx_prompt, self.n_ctx) from exc
                if mode is not None and i + 1 < len(modes) and _rejects_response_format(exc):
                    continue  # this server does not take this response_format: try the next one
                raise
            if mode is not None:
                self._json_mode = mode
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _pieces(self, messages: list[dict[str, str]], req: Request, approx_prompt: int) -> Iterator[Piece]:
        """The server's streamed chunks as raw pieces, with its own token counts when it sends them (the last
        chunk, ``stream_options.include_usage``)."""
        import httpx

        openai = self._openai
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if req.stop:
            request["stop"] = list(req.stop)
        try:
            response = self._open(messages, request, req.json_schema, approx_prompt)
            with response:
                for chunk in response:
                    counts = chunk.usage
                    choice = chunk.choices[0] if chunk.choices else None
                    yield Piece((choice.delta.content if choice is not None and choice.delta else None) or "",
                                choice.finish_reason if choice is not None else None,
                                prompt_tokens=counts.prompt_tokens if counts is not None else None,
                                completion_tokens=(counts.completion_tokens or None) if counts is not None else None)
        except (openai.APIConnectionError, httpx.TransportError) as exc:
            raise self._unreachable() from exc
        except openai.APIStatusError as exc:
            if _is_context_error(exc):
                raise too_long(approx_prompt, self.n_ctx) from exc
            raise BackendError(
                f"The model server at {self.base_url} failed ({exc.status_code}: {_api_message(exc)})."
            ) from exc
        except openai.APIError as exc:
            raise BackendError(f"The model server at {self.base_url} failed ({_api_message(exc)}).") from exc


YES_NO = {"yes": {w.lower() for w in YES_WORDS}, "no": {w.lower() for w in NO_WORDS}}


def _logsumexp(xs: list[float]) -> float:
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


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


# --- the registry's entry points (rag.llm.BACKENDS["openai"]) ---------------------------------------------
def build(settings: Settings) -> OpenAICompatLLM:
    """A client of the server at ``llm.base_url`` (required: one sentence with the fix without it)."""
    llm = settings.llm
    if not llm.base_url:
        raise BackendError(
            "STUDYBOT_LLM_BACKEND=openai needs STUDYBOT_LLM_BASE_URL (e.g. http://127.0.0.1:8000/v1); "
            "set it or use STUDYBOT_LLM_BACKEND=llama_cpp."
        )
    return OpenAICompatLLM(llm.base_url, model=llm.api_model, api_key=llm.api_key, timeout=llm.timeout, n_ctx=llm.n_ctx)


def check(settings: Settings, *, runtime: bool) -> list[tuple[str, bool, str]]:
    """`studybot doctor`'s line: the server's address (set or not; the server is not called)."""
    url = settings.llm.base_url
    return [("llm", bool(url), f"OpenAI-compatible server at {url}" if url else "set STUDYBOT_LLM_BASE_URL")]


def prepare(settings: Settings) -> None:
    """Nothing before serving: the server is reached on the first call."""
