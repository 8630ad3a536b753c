"""The LLM layer: the real default GGUF through llama.cpp (in process and behind llama_cpp.server), the
OpenAI-compatible client's error handling, the shared streaming loop (each call's Response and its usage), the
backend registry, and the ScriptedLLM fake others test with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.backends.llama_cpp import LlamaCppLLM
from rag.backends.models import resolve_gguf
from rag.backends.openai_server import OpenAICompatLLM
from rag.errors import BackendError, ModelError, QueryError, SettingsError
from rag.llm import BACKENDS, LLM, Piece, Response, build_llm, clear_llm_cache, get_llm, uses_default_model
from rag.settings import Settings, apply_offline_env
from tests.fakes import ScriptedLLM
from tests.helpers import MODELS_CACHE, free_port

TEMPERATURE = Settings().llm.temperature  # the real model's calls here sample as free writing does

SHORT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Name three colours."},
]


@pytest.fixture(scope="module")
def default_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    apply_offline_env()
    settings = Settings(storage={"home": tmp_path_factory.mktemp("home"), "models_cache": MODELS_CACHE}, llm={"model": None})
    return resolve_gguf(settings, show_progress=False)


@pytest.fixture(scope="module")
def local_llm(default_gguf: Path) -> LlamaCppLLM:
    llm = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2, n_gpu_layers=0)
    llm.load()
    return llm


# --- real model, in process ----------------------------------------------------------------------------


@pytest.mark.llm
def test_stream_yields_several_pieces_and_fills_usage(local_llm: LlamaCppLLM) -> None:
    assert local_llm.load_seconds is not None
    response = local_llm.stream(SHORT, max_tokens=16, temperature=TEMPERATURE)
    pieces = list(response)

    assert len(pieces) > 1
    assert "".join(pieces).strip() and response.text() == "".join(pieces)
    usage = response.usage
    assert usage.prompt_tokens > 10
    assert 1 <= usage.completion_tokens <= 17
    assert usage.ttft_s is not None and 0 < usage.ttft_s <= usage.total_s
    assert usage.finish_reason in {"stop", "length"}
    assert local_llm.name == "llama.cpp:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


@pytest.mark.llm
def test_json_schema_constrains_the_output(local_llm: LlamaCppLLM) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 40}, "confidence": {"type": "integer"}},
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    messages = [
        {"role": "system", "content": "Reply in JSON only."},
        {
            "role": "user",
            "content": "Is Python a programming language? Give a one-word answer and a confidence 1-5.",
        },
    ]

    response = local_llm.stream(messages, max_tokens=64, temperature=0.0, json_schema=schema)

    data = json.loads(response.text())
    assert set(data) == {"answer", "confidence"}
    assert isinstance(data["answer"], str) and isinstance(data["confidence"], int)
    assert response.usage.finish_reason == "stop"


@pytest.mark.llm
def test_a_prompt_longer_than_the_context_raises_query_error_at_call_time(local_llm: LlamaCppLLM) -> None:
    long_question = "Explain gradient boosting in detail. " * 400  # ~2,800 tokens > n_ctx 2048

    with pytest.raises(QueryError, match="too long for the model") as info:
        local_llm.stream([{"role": "user", "content": long_question}], max_tokens=16,
                         temperature=TEMPERATURE)  # not even iterated

    assert "\n" not in str(info.value)


@pytest.mark.llm
def test_count_tokens_uses_the_model_tokenizer(local_llm: LlamaCppLLM) -> None:
    n = local_llm.count_tokens("Gradient boosting fits trees to the residuals.")

    assert 5 < n < 20
    assert local_llm.count_tokens("") == 0
    assert local_llm.count_prompt_tokens(SHORT) > local_llm.count_tokens("You are a concise assistant.")


@pytest.mark.llm
def test_a_shared_prompt_prefix_is_not_evaluated_twice(local_llm: LlamaCppLLM) -> None:
    # A system prompt this run has never seen (~600 tokens), then two different questions after it.
    system = f"[{uuid.uuid4()}] You are a study assistant. " + " ".join(
        f"Rule {i}: answer from the handbook passages, cite them, and keep it short." for i in range(30)
    )
    first = [{"role": "system", "content": system}, {"role": "user", "content": "What is bias?"}]
    second = [{"role": "system", "content": system}, {"role": "user", "content": "What is variance?"}]
    assert local_llm.count_prompt_tokens(first) > 500

    first_call = local_llm.stream(first, max_tokens=2, temperature=TEMPERATURE)
    first_call.text()
    second_call = local_llm.stream(second, max_tokens=2, temperature=TEMPERATURE)
    second_call.text()
    cold, warm = first_call.usage.ttft_s, second_call.usage.ttft_s

    assert cold is not None and warm is not None
    print(
        f"\nprefix {second_call.usage.prompt_tokens} tokens: cold ttft {cold:.2f}s, warm ttft {warm:.2f}s"
    )
    assert warm < cold * 0.5


JUDGE = [{"role": "system", "content": "You check claims against a text. Reply with one word: yes or no."}]


def _claim(text: str, claim: str) -> list[dict[str, str]]:
    return [*JUDGE, {"role": "user", "content": f"Text: {text}\nClaim: {claim}\nDoes the text state the claim?"}]


TEXT = "L1 regularization adds the absolute values of the weights to the loss and drives some weights to zero."


@pytest.mark.llm
def test_yes_no_reads_the_models_choice_from_one_forward_pass(local_llm: LlamaCppLLM) -> None:
    stated = local_llm.yes_no(_claim(TEXT, "L1 regularization can set some weights to zero."))
    reversed_ = local_llm.yes_no(_claim(TEXT, "L1 regularization adds the squared weights to the loss."))
    unrelated = local_llm.yes_no(_claim(TEXT, "The Eiffel Tower is in Berlin."))
    assert stated > 0 > unrelated and stated > reversed_, (stated, reversed_, unrelated)
    # the same prompt gives the same log-odds whatever the KV cache held before (prefix reuse is exact)
    local_llm.complete(SHORT, max_tokens=2, temperature=TEMPERATURE)
    assert local_llm.yes_no(_claim(TEXT, "L1 regularization can set some weights to zero.")) == pytest.approx(
        stated, abs=1e-3)


TANH = "| Function | Output Range |\n|---|---|\n| Sigmoid | (0, 1) |\n| Tanh | (-1, 1) |"


@pytest.mark.llm
def test_token_log_probs_show_the_token_a_passage_contradicts(local_llm: LlamaCppLLM) -> None:
    def ask(passage: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Passage:\n{passage}\n\nQuestion: What range does tanh output?\n\n"
                                            "Answer in one sentence, using only what the passage says."}]

    right, wrong = "Tanh outputs values in the range (-1, 1).", "Tanh outputs values in the range (0, 1)."
    given = local_llm.token_logprobs(ask(TANH), right, "Passage:\n" + TANH)
    assert len(given) == len(local_llm.load().tokenize(right.encode(), add_bos=False)) and max(given) <= 0.0
    # the same prompt in the same steps (no shared part) gives the same numbers as the summed continuation; a
    # shared part changes how the prompt is batched, and llama.cpp's numbers with it, a little
    assert sum(local_llm.token_logprobs(ask(TANH), right)) == pytest.approx(
        local_llm.continuation_logprob(ask(TANH), right), abs=1e-3)
    assert sum(given) == pytest.approx(local_llm.continuation_logprob(ask(TANH), right), abs=0.5)

    def least(sentence: str) -> float:
        with_passage = local_llm.token_logprobs(ask(TANH), sentence)
        alone = local_llm.token_logprobs(ask("(none)"), sentence)
        return min(a - b for a, b in zip(with_passage, alone, strict=True))

    # the sigmoid row's range: the table makes its "0" less likely than no passage at all would
    lw, lr = least(wrong), least(right)
    print(f"\nleast supported token: wrong row {lw:.2f}, right row {lr:.2f}")
    assert lw < lr - 0.5, (lw, lr)  # measured: -1.81 against -0.55 (2026-12-06)


@pytest.mark.llm
def test_a_kept_prefix_survives_other_prompts_and_the_next_process(default_gguf: Path, tmp_path: Path) -> None:
    system = f"[{uuid.uuid4()}] You check claims against a text. " + " ".join(
        f"Rule {i}: compare the claim with the text word by word, then answer yes or no." for i in range(25))
    prefix = [{"role": "system", "content": system}]
    llm = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2, n_gpu_layers=0, prefix_dir=tmp_path)
    n = llm.keep_prefix(prefix)
    assert n > 300 and len(list(tmp_path.glob("*.kv"))) == 1  # saved for the next process
    ask = [*prefix, {"role": "user", "content": f"Text: {TEXT}\nClaim: L1 zeroes some weights. Yes or no?"}]
    first = llm.yes_no(ask)
    llm.complete(SHORT, max_tokens=2, temperature=TEMPERATURE)  # another prompt takes the KV cache
    t = time.perf_counter()
    again = llm.yes_no(ask)
    restored_s = time.perf_counter() - t
    assert again == pytest.approx(first, abs=1e-3)
    # a new instance (a fresh process) loads the prefix from its file instead of evaluating it
    other = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2, n_gpu_layers=0,
                        prefix_dir=tmp_path)
    assert other.keep_prefix(prefix) == n and other.load().n_tokens == n
    assert other.yes_no(ask) == pytest.approx(first, abs=1e-3)
    print(f"\nkept prefix {n} tokens; a call after another prompt took {restored_s:.2f} s")
    llm.close()
    other.close()


@pytest.mark.llm
def test_concurrent_callers_queue_on_the_model(local_llm: LlamaCppLLM) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            results[i] = local_llm.complete(
                [{"role": "user", "content": f"Say the number {i}."}], max_tokens=4, temperature=0.0
            )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(results) == [0, 1, 2]
    assert all(results.values())


@pytest.mark.llm
def test_a_broken_model_file_raises_model_error_with_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))  # right magic, garbage after it

    with pytest.raises(ModelError) as info:
        LlamaCppLLM(broken, n_ctx=512, n_threads=2, n_gpu_layers=0).load()

    assert str(broken) in str(info.value)
    assert "STUDYBOT_LLM_MODEL" in str(info.value)


def test_a_missing_model_file_raises_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"

    with pytest.raises(ModelError, match="No model file at"):
        LlamaCppLLM(missing, n_ctx=512, n_threads=2, n_gpu_layers=0).count_tokens("hi")


# --- OpenAI-compatible server ------------------------------------------------------------------------


def test_an_unreachable_server_raises_backend_error_with_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatLLM(url, model="studybot", api_key="not-needed", timeout=5, n_ctx=4096)

    with pytest.raises(BackendError) as info:
        llm.complete(SHORT, max_tokens=4, temperature=TEMPERATURE)

    message = str(info.value)
    assert message.startswith(f"Cannot reach the model server at {url}")
    assert "python -m llama_cpp.server" in message and "STUDYBOT_LLM_BASE_URL" in message
    assert llm.count_tokens("abcdefg") == 2  # ceil(7 / 3.5)
    assert llm.name == f"openai:{url}"


@pytest.mark.llm
def test_openai_client_streams_through_llama_cpp_server(default_gguf: Path, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(os.cpu_count() or 2),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 90 s")
            time.sleep(0.5)

        llm = OpenAICompatLLM(base_url, model="studybot", api_key="not-needed", timeout=60, n_ctx=2048)
        response = llm.stream(SHORT, max_tokens=16, temperature=TEMPERATURE)
        pieces = list(response)

        assert len(pieces) > 1
        assert "".join(pieces).strip()
        usage = response.usage
        assert usage.completion_tokens >= 1 and usage.prompt_tokens > 0
        assert usage.ttft_s is not None and usage.finish_reason in {"stop", "length"}

        data = json.loads(
            llm.complete(
                [{"role": "user", "content": "Give the capital of France as JSON."}],
                max_tokens=32,
                temperature=0.0,
                json_schema={
                    "type": "object",
                    "properties": {"capital": {"type": "string", "maxLength": 20}},
                    "required": ["capital"],
                },
            )
        )
        assert set(data) == {"capital"}
        # yes/no without the server's log-probabilities (no logits_all): read from one generated word
        assert llm.yes_no(_claim(TEXT, "L1 regularization can set some weights to zero.")) > 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


# --- factory ---------------------------------------------------------------------------------------------


def test_get_llm_returns_one_instance_per_configuration(tmp_path: Path) -> None:
    clear_llm_cache()
    try:
        local = Settings(storage={"home": tmp_path, "models_cache": MODELS_CACHE}, llm={"model": None, "backend": "llama_cpp"})
        first = get_llm(local)
        assert isinstance(first, LlamaCppLLM)
        assert get_llm(Settings(**local.model_dump())) is first
        assert get_llm(local.updated(llm={"n_ctx": 1024})) is not first

        remote = Settings(storage={"home": tmp_path}, llm={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"})
        server = get_llm(remote)
        assert isinstance(server, OpenAICompatLLM) and get_llm(remote) is server
    finally:
        clear_llm_cache()


def test_get_llm_openai_without_a_base_url_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="STUDYBOT_LLM_BASE_URL"):
        get_llm(Settings(storage={"home": tmp_path}, llm={"backend": "openai", "base_url": None}))


def test_backends_are_registered_once_and_chosen_by_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    assert list(BACKENDS) == ["llama_cpp", "openai"]
    # an unknown name: one sentence listing the registered ones, from the settings and from the registry alike
    monkeypatch.setenv("STUDYBOT_LLM_BACKEND", "ollama")
    with pytest.raises(SettingsError) as info:
        Settings()
    assert str(info.value) == "STUDYBOT_LLM_BACKEND=ollama is not valid: it takes one of llama_cpp or openai."
    monkeypatch.delenv("STUDYBOT_LLM_BACKEND")
    unchecked = Settings(storage={"home": tmp_path}).updated(llm={"backend": "vllm"})
    with pytest.raises(BackendError) as raised:
        get_llm(unchecked)
    assert str(raised.value) == ("STUDYBOT_LLM_BACKEND=vllm is not a known LLM backend: it takes one of "
                                 "llama_cpp or openai.")
    # build_llm: a new instance each time, from the section the settings give (the evals judge's way)
    judge = Settings(storage={"home": tmp_path}).updated(llm={"backend": "openai", "base_url": "http://127.0.0.1:9/v1/",
                                                              "api_model": "judge", "timeout": 7.0, "n_ctx": 2048})
    a, b = build_llm(judge), build_llm(judge)
    assert isinstance(a, OpenAICompatLLM) and a is not b
    assert (a.base_url, a.model, a.n_ctx, a.name) == ("http://127.0.0.1:9/v1", "judge", 2048, "openai:http://127.0.0.1:9/v1")
    # the verified default GGUF is what a local backend without llm.model runs (doctor --fix provisions it)
    local = Settings(storage={"home": tmp_path})
    assert uses_default_model(local) and not uses_default_model(local.updated(llm={"model": tmp_path / "my.gguf"}))
    assert not uses_default_model(judge)


# --- the shared streaming loop: each call's Response ------------------------------------------------------


def test_each_call_keeps_its_own_usage_whatever_runs_after_it() -> None:
    fake = ScriptedLLM(["one two three four five six", "yes"], piece_size=4)
    first = fake.stream(SHORT, max_tokens=16, temperature=0.0)
    assert next(first) == "one "
    second = fake.stream([{"role": "user", "content": "Is it?"}], max_tokens=2, temperature=0.0)
    assert second.text() == "yes" and second.usage.completion_tokens == 1
    assert first.text() == "one two three four five six"  # the pieces read already, then the rest
    assert (first.usage.completion_tokens, first.usage.finish_reason) == (7, "stop")
    assert first.usage.prompt_tokens > second.usage.prompt_tokens
    assert first.usage.ttft_s is not None and 0 <= first.usage.ttft_s <= first.usage.total_s


def _response(pieces: list[Piece], ended: list[str], start: float | None = None) -> Response:
    def source() -> Iterator[Piece]:
        try:
            yield from pieces
        finally:
            ended.append("backend")  # where a backend releases the model

    return Response(source(), prompt_tokens=9, start=start).on_end(lambda: ended.append("caller"))


def test_the_loop_keeps_the_backends_counts_and_closes_it_first() -> None:
    ended: list[str] = []
    # the backend's own counts win over the approximate prompt and the number of pieces ...
    r = _response([Piece("a", prompt_tokens=12, completion_tokens=0), Piece("b", completion_tokens=5),
                   Piece("", "length", completion_tokens=6)], ended)
    assert r.text() == "ab" and (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.finish_reason) == (
        12, 6, "length")
    assert ended == ["backend", "caller"]
    # ... but a piece is at least one token; closed early: what was generated, no finish reason
    ended.clear()
    r = _response([Piece("a", completion_tokens=0), Piece("b"), Piece("c"), Piece("", "stop")], ended)
    assert next(r) == "a" and next(r) == "b"
    r.close()
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.finish_reason) == (9, 2, None)
    assert ended == ["backend", "caller"] and r.text() == "ab"
    r.close()
    assert ended == ["backend", "caller"]  # once


def test_a_failed_or_dropped_response_still_ends_once() -> None:
    ended: list[str] = []

    def failing() -> Iterator[Piece]:
        try:
            yield Piece("a")
            raise BackendError("The model server failed.")
        finally:
            ended.append("backend")

    r = Response(failing()).on_end(lambda: ended.append("caller"))
    with pytest.raises(BackendError):
        r.text()
    assert ended == ["backend", "caller"] and r.usage.completion_tokens == 1 and r.usage.total_s > 0
    ended.clear()
    dropped = _response([Piece("a")], ended)
    assert next(dropped) == "a"
    del dropped  # a reply read in part and forgotten releases the model and its caller
    assert ended == ["backend", "caller"]
    ended.clear()
    _response([Piece("a")], ended)  # never read: the backend never started, the caller is released
    assert ended == ["caller"]


def test_through_passes_the_text_on_and_keeps_the_usage() -> None:
    ended: list[str] = []
    r = _response([Piece("a"), Piece("b"), Piece("c")], ended)

    def upper(texts: Iterator[str]) -> Iterator[str]:
        try:
            for t in texts:
                yield t.upper()
        finally:
            close = getattr(texts, "close", None)
            if close is not None:
                close()

    assert r.through(upper).text() == "ABC" and r.usage.completion_tokens == 3 and ended == ["backend", "caller"]


# --- the fake ------------------------------------------------------------------------------------------


def test_scripted_llm_plays_back_replies_and_records_calls() -> None:
    fake = ScriptedLLM(["Hello there, student.", '{"ok": true}'])
    assert isinstance(fake, LLM)

    response = fake.stream(SHORT, max_tokens=8, temperature=0.0)
    pieces = list(response)
    assert len(pieces) > 1 and "".join(pieces) == "Hello there, student."
    assert response.usage.completion_tokens == len(pieces) and response.usage.finish_reason == "stop"
    assert fake.complete(SHORT, max_tokens=8, temperature=0.0,
                         json_schema={"type": "object"}) == '{"ok": true}'

    assert fake.messages == [SHORT, SHORT]
    assert fake.calls[1]["json_schema"] == {"type": "object"}
    assert fake.count_tokens("abcdefgh") == 3
    with pytest.raises(AssertionError, match="no reply queued"):
        fake.complete(SHORT, max_tokens=8, temperature=0.0)


def test_json_schema_grammar_keeps_the_schemas_property_order(tmp_path: Path) -> None:
    """The model must write the keys in the schema's order (a quiz question before its answer), not sorted."""
    from rag.quiz import SCHEMAS

    llm = LlamaCppLLM(tmp_path / "unused.gguf", n_ctx=1024, n_threads=2, n_gpu_layers=0)
    root = next(ln for ln in llm._grammar(SCHEMAS["short"])._grammar.splitlines() if ln.startswith("root ::="))
    keys = ["question-kv", "answer-kv", "explanation-kv"]
    assert [root.index(k) for k in keys] == sorted(root.index(k) for k in keys), root


@pytest.mark.llm
def test_suppressed_words_are_never_generated(local_llm: LlamaCppLLM) -> None:
    messages = [{"role": "user", "content": "Repeat exactly this sentence and nothing else: I like trains."}]
    free = "".join(local_llm.stream(messages, max_tokens=8, temperature=0.0))
    assert free.strip().startswith("I like")
    held = "".join(local_llm.stream(messages, max_tokens=8, temperature=0.0, suppress=["I"]))
    assert held.strip() and not held.strip().startswith("I ") and " I " not in f" {held} "
