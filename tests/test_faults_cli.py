"""Faults at the command line's edges (issue 27): an invalid STUDYBOT_* setting is one sentence naming the
variable, its value and what it takes, from every entry point; control characters and terminal escape
sequences are taken out of questions; a --json command reports its failure as JSON."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rag.errors import SettingsError
from rag.settings import MIN_N_CTX, Settings
from rag.text import strip_controls
from tests.fakes import FakeRetriever, HashEmbedder, ScriptedLLM
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
ANSI_PCA = "\x1b[31mwhat is PCA used for?\x1b[0m"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, service: Any = None) -> tuple[int, str, str]:
    from ui.cli import main

    code = main(list(argv), service=service)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- invalid settings -----------------------------------------------------------------------------------------
def test_an_invalid_setting_is_one_sentence_naming_the_variable_its_value_and_what_it_takes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_RETRIEVAL_TOP_K", "abc")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert str(caught.value) == "STUDYBOT_RETRIEVAL_TOP_K=abc is not valid: it takes a whole number of at least 1."
    monkeypatch.delenv("STUDYBOT_RETRIEVAL_TOP_K")

    for var, value, takes in [
        ("STUDYBOT_LLM_N_CTX", "-5", f"a whole number of at least {MIN_N_CTX}"),
        ("STUDYBOT_LLM_BACKEND", "ollama", "one of llama_cpp or openai"),
        ("STUDYBOT_ANSWER_VERIFY_MIN_WORD_SUPPORT", "1.5", "a number from 0 to 1"),
        ("STUDYBOT_UI_PORT", "70000", "a whole number from 1 to 65535"),
        ("STUDYBOT_JUDGE_TIMEOUT", "0", "a number greater than 0"),
        ("STUDYBOT_ALLOW_NO_AUTH", "maybe", "true or false"),  # a shortcut is named as it was set
        ("STUDYBOT_INGEST_CHUNK_SIZE", "", "a whole number of at least 1"),
    ]:
        monkeypatch.setenv(var, value)
        with pytest.raises(SettingsError) as caught:
            Settings()
        shown = value or '""'
        assert str(caught.value) == f"{var}={shown} is not valid: it takes {takes}.", var
        monkeypatch.delenv(var)


def test_several_invalid_settings_and_values_given_in_code_are_named_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_QUIZ_TEMPERATURE", "-1")
    monkeypatch.setenv("STUDYBOT_LLM", "{not json")  # a whole group as one variable
    with pytest.raises(SettingsError, match=r"^STUDYBOT_LLM=\"\{not json\" is not valid: it takes a JSON object"):
        Settings()
    monkeypatch.delenv("STUDYBOT_LLM")
    with pytest.raises(SettingsError) as caught:
        Settings(answer={"max_quotes": 0})
    message = str(caught.value)
    assert message == ("The setting answer.max_quotes=0 is not valid: it takes a whole number of at least 1; "
                       "STUDYBOT_QUIZ_TEMPERATURE=-1 is not valid: it takes a number of at least 0.")
    assert "\n" not in message


def test_the_defaults_are_within_the_bounds() -> None:
    s = Settings()
    assert (s.retrieval.top_k, s.llm.n_ctx, s.llm.temperature, s.answer.max_quotes, s.ui.port) == (5, 4096, 0.1, 2, 7860)


@pytest.mark.parametrize("argv, var, value", [
    (["ask", "what is PCA used for?"], "STUDYBOT_RETRIEVAL_TOP_K", "abc"),
    (["doctor", "--no-runtime"], "STUDYBOT_LLM_N_CTX", "-5"),  # passed as ok before, then `ask` blamed the GGUF
    (["serve"], "STUDYBOT_UI_CONCURRENCY", "0"),  # must fail before it starts a server (or blocks)
    (["quiz", "-n", "1"], "STUDYBOT_QUIZ_GRADE_CORRECT", "2"),
])
def test_every_entry_point_refuses_an_invalid_setting_in_one_line(argv: list[str], var: str, value: str,
                                                                  tmp_path: Path) -> None:
    """`python -m ui.cli` (what the `studybot` script runs) in a fresh process, as a user starts it."""
    if argv[0] == "serve":
        argv = ["serve", "--port", str(free_port())]
    env = {**os.environ, "STUDYBOT_HOME": str(tmp_path / "home"), var: value}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {var}={value} is not valid: it takes "), proc.stderr
    assert proc.stdout == ""


def test_doctor_in_process_refuses_a_context_window_below_the_minimum(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STUDYBOT_LLM_N_CTX", "-5")
    code, out, err = run_cli(capsys, "doctor", "--no-runtime")
    assert code == 2 and out == ""
    assert err == f"error: STUDYBOT_LLM_N_CTX=-5 is not valid: it takes a whole number of at least {MIN_N_CTX}.\n"


# -- control characters in questions --------------------------------------------------------------------------
def test_control_characters_and_escape_sequences_are_stripped() -> None:
    assert strip_controls(ANSI_PCA) == "what is PCA used for?"
    assert strip_controls("\x00\x00\x00") == ""
    assert strip_controls("bell\x07 and \x1b]0;window title\x07L1?") == "bell and L1?"  # OSC ended by BEL
    assert strip_controls("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"  # OSC 8 hyperlink
    assert strip_controls("\x1b[1;32;40mbold\x1b[K \x9b31mC1") == "bold C1"
    assert strip_controls("P\u200bC\u202eA\ufeff") == "PCA"
    assert strip_controls("line one\n\tline two\r\n") == "line one\n\tline two\n"  # newlines and tabs stay
    assert strip_controls("café Σ — “quoted”") == "café Σ — “quoted”"


def test_an_ansi_coloured_question_is_not_refused_as_an_unknown_term(tmp_path: Path) -> None:
    """The real retriever over a small index: the question every path checks (check_question) has lost its
    colour codes before the named-term check, which read "31mPCA" as a term no handbook mentions."""
    from ui.service import StudyService

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pca.md").write_text(
        "# Dimensionality reduction\n\n## PCA\n\nPCA (principal component analysis) is used for dimensionality "
        "reduction: it projects the data onto the directions of largest variance.\n", encoding="utf-8")
    svc = StudyService(Settings(storage={"home": tmp_path / "home", "corpus_dir": corpus}),
                       embedder=HashEmbedder(), llm=ScriptedLLM())
    assert svc.ingest().ok
    pipe = svc.answers
    coloured_term = "what is \x1b[31mPCA\x1b[0m used for?"
    assert pipe.missing_terms(coloured_term) == ["31mPCA"]  # what the term check made of it before
    for question in (ANSI_PCA, coloured_term):
        retrieved = pipe.retrieve(pipe.request(question))
        assert retrieved.question == "what is PCA used for?"
        gathered = pipe.gather(retrieved)
        assert gathered.refusal is None and gathered.missing_terms == [], question


def test_chat_skips_stdin_lines_of_only_control_characters(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    from ui.service import StudyService

    llm = ScriptedLLM()  # no reply scripted: a line taken for a question would fail the test
    svc = StudyService(Settings(storage={"home": tmp_path}), llm=llm, retriever=FakeRetriever(),
                       embedder=HashEmbedder())
    monkeypatch.setattr(sys, "stdin", io.StringIO("\x00\x00\x00\n\x1b[0m\x07\n \t\n\x1b[1mexit\x1b[0m\n"))
    code, out, err = run_cli(capsys, "chat", service=svc)
    assert code == 0 and err == ""
    assert "you>" not in out and "studybot>" not in out
    assert llm.calls == []


# -- --json failures ------------------------------------------------------------------------------------------
def _json_error(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    reply = json.loads(lines[0])
    assert list(reply) == ["error"]
    return str(reply["error"])


def test_json_commands_report_an_invalid_setting_as_json(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STUDYBOT_RETRIEVAL_TOP_K", "abc")
    sentence = "STUDYBOT_RETRIEVAL_TOP_K=abc is not valid: it takes a whole number of at least 1."
    for argv in (["ask", "--json", "what is PCA?"], ["doctor", "--json", "--no-runtime"], ["retrieve", "x", "--json"],
                 ["quiz", "--json"], ["guide", "PCA", "--json"], ["review", "--json"], ["progress", "--json"],
                 ["ingest", "--json"], ["eval", "--json"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert _json_error(out) == sentence, argv
        assert err == f"error: {sentence}\n"  # and the usual line for a person watching


def test_json_commands_report_their_own_failures_as_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ui.service import StudyService

    svc = StudyService(Settings(storage={"home": tmp_path}), llm=ScriptedLLM(), retriever=FakeRetriever(),
                       embedder=HashEmbedder())
    code, out, _ = run_cli(capsys, "ask", "--json", "\x00\x1b[0m", service=svc)
    assert code == 2 and "empty" in _json_error(out)
    code, out, _ = run_cli(capsys, "quiz", "--weak", "--topic", "x", "--json", service=svc)
    assert code == 2 and "--weak" in _json_error(out)
    code, out, _ = run_cli(capsys, "eval", "--gold", str(tmp_path / "missing.jsonl"), "--json", service=svc)
    assert code == 2 and "missing.jsonl" in _json_error(out)
    code, out, _ = run_cli(capsys, "eval", "--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json",
                           service=svc)
    assert code == 2 and "cannot compare" in _json_error(out)


def test_a_json_command_line_that_does_not_parse_is_answered_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "ask", "-k", "many", "--json", "what is PCA?")
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert _json_error(out) == "argument -k: invalid int value: 'many'"
    assert "usage:" not in err and err.count("\n") == 1
