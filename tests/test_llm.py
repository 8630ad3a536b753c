"""The LLM layer: the real default GGUF through llama.cpp (in process and behind llama_cpp.server), the
OpenAI-compatible client's error handling, the factory, and the ScriptedLLM fake others test with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from rag.errors import BackendError, ModelError, QueryError
from rag.llm import LLM, clear_llm_cache, get_llm
from rag.llm_llama_cpp import LlamaCppLLM
from rag.llm_openai import OpenAICompatLLM
from rag.models import resolve_gguf
from rag.settings import Settings, apply_offline_env
from tests.fakes import ScriptedLLM
from tests.helpers import MODELS_CACHE, free_port

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
    llm = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2)
    llm.load()
    return llm


# --- real model, in process ----------------------------------------------------------------------------


@pytest.mark.llm
def test_stream_yields_several_pieces_and_fills_usage(local_llm: LlamaCppLLM) -> None:
    assert local_llm.load_seconds is not None
    pieces = list(local_llm.stream(SHORT, max_tokens=16))

    assert len(pieces) > 1
    assert "".join(pieces).strip()
    usage = local_llm.last_usage
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

    text = local_llm.complete(messages, max_tokens=64, temperature=0.0, json_schema=schema)

    data = json.loads(text)
    assert set(data) == {"answer", "confidence"}
    assert isinstance(data["answer"], str) and isinstance(data["confidence"], int)
    assert local_llm.last_usage.finish_reason == "stop"


@pytest.mark.llm
def test_a_prompt_longer_than_the_context_raises_query_error_at_call_time(local_llm: LlamaCppLLM) -> None:
    long_question = "Explain gradient boosting in detail. " * 400  # ~2,800 tokens > n_ctx 2048

    with pytest.raises(QueryError, match="too long for the model") as info:
        local_llm.stream([{"role": "user", "content": long_question}], max_tokens=16)  # not even iterated

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

    local_llm.complete(first, max_tokens=2)
    cold = local_llm.last_usage.ttft_s
    local_llm.complete(second, max_tokens=2)
    warm = local_llm.last_usage.ttft_s

    assert cold is not None and warm is not None
    print(
        f"\nprefix {local_llm.last_usage.prompt_tokens} tokens: cold ttft {cold:.2f}s, warm ttft {warm:.2f}s"
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
    local_llm.complete(SHORT, max_tokens=2)
    assert local_llm.yes_no(_claim(TEXT, "L1 regularization can set some weights to zero.")) == pytest.approx(
        stated, abs=1e-3)


@pytest.mark.llm
def test_a_kept_prefix_survives_other_prompts_and_the_next_process(default_gguf: Path, tmp_path: Path) -> None:
    system = f"[{uuid.uuid4()}] You check claims against a text. " + " ".join(
        f"Rule {i}: compare the claim with the text word by word, then answer yes or no." for i in range(25))
    prefix = [{"role": "system", "content": system}]
    llm = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2, prefix_dir=tmp_path)
    n = llm.keep_prefix(prefix)
    assert n > 300 and len(list(tmp_path.glob("*.kv"))) == 1  # saved for the next process
    ask = [*prefix, {"role": "user", "content": f"Text: {TEXT}\nClaim: L1 zeroes some weights. Yes or no?"}]
    first = llm.yes_no(ask)
    llm.complete(SHORT, max_tokens=2)  # another prompt takes the KV cache
    t = time.perf_counter()
    again = llm.yes_no(ask)
    restored_s = time.perf_counter() - t
    assert again == pytest.approx(first, abs=1e-3)
    # a new instance (a fresh process) loads the prefix from its file instead of evaluating it
    other = LlamaCppLLM(default_gguf, n_ctx=2048, n_threads=os.cpu_count() or 2, prefix_dir=tmp_path)
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
        LlamaCppLLM(broken, n_ctx=512).load()

    assert str(broken) in str(info.value)
    assert "STUDYBOT_LLM_MODEL" in str(info.value)


def test_a_missing_model_file_raises_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"

    with pytest.raises(ModelError, match="No model file at"):
        LlamaCppLLM(missing).count_tokens("hi")


# --- OpenAI-compatible server ------------------------------------------------------------------------


def test_an_unreachable_server_raises_backend_error_with_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatLLM(url, "studybot", timeout=5)

    with pytest.raises(BackendError) as info:
        llm.complete(SHORT, max_tokens=4)

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

        llm = OpenAICompatLLM(base_url, "studybot", timeout=60, n_ctx=2048)
        pieces = list(llm.stream(SHORT, max_tokens=16))

        assert len(pieces) > 1
        assert "".join(pieces).strip()
        usage = llm.last_usage
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


# --- the fake ------------------------------------------------------------------------------------------


def test_scripted_llm_plays_back_replies_and_records_calls() -> None:
    fake = ScriptedLLM(["Hello there, student.", '{"ok": true}'])
    assert isinstance(fake, LLM)

    pieces = list(fake.stream(SHORT, max_tokens=8))
    assert len(pieces) > 1 and "".join(pieces) == "Hello there, student."
    assert fake.last_usage.completion_tokens == len(pieces) and fake.last_usage.finish_reason == "stop"
    assert fake.complete(SHORT, max_tokens=8, json_schema={"type": "object"}) == '{"ok": true}'

    assert fake.messages == [SHORT, SHORT]
    assert fake.calls[1]["json_schema"] == {"type": "object"}
    assert fake.count_tokens("abcdefgh") == 3
    with pytest.raises(AssertionError, match="no reply queued"):
        fake.complete(SHORT, max_tokens=8)


def test_json_schema_grammar_keeps_the_schemas_property_order(tmp_path: Path) -> None:
    """The model must write the keys in the schema's order (a quiz question before its answer), not sorted."""
    from rag.quiz import SCHEMAS

    llm = LlamaCppLLM(tmp_path / "unused.gguf")
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
