"""The Ragas judge: an OpenAI-compatible endpoint (a local llama_cpp.server by default) behind Ragas 0.4's
``InstructorBaseRagasLLM`` interface, with schema-constrained JSON and counted parse failures.

Why not ``ragas.llms.llm_factory``: it wraps the client with instructor in ``Mode.JSON``, which sends
``response_format={"type": "json_object"}`` - llama_cpp.server then constrains the reply to *any* JSON, not to
the metric's schema, and a 1.5B judge often returns objects with the wrong keys (instructor retries hide
this). :class:`RagasJudgeLLM` instead sends the pydantic output model's JSON schema (tightened: 0/1 verdicts
become ``enum: [0, 1]``) through :class:`rag.backends.openai_server.OpenAICompatLLM` (built by :func:`rag.llm.build_llm`),
which uses the OpenAI ``json_schema`` response format or llama_cpp.server's ``{"type": "json_object", "schema":
...}`` - so llama.cpp decodes with a grammar built from the schema. Every reply that still fails to validate is counted per metric
(:class:`JudgeStats`); none is silently dropped.

Nothing here talks to the internet: the endpoint is local (or the one ``STUDYBOT_JUDGE_BASE_URL`` names), the
embeddings are our local sentence-transformers model, and Ragas telemetry is off
(``rag.settings.apply_offline_env``). The Ragas metric collections used here do not touch tiktoken.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rag.errors import BackendError, StudybotError
from rag.settings import Settings, apply_offline_env

apply_offline_env()

from ragas.embeddings.base import BaseRagasEmbedding  # noqa: E402
from ragas.llms.base import InstructorBaseRagasLLM  # noqa: E402

__all__ = [
    "LLM_METRICS",
    "JudgeEndpoint",
    "JudgeParseError",
    "JudgeServer",
    "JudgeStats",
    "RagasEmbeddings",
    "RagasJudgeLLM",
    "build_metrics",
    "constrain_schema",
    "judge_llm",
    "metric_scope",
    "open_judge",
]

# The LLM-judged Ragas metrics studybot reports, in report order.
LLM_METRICS: tuple[str, ...] = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")

MAX_LIST_ITEMS = 12  # statements / classifications per judge reply (keeps small judges from looping)


class JudgeParseError(StudybotError):
    """The judge's reply was not a valid instance of the metric's output model (after retries)."""


# ------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------

_current_metric: contextvars.ContextVar[str] = contextvars.ContextVar("studybot_judge_metric", default="other")
_trace: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar("studybot_judge_trace",
                                                                                      default=None)
# A judge reply is kept up to this many characters in a run's trace (for reading, not scoring): a design choice.
TRACE_CHARS = 1500


@contextlib.contextmanager
def metric_scope(name: str, trace: list[dict[str, Any]] | None = None) -> Iterator[None]:
    """Attribute judge calls made inside the block (also from ``asyncio.to_thread``) to metric ``name``; with
    ``trace``, append each raw judge reply to it (for reports: why did an item score what it scored)."""
    token = _current_metric.set(name)
    trace_token = _trace.set(trace)
    try:
        yield
    finally:
        _trace.reset(trace_token)
        _current_metric.reset(token)


@dataclass
class MetricCalls:
    calls: int = 0  # judge requests sent (retries included)
    parse_failures: int = 0  # replies that were not valid JSON for the schema
    errors: int = 0  # requests that failed (server error, timeout)
    truncated: int = 0  # replies cut by max_tokens
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "parse_failures": self.parse_failures,
            "errors": self.errors,
            "truncated": self.truncated,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class JudgeStats:
    """Judge requests per metric (thread-safe)."""

    per_metric: dict[str, MetricCalls] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, metric: str, *, seconds: float, parse_failure: bool = False, error: bool = False,
               truncated: bool = False) -> None:
        with self._lock:
            m = self.per_metric.setdefault(metric, MetricCalls())
            m.calls += 1
            m.seconds += seconds
            m.parse_failures += int(parse_failure)
            m.errors += int(error)
            m.truncated += int(truncated)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: v.to_json() for k, v in self.per_metric.items()}


# ------------------------------------------------------------------------------------------------------
# schema-constrained judge LLM
# ------------------------------------------------------------------------------------------------------


def _is_binary(prop: dict[str, Any]) -> bool:
    desc = str(prop.get("description", "")).lower()
    return "0/1" in desc or "binary" in desc or ("1 if" in desc and "0" in desc)


def constrain_schema(schema: dict[str, Any], max_items: int = MAX_LIST_ITEMS) -> dict[str, Any]:
    """A copy of a pydantic JSON schema, tightened for grammar decoding: integer 0/1 verdicts become
    ``enum: [0, 1]`` and arrays get ``minItems: 1`` and ``maxItems`` (an empty list of statements or
    classifications makes the Ragas score NaN). (No ``maxLength``: llama.cpp expands it into a huge grammar.)"""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if out.get("type") == "integer" and _is_binary(out):
            out["enum"] = [0, 1]
        if out.get("type") == "array":
            out.setdefault("minItems", 1)
            out.setdefault("maxItems", max_items)
        return out

    return walk(json.loads(json.dumps(schema)))


def _parse(text: str, model: type[BaseModel]) -> BaseModel:
    text = text.strip()
    if text.startswith("```"):  # endpoints without grammar support sometimes fence the JSON
        text = text.strip("`")
        text = text[text.find("{"):] if "{" in text else text
    return model.model_validate_json(text)


class RagasJudgeLLM(InstructorBaseRagasLLM):
    """Ragas 0.4 structured-output LLM over a studybot :class:`rag.llm.LLM` (normally ``OpenAICompatLLM``).

    ``generate(prompt, response_model)`` sends the prompt as one user message with the model's (tightened) JSON
    schema, validates the reply with pydantic, retries ``retries`` times (the retry at a higher temperature)
    and raises :class:`JudgeParseError` when no reply validates. Every call is recorded in :attr:`stats` under
    the metric set by :func:`metric_scope`.
    """

    def __init__(self, llm: Any, *, max_tokens: int, retries: int, stats: JudgeStats | None = None,
                 temperature: float = 0.0) -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.retries = max(0, retries)
        self.temperature = temperature
        self.stats = stats or JudgeStats()
        self._schemas: dict[type, dict[str, Any]] = {}
        # Requests are serialised: a local CPU judge gains nothing from parallel requests.
        self._lock = threading.Lock()

    def schema_for(self, model: type[BaseModel]) -> dict[str, Any]:
        if model not in self._schemas:
            self._schemas[model] = constrain_schema(model.model_json_schema())
        return self._schemas[model]

    def generate(self, prompt: str, response_model: type[Any]) -> Any:
        metric = _current_metric.get()
        schema = self.schema_for(response_model)
        messages = [{"role": "user", "content": prompt}]
        last_error = ""
        for attempt in range(self.retries + 1):
            temperature = self.temperature if attempt == 0 else max(self.temperature, 0.4)
            start = time.perf_counter()
            try:
                with self._lock:
                    response = self.llm.stream(messages, max_tokens=self.max_tokens, temperature=temperature,
                                               json_schema=schema)
                    text = response.text()
                    finish = response.usage.finish_reason
            except StudybotError:
                self.stats.record(metric, seconds=time.perf_counter() - start, error=True)
                raise
            seconds = time.perf_counter() - start
            trace = _trace.get()
            if trace is not None:
                trace.append({"output": response_model.__name__, "reply": text[:TRACE_CHARS],
                              "finish": finish, "seconds": round(seconds, 1)})
            try:
                result = _parse(text, response_model)
            except (ValidationError, ValueError) as exc:
                self.stats.record(metric, seconds=seconds, parse_failure=True, truncated=finish == "length")
                last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                if finish == "length":
                    last_error += f" (reply cut at max_tokens={self.max_tokens})"
                continue
            self.stats.record(metric, seconds=seconds)
            return result
        raise JudgeParseError(
            f"The judge returned no valid {response_model.__name__} in {self.retries + 1} attempts ({last_error})."
        )

    async def agenerate(self, prompt: str, response_model: type[Any]) -> Any:
        return await asyncio.to_thread(self.generate, prompt, response_model)

    def __repr__(self) -> str:
        return f"RagasJudgeLLM({getattr(self.llm, 'name', self.llm)!r})"


class RagasEmbeddings(BaseRagasEmbedding):
    """Ragas 0.4 (modern) embeddings over studybot's local :class:`rag.backends.embeddings.Embedder`."""

    def __init__(self, embedder: Any) -> None:
        super().__init__(cache=None)
        self.embedder = embedder

    def embed_text(self, text: str, **kwargs: Any) -> list[float]:
        return self.embedder.embed_query(text)

    async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
        return await asyncio.to_thread(self.embed_text, text)

    def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return self.embedder.embed(list(texts))

    async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_texts, texts)


