"""The llama.cpp backend: a GGUF model run in process by llama-cpp-python (the only module that imports
``llama_cpp``), its JSON-schema grammars, the runtime check's child work (:func:`smoke`), and the registry's
entry points (:func:`build`, :func:`check`, :func:`prepare`; see :class:`rag.llm.BackendModule`)."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import BackendError, ModelError, QueryError, StudybotError
from rag.llm import LLM, NO_WORDS, YES_WORDS, Piece, Request, Response, check_fits, too_long
from rag.settings import Settings

# Tokens llama.cpp evaluates per batch: llama-cpp-python's own default (512), kept; the prompt-evaluation steps
# (LlamaCppLLM._evaluate) and continuation_logprob's limit follow from it.
N_BATCH = 512


def llama_cpp_module() -> Any:
    import llama_cpp

    return llama_cpp


class LlamaCppLLM(LLM):
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
        *,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int,
        seed: int = 0,
        preflight: Callable[[Path], object] | None = None,
        prefix_dir: Path | None = None,
    ) -> None:
        """``n_ctx``, ``n_threads``, ``n_gpu_layers``: the ``llm`` settings' (the registry in :mod:`rag.llm` passes
        them). ``preflight(model_path)`` runs before the model is loaded in process (the runtime check: a build that
        would crash the process raises a one-sentence error there instead). ``prefix_dir``: where the KV state
        of kept prompt prefixes is saved for the next process (:meth:`keep_prefix`; None: not saved). ``seed``:
        llama.cpp's sampling seed (0: the same reply to the same prompt and temperature, run after run)."""
        self.model_path = Path(model_path)
        self.preflight = preflight
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.seed = seed
        self.name = f"llama.cpp:{self.model_path.name}"
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._abort_callback: Any = None
        self._formatter: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._option_ids: dict[tuple[tuple[str, ...], ...], list[list[int]]] = {}
        self._starts: dict[str, int] = {}  # fixed prefix -> where the last message starts (tokens)
        self._steps: set[int] = set()  # the positions the KV cache was evaluated up to, step by step
        self.prefix_dir = prefix_dir
        self._prefixes: dict[tuple[int, ...], bytes] = {}  # kept prompt prefixes and their KV state

    # --- loading ---------------------------------------------------------------------------------------
    # -- stopping a background call (rag.quiz.gate) ------------------------------------------------------------
    def set_abort(self, check: Any) -> bool:
        """llama.cpp's abort callback on the loaded context: ``check()`` returning True stops the evaluation in
        progress (llama_decode returns 2); ``None`` clears it. Returns False when no model is loaded. The caller
        keeps ``check`` alive while it is set."""
        llama = self._llama
        ctx = getattr(getattr(llama, "_ctx", None), "ctx", None)
        if ctx is None:
            return False
        lib = llama_cpp_module()
        if check is None:
            callback = lib.ggml_abort_callback()  # NULL: no callback; the last one stays referenced, since
        else:  # llama.cpp may still read the pointer of a call that is just ending
            callback = self._abort_callback = lib.ggml_abort_callback(lambda _data: bool(check()))
        lib.llama_set_abort_callback(ctx, callback, None)
        return True

    def forget_steps(self) -> None:
        """After an aborted evaluation: its steps were never recorded, so no later call re-uses a cached
        position from an older call's steps."""
        self._steps.clear()

    def load(self) -> Any:
        """Load the model (once; later calls return the loaded ``llama_cpp.Llama``)."""
        if self._llama is not None:
            return self._llama
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            llama_cpp = _llama_cpp()
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
                    n_batch=N_BATCH,
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
            return len(self._prompt_tokens(llama, messages))
        # No Jinja template in the GGUF: approximate (content + a few tokens of role markup per message).
        return sum(self.count_tokens(m.get("content") or "") + 4 for m in messages) + 3

    def _prompt_tokens(self, llama: Any, messages: list[dict[str, str]]) -> list[int]:
        """The chat prompt's tokens exactly as llama-cpp-python would evaluate them (template, generation
        prompt, special tokens)."""
        if self._formatter is None:
            raise BackendError("This GGUF has no chat template: studybot needs one to score and keep prompts.")
        result = self._formatter(messages=messages)
        return list(llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))

    # --- kept prefixes ---------------------------------------------------------------------------------
    def keep_prefix(self, messages: list[dict[str, str]]) -> int:
        """Keep the KV state of the prompt prefix ``messages`` (a fixed system message and example turns) so that
        every later prompt starting with it skips evaluating it, even after other prompts took the cache. Saved
        in ``prefix_dir`` and loaded from there by the next process (a fresh CLI pays milliseconds instead of
        a prefill). Returns the prefix's length in tokens."""
        llama = self.load()
        if self._formatter is None:
            return 0
        n = self._message_start(llama, [*messages, {"role": "user", "content": ""}])
        prefix = tuple(self._prompt_tokens(llama, [*messages, {"role": "user", "content": "a"}])[:n])
        if not prefix or prefix in self._prefixes:
            return len(prefix)
        with self._gen_lock:
            data = self._load_prefix(llama, prefix)
            if data is None:  # evaluated from an empty cache, as one step: what a prompt's first step is
                llama.n_tokens = 0
                llama.eval(list(prefix))
                self._steps = {len(prefix)}
                data = self._seq_data(llama)
                self._save_prefix(prefix, data)
            self._prefixes[prefix] = data
        return len(prefix)

    def _prefix_path(self, prefix: Sequence[int]) -> Path | None:
        if self.prefix_dir is None:
            return None
        try:
            st = self.model_path.stat()
        except OSError:
            return None
        key = json.dumps([self.model_path.name, st.st_size, st.st_mtime_ns, version(), self.n_gpu_layers,
                          self.n_ctx, list(prefix)])
        return self.prefix_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.kv"

    @staticmethod
    def _seq_data(llama: Any) -> bytes:
        lib = _llama_cpp()
        size = lib.llama_state_seq_get_size(llama.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(llama.ctx, buf, size, 0)
        return bytes(buf[:written])

    def _set_seq(self, llama: Any, prefix: tuple[int, ...], data: bytes) -> bool:
        """Make the KV cache hold exactly ``prefix`` from its saved state (False when llama.cpp refused it)."""
        lib = _llama_cpp()
        llama._ctx.kv_cache_seq_rm(0, 0, -1)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not lib.llama_state_seq_set_data(llama.ctx, buf, len(data), 0):
            llama.reset()
            return False
        llama.input_ids[: len(prefix)] = prefix
        llama.n_tokens = len(prefix)
        self._steps = {len(prefix)}
        return True

    def _load_prefix(self, llama: Any, prefix: tuple[int, ...]) -> bytes | None:
        path = self._prefix_path(prefix)
        if path is None or not path.is_file():
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return data if self._set_seq(llama, prefix, data) else None

    def _save_prefix(self, prefix: tuple[int, ...], data: bytes) -> None:
        path = self._prefix_path(prefix)
        if path is None:
            return
        try:  # best effort: a read-only home only costs the next process a prefill
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            pass

    # --- evaluating a prompt, the same way whatever the cache held before -------------------------------------
    def _message_start(self, llama: Any, messages: list[dict[str, str]]) -> int:
        """Where the last message's content starts, in tokens (everything before it is the fixed prefix)."""
        key = json.dumps(messages[:-1])
        start = self._starts.get(key)
        if start is None:
            last = messages[-1]
            a = self._prompt_tokens(llama, [*messages[:-1], {**last, "content": "a"}])
            b = self._prompt_tokens(llama, [*messages[:-1], {**last, "content": "b"}])
            start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            if len(self._starts) > 256:
                self._starts.clear()
            self._starts[key] = start
        return start

    def _steps_of(self, llama: Any, messages: list[dict[str, str]], tokens: Sequence[int], shared: str) -> list[int]:
        """The prompt's evaluation steps (token positions): the start of the last message and, when given, the
        end of its ``shared`` beginning (what several calls share: a question, the quotes)."""
        steps = {self._message_start(llama, messages)}
        content = messages[-1].get("content") or ""
        if shared and content.startswith(shared) and len(shared) < len(content):
            part = self._prompt_tokens(llama, [*messages[:-1], {**messages[-1], "content": shared}])
            steps.add(next((i for i, (x, y) in enumerate(zip(part, tokens, strict=False)) if x != y), len(part)))
        return sorted(p for p in steps if 0 < p < len(tokens))

    def _evaluate(self, llama: Any, tokens: Sequence[int], steps: Sequence[int]) -> None:
        """Make the KV cache hold ``tokens`` but the last one, evaluated step by step: llama.cpp's numbers depend
        on how tokens are batched, so a prompt is always evaluated in the same steps (its fixed prefix, its
        shared part, the rest, the last token alone) and the cache is re-used only up to a step both prompts
        share. Then a judgement, or a reply, is the same in a warm app and in a fresh process."""
        cached = llama.input_ids[: llama.n_tokens].tolist()
        common = next((i for i, (x, y) in enumerate(zip(cached, tokens, strict=False)) if x != y),
                      min(len(cached), len(tokens)))
        keep = max((p for p in steps if p <= common and p in self._steps), default=0)
        if steps and keep < steps[0]:
            kept = self._prefixes.get(tuple(tokens[: steps[0]]))
            if kept is not None and self._set_seq(llama, tuple(tokens[: steps[0]]), kept):
                keep = steps[0]
        llama.n_tokens = keep
        end = len(tokens) - 1
        for stop in [*(p for p in steps if keep < p < end), end]:
            if stop > llama.n_tokens:
                llama.eval(list(tokens[llama.n_tokens : stop]))
        self._steps = {p for p in steps if p <= end} | {end}

    # --- generation ------------------------------------------------------------------------------------
    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        """The reply, streamed (the model's lock is held while it is read). ``request.suppress``: each word's
        single-token forms, with and without a leading space, get a -100 logit bias."""
        llama = self.load()
        start = time.perf_counter()
        tokens = self._prompt_tokens(llama, messages) if self._formatter is not None else None
        prompt_tokens = len(tokens) if tokens is not None else self.count_prompt_tokens(messages)
        check_fits(prompt_tokens, request.max_tokens, self.n_ctx)
        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
            "seed": self.seed,
        }
        if request.suppress:
            kwargs["logit_bias"] = {tok: -100.0 for tok in self._single_tokens(llama, list(request.suppress))}
        if request.json_schema is not None:
            # Same grammar response_format={"type": "json_object", "schema": ...} would build, but built here:
            # llama-cpp-python silently falls back to "any JSON" when a schema cannot be converted.
            kwargs["grammar"] = self._grammar(request.json_schema)
        return Response(self._pieces(llama, messages, kwargs, prompt_tokens, tokens, request.shared),
                        prompt_tokens=prompt_tokens, start=start)

    def _pieces(
        self,
        llama: Any,
        messages: list[dict[str, str]],
        kwargs: dict[str, Any],
        prompt_tokens: int,
        tokens: list[int] | None,
        shared: str,
    ) -> Iterator[Piece]:
        """llama-cpp-python's streamed chunks as raw pieces, under the model's lock (released when the response
        ends). Each piece carries the tokens generated so far: the tokens evaluated past the prompt (+1 after
        "length": the last sampled token is never evaluated); re-tokenizing the text would under-count grammar
        output."""
        with self._gen_lock:
            try:
                if tokens is not None:  # all but the last token in this prompt's own steps (see _evaluate)
                    self._evaluate(llama, tokens, self._steps_of(llama, messages, tokens, shared))
                for chunk in llama.create_chat_completion(messages=messages, stream=True, **kwargs):
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason")
                    generated = llama.n_tokens - prompt_tokens + (1 if finish == "length" else 0)
                    yield Piece(choice.get("delta", {}).get("content") or "", finish, completion_tokens=generated)
            except ValueError as exc:
                if "context window" in str(exc):
                    raise too_long(prompt_tokens, self.n_ctx) from exc
                raise BackendError(f"llama.cpp failed while generating ({exc}).") from exc
            except RuntimeError as exc:
                raise BackendError(f"llama.cpp failed while generating ({exc}).") from exc


    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        """log P(yes) - log P(no) of the first reply token (:meth:`LLM.yes_no`), from one forward pass over the
        prompt's tokens that the KV cache does not already hold (the fixed prefix and the ``shared`` start of the
        last message are evaluated once for many such calls)."""
        yes, no = self.choice_logprobs(messages, [list(YES_WORDS), list(NO_WORDS)], shared)
        return yes - no

    def choice_logprobs(self, messages: list[dict[str, str]], options: Sequence[Sequence[str]],
                        shared: str = "") -> list[float]:
        """For each option (its spellings, e.g. ``["yes", "Yes"]``), the log-probability that the reply starts with
        it: the log-sum of its spellings' single-token probabilities, from one forward pass."""
        import numpy as np

        llama = self.load()
        tokens = self._prompt_tokens(llama, messages)
        check_fits(len(tokens), 1, self.n_ctx)
        key = tuple(tuple(o) for o in options)
        ids = self._option_ids.get(key)
        if ids is None:
            ids = self._option_ids[key] = [sorted(self._single_tokens(llama, list(o))) for o in options]
        steps = self._steps_of(llama, messages, tokens, shared)
        with self._gen_lock:
            try:
                self._evaluate(llama, tokens, steps)
                llama.eval(tokens[-1:])
            except (RuntimeError, ValueError) as exc:
                llama.reset()
                self._steps = set()
                raise BackendError(f"llama.cpp failed while scoring ({exc}).") from exc
            logits = np.ctypeslib.as_array(_llama_cpp().llama_get_logits_ith(llama.ctx, -1),
                                           shape=(llama.n_vocab(),)).astype(np.float64)
        top = float(logits.max())
        norm = top + float(np.log(np.exp(logits - top).sum()))
        return [top + float(np.log(np.exp(logits[i] - top).sum())) - norm if i else -float("inf") for i in ids]

    def continuation_logprob(self, messages: list[dict[str, str]], text: str) -> float:
        """log P(reply starts with ``text`` | prompt): the sum of its tokens' log-probabilities
        (:meth:`token_logprobs`)."""
        return sum(self.token_logprobs(messages, text))

    def token_logprobs(self, messages: list[dict[str, str]], text: str, shared: str = "") -> list[float]:
        """log P(token | prompt, the tokens before it) for each token of ``text`` as the start of the reply, from
        one forward pass over the prompt (what the KV cache does not hold; ``shared`` as in :meth:`yes_no`) and
        ``text``."""
        import numpy as np

        llama = self.load()
        prompt = self._prompt_tokens(llama, messages)
        cont = list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if not cont:
            return []
        tokens = prompt + cont
        check_fits(len(tokens), 1, self.n_ctx)
        lib = _llama_cpp()
        with self._gen_lock:
            self._evaluate(llama, prompt, self._steps_of(llama, messages, prompt, shared))
            start = llama.n_tokens
            rest = tokens[start:]
            if len(rest) > llama.n_batch:
                raise QueryError(f"The text to score is too long ({len(rest)} tokens; at most {llama.n_batch}).")
            try:
                llama._ctx.kv_cache_seq_rm(0, start, -1)
                llama._batch.set_batch(batch=rest, n_past=start, logits_all=True)
                llama._ctx.decode(llama._batch)
            except RuntimeError as exc:
                llama.reset()
                raise BackendError(f"llama.cpp failed while scoring ({exc}).") from exc
            llama.input_ids[start: len(tokens)] = rest
            llama.n_tokens = len(tokens)
            self._steps = {p for p in self._steps if p <= start}
            out: list[float] = []
            for j, tok in enumerate(cont):
                row = np.ctypeslib.as_array(lib.llama_get_logits_ith(llama.ctx, len(prompt) - 1 + j - start),
                                            shape=(llama.n_vocab(),)).astype(np.float64)
                top = float(row.max())
                out.append(float(row[tok]) - top - float(np.log(np.exp(row - top).sum())))
        return out

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


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError("llama-cpp-python is not installed: run `make install` (or `make run`).") from exc
    return llama_cpp


def version() -> str | None:
    """The installed llama-cpp-python's version (None when it is not installed)."""
    try:
        return str(_llama_cpp().__version__)
    except ModelError:
        return None


def smoke(model: str, n_threads: int, n_gpu_layers: int, prefill_tokens: int, text: str) -> dict[str, object]:
    """The runtime check's child work: load ``model``, prefill ``prefill_tokens`` tokens of ``text`` into an
    empty KV cache, generate one token. Returns a JSON-able report; a broken build crashes the process."""
    try:
        llama_cpp = _llama_cpp()
    except ModelError as exc:
        return {"ok": False, "error": str(exc)}
    try:
        llama = llama_cpp.Llama(model_path=model, n_ctx=1024, n_batch=N_BATCH, n_threads=n_threads,
                                n_threads_batch=n_threads, n_gpu_layers=n_gpu_layers, verbose=False)
    except Exception as exc:  # noqa: BLE001 - llama-cpp raises ValueError/RuntimeError with little detail
        return {"ok": False, "error": f"llama.cpp could not load {Path(model).name} ({exc}): it is not a complete "
                "GGUF file this llama.cpp can read; point STUDYBOT_LLM_MODEL at a .gguf or unset it to use the "
                "verified default."}
    tokens = llama.tokenize(text.encode(), add_bos=True)
    while len(tokens) < prefill_tokens:
        tokens += llama.tokenize(text.encode(), add_bos=False)
    tokens = tokens[:prefill_tokens]
    start = time.perf_counter()
    llama.eval(tokens)
    prefill_s = time.perf_counter() - start
    token = llama.sample(temp=0.0)
    llama.eval([token])
    return {"ok": True, "prefill_tokens": len(tokens), "prefill_tok_s": round(len(tokens) / prefill_s, 1)}