def build_metrics(llm: RagasJudgeLLM, embeddings: BaseRagasEmbedding | None, names: Sequence[str],
                  strictness: int | None = None) -> dict[str, Any]:
    """The Ragas ``metrics.collections`` objects for ``names`` (a subset of :data:`LLM_METRICS`); answer
    relevancy needs ``embeddings`` and ``strictness`` (``settings.judge.relevancy_strictness``)."""
    from ragas.metrics.collections import AnswerRelevancy, ContextPrecision, ContextRecall, Faithfulness

    out: dict[str, Any] = {}
    for name in names:
        if name == "faithfulness":
            out[name] = Faithfulness(llm=llm)
        elif name == "answer_relevancy":
            if embeddings is None or strictness is None:
                raise ValueError("answer_relevancy needs embeddings and a strictness")
            out[name] = AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=max(1, strictness))
        elif name == "context_precision":
            out[name] = ContextPrecision(llm=llm)
        elif name == "context_recall":
            out[name] = ContextRecall(llm=llm)
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(LLM_METRICS)}")
    return out


# ------------------------------------------------------------------------------------------------------
# the endpoint: a local llama_cpp.server for the run, or a configured OpenAI-compatible server
# ------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the judge server gets SIGTERM when the eval process dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class JudgeServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 and a free port, for the length of a run."""

    def __init__(self, gguf: Path, *, model_alias: str, n_ctx: int, threads: int, log_path: Path,
                 start_timeout: float, port: int | None = None) -> None:
        self.gguf = Path(gguf)
        self.model_alias = model_alias
        self.n_ctx = n_ctx
        self.threads = threads
        self.log_path = Path(log_path)
        self.start_timeout = start_timeout
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf),
            "--model_alias", self.model_alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
            "--verbose", "False",
        ]

    def start(self) -> JudgeServer:
        if self.proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = dict(os.environ)
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                self.proc = None
                raise BackendError(f"The local judge server exited while starting (see {self.log_path}): {tail}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise BackendError(
            f"The local judge server did not start within {self.start_timeout:.0f} s (log: {self.log_path}); "
            "raise STUDYBOT_JUDGE_START_TIMEOUT or set STUDYBOT_JUDGE_BASE_URL."
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:  # noqa: S310 - loopback
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _log_tail(self, n: int = 600) -> str:
        try:
            return " ".join(self.log_path.read_text(errors="replace")[-n:].split())
        except OSError:
            return "(no log)"

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class JudgeEndpoint:
    base_url: str
    model: str
    api_key: str
    local: bool  # True when this run started the server
    description: str


def judge_llm(endpoint: JudgeEndpoint, settings: Settings, stats: JudgeStats | None = None) -> RagasJudgeLLM:
    """A :class:`RagasJudgeLLM` talking to ``endpoint`` (the registry's ``openai`` backend, configured from the
    ``judge`` settings)."""
    from rag.llm import build_llm

    llm = build_llm(settings.updated(llm={"backend": "openai", "base_url": endpoint.base_url,
                                          "api_model": endpoint.model, "api_key": endpoint.api_key,
                                          "timeout": settings.judge.timeout, "n_ctx": settings.judge.n_ctx}))
    return RagasJudgeLLM(llm, max_tokens=settings.judge.max_tokens, retries=settings.judge.retries, stats=stats)


def judge_gguf(settings: Settings) -> Path:
    if settings.judge.gguf is not None:
        path = Path(settings.judge.gguf).expanduser()
        if not path.is_file():
            raise BackendError(f"No judge model at {path}: fix STUDYBOT_JUDGE_GGUF or unset it.")
        return path
    from rag.backends.models import resolve_gguf

    return resolve_gguf(settings, show_progress=False)


@contextlib.contextmanager
def open_judge(settings: Settings, log_dir: Path) -> Iterator[JudgeEndpoint]:
    """The judge endpoint for a run: ``settings.judge.base_url`` if set, else a local llama_cpp.server on the
    judge GGUF, started here and stopped when the block ends."""
    if settings.judge.base_url:
        url = settings.judge.base_url.rstrip("/")
        yield JudgeEndpoint(url, settings.judge.model, settings.judge.api_key, False, f"OpenAI-compatible {url}")
        return
    gguf = judge_gguf(settings)
    server = JudgeServer(gguf, model_alias=settings.judge.model, n_ctx=settings.judge.n_ctx,
                         threads=settings.llm.threads, log_path=Path(log_dir) / "judge-server.log",
                         start_timeout=settings.judge.start_timeout)
    with server:
        yield JudgeEndpoint(server.base_url, settings.judge.model, "not-needed", True,
                            f"local llama_cpp.server ({gguf.name}) at {server.base_url}")