# --- the registry's entry points (rag.llm.BACKENDS["llama_cpp"]) ------------------------------------------
def build(settings: Settings) -> LlamaCppLLM:
    """The in-process model the settings describe: ``llm.model`` or the verified default GGUF, behind the runtime
    check (``llm.runtime_check``) before it is loaded."""
    from rag.backends.models import resolve_gguf

    preflight = None
    if settings.llm.runtime_check:
        from rag.backends.runtime_check import ensure_runtime

        def preflight(path: Path) -> object:
            return ensure_runtime(path, settings.storage.models_dir, n_threads=settings.llm.threads,
                                  n_gpu_layers=settings.llm.n_gpu_layers)

    llm = settings.llm
    return LlamaCppLLM(resolve_gguf(settings), n_ctx=llm.n_ctx, n_threads=llm.threads, n_gpu_layers=llm.n_gpu_layers,
                       preflight=preflight, prefix_dir=settings.storage.models_dir / "prefixes")


def check(settings: Settings, *, runtime: bool) -> list[tuple[str, bool, str]]:
    """`studybot doctor`'s lines: the GGUF (``llm.model``: its header; else the model packages and the assembled,
    verified default) and, with ``runtime``, a fresh runtime check of it in a child process."""
    from rag.backends import models
    from rag.backends.runtime_check import check_runtime

    s = settings
    lines: list[tuple[str, bool, str]] = []
    gguf: Path | None = None
    if s.llm.model:
        try:
            models.check_gguf_header(Path(s.llm.model).expanduser())
            gguf = Path(s.llm.model).expanduser()
            lines.append(("llm", True, f"{gguf} (GGUF header ok)"))
        except StudybotError as exc:
            lines.append(("llm", False, str(exc)))
    else:
        try:
            models.part_paths()
            lines.append(("model packages", True, f"{models.N_PARTS} parts installed"))
        except StudybotError as exc:
            lines.append(("model packages", False, str(exc)))
        st = models.default_gguf_status(s)
        lines.append(("default model", st.verified,
                      f"{st.path} ({st.detail})" + ("" if st.verified else "; run `studybot doctor --fix`")))
        gguf = st.path if st.verified else None
    if runtime and gguf is not None:
        try:
            verdict = check_runtime(gguf, s.storage.models_dir, n_threads=s.llm.threads,
                                    n_gpu_layers=s.llm.n_gpu_layers, force=True)
            lines.append(("llama.cpp runtime", verdict.ok, verdict.message))
        except StudybotError as exc:
            lines.append(("llama.cpp runtime", False, str(exc)))
    return lines


def prepare(settings: Settings) -> None:
    """Before serving: the runtime check for the configured GGUF (cached after it passes once; assembles the
    default model first if needed), raising :class:`rag.backends.runtime_check.RuntimeCheckError` with the cause
    and the fix when it fails. Nothing with ``llm.runtime_check`` off."""
    if not settings.llm.runtime_check:
        return
    from rag.backends.models import resolve_gguf
    from rag.backends.runtime_check import ensure_runtime

    ensure_runtime(resolve_gguf(settings, show_progress=True), settings.storage.models_dir,
                   n_threads=settings.llm.threads, n_gpu_layers=settings.llm.n_gpu_layers)
