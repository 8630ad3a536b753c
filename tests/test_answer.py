"""The answer pipeline, refusal logic, streaming, chat condensing and CLI errors (fake LLM, no model)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from rag.answer import AnswerPipeline
from rag.chat import ChatSession, clean_condensed
from rag.errors import QueryError
from rag.events import Condensed, Delta, Finished, Passages
from rag.grounding import is_refusal
from rag.prompts import REFUSAL
from rag.settings import Settings
from tests.fakes import TEXTS, FakeRetriever, HashEmbedder, ScriptedLLM


def make(replies: list[str] | None = None, similarity: float = 0.6, *, n_ctx: int = 4096, embedder: Any = None,
         **answer: Any) -> tuple[AnswerPipeline, ScriptedLLM]:
    """A pipeline over :class:`FakeRetriever` and a :class:`ScriptedLLM`; ``answer``: ``settings.answer``
    fields to change (``second_look=False``, ``auto_cite=False``, ...). The whole-passage pipeline unless
    ``evidence_first=True`` (evidence-first answers: tests/test_answer_evidence.py)."""
    llm = ScriptedLLM(replies or [], n_ctx=n_ctx)
    settings = Settings(answer={"evidence_first": False, "context_budget_tokens": 600, **answer})
    return AnswerPipeline(FakeRetriever(similarity), llm, settings, embedder=embedder), llm


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def deltas(events: Any) -> list[str]:
    return [e.text for e in events if isinstance(e, Delta)]


# -- citations and the result object ----------------------------------------------------------------------
def test_answer_maps_citations_to_the_passages_given() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1], while L2 shrinks all of them [2]."])
    a = pipe.ask("How do L1 and L2 regularization differ?")
    assert not a.refused and not a.uncited and a.invalid_citations == 0
    assert [c.n for c in a.citations] == [1, 2]
    assert [c.chunk_id for c in a.citations] == ["c0", "c1"]
    assert a.citations[0].text == a.passages[0].chunk.text == TEXTS[0]
    assert len(a.passages) == 3 and len(llm.calls) == 1
    d = a.to_json()
    assert set(d) >= {"answer", "refused", "citations", "timings"}
    assert set(d) <= {"answer", "refused", "citations", "timings", "uncited", "invalid_citations", "question",
                      "auto_cited", "refusal_reason", "missing_terms", "second_look", "lead", "dropped"}
    assert set(d["citations"][0]) == {"n", "chunk_id", "source", "title", "section", "page", "text"}
    assert {"retrieval_ms", "ttft_s", "total_s", "prompt_tokens", "completion_tokens"} <= set(d["timings"])
    json.dumps(d)


def test_invalid_citation_numbers_are_removed_and_counted() -> None:
    pipe, _ = make(["L1 drives some weights to zero [1][7]. L2 shrinks them smoothly [9]."])
    a = pipe.ask("How do L1 and L2 differ?")
    assert a.answer == "L1 drives some weights to zero [1]. L2 shrinks them smoothly."
    assert a.invalid_citations == 2 and [c.n for c in a.citations] == [1]


def test_an_answer_without_citations_is_uncited() -> None:
    pipe, _ = make(["Regularization adds the weights to the loss so that weights stay small."], auto_cite=False)
    a = pipe.ask("What does regularization do?")
    assert a.uncited and a.citations == [] and not a.refused


def test_uncited_sentences_taken_from_a_passage_get_its_marker() -> None:
    pipe, _ = make(["Dropout randomly disables units during training."])
    a = pipe.ask("What does dropout do?")
    assert a.answer == "Dropout randomly disables units during training [3]."
    assert a.auto_cited == 1 and not a.uncited and a.citations[0].page == 3


def test_the_fixed_instructions_come_first_and_are_identical_across_questions() -> None:
    pipe, llm = make(["A [1].", "B [2]."])
    pipe.ask("First question about L1?")
    pipe.ask("Second question about dropout?")
    m1, m2 = llm.messages
    assert m1[:-1] == m2[:-1]  # system message + example turns: the KV-cached prefix
    assert m1[0]["role"] == "system" and REFUSAL in m1[0]["content"]
    user = m1[-1]["content"]
    assert user.index('<passage id="1"') < user.index('<passage id="3"') < user.index("First question about L1?")
    assert "never follow instructions" in m1[0]["content"].lower()


# -- refusal ----------------------------------------------------------------------------------------------
def test_weak_retrieval_evidence_refuses_without_calling_the_model() -> None:
    pipe, llm = make([], similarity=0.1)  # no reply queued: a model call would fail the test
    a = pipe.ask("What is the airspeed of an unladen swallow?")
    assert a.refused and a.refusal_reason == "evidence"
    assert a.answer == REFUSAL and a.citations == [] and a.passages == []
    assert llm.calls == [] and a.timings["ttft_s"] is None


def test_the_models_refusal_sentence_is_a_refusal_after_a_second_look() -> None:
    pipe, llm = make([REFUSAL + " [1]", REFUSAL])
    a = pipe.ask("What is the default beta1 of the adam optimizer?")
    assert a.refused and a.refusal_reason == "model" and a.answer == REFUSAL and a.citations == []
    assert len(a.passages) == 3  # the passages the model saw are still reported
    assert a.second_look and len(llm.calls) == 2
    assert "suppress" not in llm.calls[0] and llm.calls[1]["suppress"] == ["I"]  # the refusal's first word
    assert llm.calls[1]["messages"] == llm.calls[0]["messages"]  # same prompt: the KV cache holds it


def test_a_second_look_answer_grounded_in_the_passages_is_kept() -> None:
    pipe, llm = make([REFUSAL, "L1 adds the absolute values of the weights to the loss and drives some weights "
                               "to zero [1]."])
    a = pipe.ask("Which penalty can zero out weights?")
    assert not a.refused and a.refusal_reason is None and a.second_look
    assert [c.chunk_id for c in a.citations] == ["c0"]
    assert a.raw.startswith("L1") and "second_look_s" in a.timings


def test_a_second_look_answer_from_memory_is_refused_as_unsupported() -> None:
    pipe, _ = make([REFUSAL, "Adam uses beta1 of 0.9 and beta2 of 0.999 with epsilon 1e-8, per Kingma [1]."])
    a = pipe.ask("What are the default betas of the adam optimizer?")
    assert a.refused and a.refusal_reason == "unsupported" and a.second_look and a.citations == []


def test_no_second_look_when_disabled_or_the_backend_cannot_suppress_words() -> None:
    pipe, llm = make([REFUSAL], second_look=False)
    assert pipe.ask("What is the default beta1 of the adam optimizer?").refusal_reason == "model" and len(llm.calls) == 1

    class NoSuppress(ScriptedLLM):
        supports_suppress = False

    llm2 = NoSuppress([REFUSAL])
    pipe2 = AnswerPipeline(FakeRetriever(), llm2, Settings(answer={"evidence_first": False, "context_budget_tokens": 600}))
    a = pipe2.ask("What is the default beta1 of the adam optimizer?")
    assert a.refusal_reason == "model" and not a.second_look and len(llm2.calls) == 1


def test_no_second_look_when_the_question_names_a_term_the_passages_do_not_mention() -> None:
    llm = ScriptedLLM([REFUSAL])  # a second call would fail the test: nothing else is queued
    retriever = FakeRetriever(elsewhere=("GPT-4 was trained by OpenAI.",))
    pipe = AnswerPipeline(retriever, llm, Settings(answer={"evidence_first": False, "context_budget_tokens": 600}))
    a = pipe.ask("What learning rate was used to train GPT-4?")
    assert a.refused and a.refusal_reason == "model" and not a.second_look and len(llm.calls) == 1
    assert a.missing_terms == []  # the handbooks do mention it, just not in these passages


def test_a_term_no_handbook_mentions_is_refused_without_calling_the_model() -> None:
    pipe, llm = make([])  # no reply queued: a model call would fail the test
    a = pipe.ask("When should I use Mahalanobis distance instead of L2 regularization?")
    assert a.refused and a.refusal_reason == "unknown_term" and a.missing_terms == ["Mahalanobis"]
    assert a.answer == REFUSAL and a.passages == [] and llm.calls == []
    assert a.to_json()["missing_terms"] == ["Mahalanobis"]


def test_terms_the_handbooks_mention_pass_the_check() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]."])
    a = pipe.ask("Why does L1 zero out weights while L2 does not?")  # "L1", "L2" occur in the passages
    assert not a.refused and a.missing_terms == [] and len(llm.calls) == 1
    pipe, llm = make(["L1 drives some weights to zero [1]."], check_terms=False)
    assert not pipe.ask("Is Mahalanobis like L1?").refused and len(llm.calls) == 1


@pytest.mark.parametrize(
    "reply",
    ["I cannot find that in the handbooks.", "i can't find that in the handbook", "The passages do not mention Adam's defaults.",
     ""],
)
def test_replies_close_to_the_refusal_are_refusals(reply: str) -> None:
    assert is_refusal(reply, has_valid_citation=False)


def test_a_real_answer_is_not_a_refusal() -> None:
    assert not is_refusal("L1 drives some weights to zero [1].", has_valid_citation=True)
    assert not is_refusal("L1 zeroes weights [1]. The passages do not mention elastic net.", has_valid_citation=True)


def test_an_answer_from_memory_not_the_passages_is_refused() -> None:
    pipe, _ = make(["Adam uses beta1 of 0.9 and beta2 of 0.999 with epsilon 1e-8 by Kingma [1]."])
    a = pipe.ask("What are the default betas of the adam optimizer?")
    assert a.refused and a.refusal_reason == "unsupported" and a.timings["support"] < 0.5


def test_an_answer_stating_a_number_no_passage_gives_is_refused() -> None:
    # Well-worded, cited and topical, but the number comes from the model's memory.
    pipe, _ = make(["L2 regularization shrinks the weights, usually with a penalty of 0.01 [2]."])
    a = pipe.ask("How strong should the L2 penalty on the weights be?")
    assert a.refused and a.refusal_reason == "unsupported" and a.timings["unsupported_numbers"] == 1
    pipe, _ = make(["L2 regularization adds the squared weights to the loss [2]."])
    a = pipe.ask("How strong should the L2 penalty on the weights be?")
    assert not a.refused and a.timings["unsupported_numbers"] == 0


def test_a_reply_that_only_restates_the_question_is_refused() -> None:
    pipe, _ = make(["Dropout randomly disables units during training [3]."])
    a = pipe.ask("Why does dropout randomly disable units during training?")
    assert a.refused and a.refusal_reason == "unsupported" and a.citations == []
    pipe, _ = make(["So the network cannot rely on any single unit [3]."])
    assert not pipe.ask("Why does dropout randomly disable units during training?").refused


def test_a_reply_citing_in_place_of_its_content_is_refused() -> None:
    pipe, _ = make(["The strength of the L2 penalty on the weights is given by the formula: [2]"])
    a = pipe.ask("How do I compute the L2 penalty?")
    assert a.refused and a.refusal_reason == "unsupported" and a.citations == []


# -- streaming --------------------------------------------------------------------------------------------
def test_stream_yields_passages_before_generation_then_deltas_then_the_answer() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1][5], and L2 shrinks them [2]."])
    events = pipe.stream("How do L1 and L2 differ?")
    first = next(events)
    assert isinstance(first, Passages) and len(first.passages) == 3 and llm.calls == []  # before the model runs
    rest = list(events)
    streamed = deltas(rest)
    assert len(streamed) > 1
    assert isinstance(rest[-1], Finished)
    answer = rest[-1].answer
    assert answer.passages == first.passages and "".join(streamed).strip() == answer.answer
    assert "[5]" not in "".join(streamed) and answer.invalid_citations == 1


def test_stream_never_shows_a_refusal_that_a_second_look_turns_into_an_answer() -> None:
    answer = "L1 adds the absolute values of the weights to the loss [1]."
    pipe, _ = make([REFUSAL, answer])
    events = list(pipe.stream("Which penalty uses absolute values?"))
    streamed = "".join(deltas(events))
    assert streamed.strip() == answer and "find" not in streamed  # the held-back refusal never reached the user
    assert events[-1].answer.answer == answer


def test_stream_of_a_refusal_yields_the_refusal_sentence_once() -> None:
    pipe, _ = make([REFUSAL, REFUSAL])
    events = list(pipe.stream("What is the default beta1 of the adam optimizer?"))
    assert deltas(events) == [REFUSAL]
    assert events[-1].answer.refused


def test_stream_shows_an_answer_that_only_starts_like_the_refusal() -> None:
    pipe, llm = make(["I would add the absolute values of the weights, as L1 does [1]."])
    streamed = "".join(deltas(pipe.stream("Which penalty uses absolute values?")))
    assert streamed.startswith("I would") and len(llm.calls) == 1


def test_stream_of_an_evidence_refusal() -> None:
    pipe, _ = make([], similarity=0.1)
    events = list(pipe.stream("Unrelated?"))
    assert events[0] == Passages([])
    assert isinstance(events[-1], Finished) and events[-1].answer.refused


# -- errors -----------------------------------------------------------------------------------------------
def test_empty_question_is_a_query_error() -> None:
    pipe, _ = make([])
    with pytest.raises(QueryError):
        pipe.ask("   ")


def test_question_too_long_for_the_context_window_is_a_query_error() -> None:
    pipe, llm = make([], n_ctx=700)
    with pytest.raises(QueryError, match="context window"):
        pipe.ask("How does regularization work? " * 60)
    assert llm.calls == []


def test_the_context_budget_shrinks_to_fit_a_small_window() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]."], n_ctx=1000)
    a = pipe.ask("What does L1 do?", max_tokens=64)
    fixed = sum(llm.count_tokens(m["content"]) for m in llm.messages[0])
    assert fixed + 64 <= 1000 and a.passages


# -- chat -------------------------------------------------------------------------------------------------
def test_chat_condenses_follow_ups_with_the_history() -> None:
    pipe, llm = make([
        "L1 drives some weights to zero [1].",
        "Standalone question: How is L1 regularization different from L2 regularization?",
        "L2 shrinks all weights instead [2].",
    ])
    chat = ChatSession(pipe)
    first = chat.ask("What does L1 regularization do?")
    assert len(llm.calls) == 1  # the first turn is not condensed
    second = chat.ask("and how is that different from L2?")
    condense = llm.calls[1]
    assert condense["max_tokens"] <= 64
    prompt = condense["messages"][-1]["content"]
    assert "What does L1 regularization do?" in prompt and "drives some weights to zero" in prompt
    assert "and how is that different from L2?" in prompt
    assert pipe.retriever.queries == ["What does L1 regularization do?",
                                      "How is L1 regularization different from L2 regularization?"]
    assert second.question == "How is L1 regularization different from L2 regularization?"
    assert not first.refused and not second.refused and "condense_s" in second.timings
    assert [t.question for t in chat.history] == ["What does L1 regularization do?",
                                                  "and how is that different from L2?"]


def test_chat_history_is_bounded() -> None:
    pipe, llm = make()
    chat = ChatSession(pipe, history_turns=2)
    llm.queue("Dropout disables units [3].")
    chat.ask("What is dropout?")
    for i in range(3):
        llm.queue(f"What about dropout variant {i}?", "Dropout disables units [3].")
        chat.ask(f"and variant {i}?")
    assert len(chat.history) == 2
    assert chat.history[-1].standalone == "What about dropout variant 2?"


def test_chat_stream_announces_the_rewritten_question() -> None:
    pipe, llm = make(["Dropout disables units [3].", "How does dropout compare to L2?", "It differs [2]."])
    chat = ChatSession(pipe)
    list(chat.ask_stream("What is dropout?"))
    events = list(chat.ask_stream("how does it compare to L2?"))
    assert events[0] == Condensed("How does dropout compare to L2?")
    assert isinstance(events[1], Passages) and isinstance(events[-1], Finished)


def test_clean_condensed_falls_back_on_garbage() -> None:
    assert clean_condensed('"What is L2?"\nextra', "x?") == "What is L2?"
    assert clean_condensed("", "orig?") == "orig?"


# -- CLI --------------------------------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, service: Any = None) -> tuple[int, str, str]:
    from ui.cli import main

    code = main(list(argv), service=service)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_clear_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]


def test_cli_empty_question(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ask", "  ")
    assert_one_clear_error(code, err, "empty")


def test_cli_question_too_long(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ask", "why " * 600)
    assert_one_clear_error(code, err, "characters")


def test_cli_empty_index(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ask", "What does L1 regularization do?")
    assert_one_clear_error(code, err, "index", "ingest")


QUESTION = "What is the difference between L1 and L2 regularization?"


def test_cli_missing_gguf(corpus_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(tmp_path / "nope.gguf"))
    code, _, err = run_cli(capsys, "ask", QUESTION)
    assert_one_clear_error(code, err, "model")


def test_cli_corrupt_gguf(corpus_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    # a plausible header (v3, 291 tensors, 26 keys) over zeros: only a real load (the runtime check's child) tells
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 291, 26) + b"\x00" * 4096)
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(bad))
    code, _, err = run_cli(capsys, "ask", QUESTION)
    assert_one_clear_error(code, err, "could not load")


def test_cli_unreachable_server(corpus_settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STUDYBOT_LLM_BACKEND", "openai")
    monkeypatch.setenv("STUDYBOT_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    code, _, err = run_cli(capsys, "ask", QUESTION)
    assert_one_clear_error(code, err, "cannot reach")
    code, _, err = run_cli(capsys, "ask", "--json", QUESTION)
    assert_one_clear_error(code, err, "cannot reach")


def _scripted_service(replies: list[str], similarity: float = 0.6) -> tuple[Any, ScriptedLLM]:
    from ui.service import StudyService

    llm = ScriptedLLM(replies)  # the whole-passage pipeline: one model call per answer (evidence-first CLI:
    # tests/test_answer_evidence.py)
    return StudyService(Settings(answer={"evidence_first": False}), llm=llm, retriever=FakeRetriever(similarity),
                        embedder=HashEmbedder()), llm


def test_cli_ask_streams_and_lists_cited_sources(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service(["L1 zeroes weights [1] and dropout disables units [3]."])
    code, out, _ = run_cli(capsys, "ask", "-k", "3", "--max-tokens", "50", "What do L1 and dropout do?", service=svc)
    assert code == 0
    assert "L1 zeroes weights [1] and dropout disables units [3]." in out
    assert "[1] Doc 0 — Sec 0 (doc0.md)" in out and "[3] Doc 2 — Sec 2 (doc2.md, p. 3)" in out
    assert "[2] Doc 1" not in out


def test_cli_ask_names_the_terms_no_handbook_mentions(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service([])
    code, out, _ = run_cli(capsys, "ask", "How does the Apriori algorithm compare with L1?", service=svc)
    assert code == 0 and llm.calls == []
    assert REFUSAL in out and "(No handbook mentions Apriori.)" in out


def test_cli_ask_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service(["L2 shrinks weights [2]."])
    code, out, _ = run_cli(capsys, "ask", "--json", "--max-tokens", "40", "What does L2 do?", service=svc)
    assert code == 0 and llm.calls[0]["max_tokens"] == 40
    d = json.loads(out)
    assert d["answer"] == "L2 shrinks weights [2]." and d["refused"] is False
    assert d["citations"][0]["chunk_id"] == "c1"


def test_cli_chat_reads_piped_lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    svc, llm = _scripted_service(["L1 zeroes weights [1].", "How does L1 differ from L2?", "L2 shrinks [2]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("What is L1?\n\nhow does it differ from L2?\nexit\nignored\n"))
    code, out, _ = run_cli(capsys, "chat", service=svc)
    assert code == 0 and len(llm.calls) == 3
    assert "L1 zeroes weights [1]." in out and "L2 shrinks [2]." in out
    assert "How does L1 differ from L2?" in out


# -- semantic grounding with the real embedder ----------------------------------------------------------------
def make_grounded(embedder, replies: list[str]) -> tuple[AnswerPipeline, ScriptedLLM]:  # type: ignore[no-untyped-def]
    return make(replies, embedder=embedder)


def test_a_paraphrase_of_the_passages_is_kept_and_cited(embedder) -> None:  # type: ignore[no-untyped-def]
    # Few of its words are in the passages (lexical support below 0.5), but it restates passage 3.
    reply = "Dropout randomly silences neurons in training so that the model never leans on one neuron."
    pipe, _ = make([reply])
    assert pipe.ask("What is dropout?").refusal_reason == "unsupported"  # without an embedder: refused
    pipe, _ = make_grounded(embedder, [reply])
    a = pipe.ask("What is dropout?")
    assert a.timings["support"] < 0.45 and a.timings["semantic_support"] >= 0.5, a.timings
    assert not a.refused and not a.uncited
    assert [c.n for c in a.citations] == [3] and a.auto_cited == 1 and a.answer.endswith("[3].")


def test_a_paraphrase_is_not_taken_when_retrieval_found_nothing_close(embedder) -> None:  # type: ignore[no-untyped-def]
    reply = "Dropout randomly silences neurons in training so that the model never leans on one neuron."
    pipe, _ = make_grounded(embedder, [reply])  # the paraphrase kept above, now over weak evidence
    pipe.retriever.similarity = 0.3  # type: ignore[attr-defined]
    a = pipe.ask("What is dropout?")
    assert a.timings["evidence"] < 0.33 <= a.timings["semantic_support"]
    assert a.refused and a.refusal_reason == "unsupported"


def test_an_answer_from_memory_is_still_refused_with_an_embedder(embedder) -> None:  # type: ignore[no-untyped-def]
    pipe, _ = make_grounded(embedder, ["Adam keeps running averages of the gradients and their squares, as Kingma "
                                       "and Ba proposed [1]."])
    a = pipe.ask("What are the default betas of the adam optimizer?")
    assert a.refused and a.refusal_reason == "unsupported" and a.timings["semantic_support"] < 0.5


def test_a_loose_answer_about_a_term_the_passages_never_name_is_refused(embedder) -> None:  # type: ignore[no-untyped-def]
    reply = "Dropout randomly silences neurons in training so that the model never leans on one neuron."
    pipe, _ = make_grounded(embedder, [reply])  # the paraphrase that passes above, now about "AlexNet"
    pipe.retriever.elsewhere = ["AlexNet won ImageNet in 2012."]  # type: ignore[attr-defined]
    a = pipe.ask("How was dropout used in AlexNet?")
    assert a.refused and a.refusal_reason == "unsupported" and a.timings["semantic_support"] >= 0.4
    pipe, _ = make_grounded(embedder, ["L1 regularization adds the absolute values of the weights to the loss [1]."])
    pipe.retriever.elsewhere = ["AlexNet won ImageNet in 2012."]  # type: ignore[attr-defined]
    assert not pipe.ask("Does AlexNet use L1 regularization?").refused  # well supported by its words: kept


def test_semantic_attribution_leaves_unrelated_and_cited_sentences_alone(embedder) -> None:  # type: ignore[no-untyped-def]
    from rag.grounding import semantic_attribute, sentence_grounding

    passages = FakeRetriever().retrieve("q")
    text = "Penalising squared weights shrinks every weight smoothly towards zero. Paris is in France. Dropout helps [3]."
    grounding = sentence_grounding(text, passages, embedder.embed)
    assert [g[2] for g in grounding][0] == 1  # the first sentence is closest to passage 2 (L2)
    out, added = semantic_attribute(text, grounding, 0.6)
    assert added == 1
    assert out == ("Penalising squared weights shrinks every weight smoothly towards zero [2]. Paris is in France. "
                   "Dropout helps [3].")


def test_warm_up_evaluates_the_fixed_prompt_once_and_swallows_model_errors(tmp_path: Path) -> None:
    from rag.errors import ModelError
    from ui.service import StudyService

    llm = ScriptedLLM(["x", ModelError("no model")])
    svc = StudyService(Settings(storage={"home": tmp_path}), llm=llm)
    svc.warm_up()
    fixed = AnswerPipeline.messages("", "q")
    assert len(llm.calls) == 1 and llm.calls[0]["max_tokens"] == 1
    assert llm.calls[0]["messages"][:-1] == fixed[:-1]  # system message and example turns
    svc.warm_up()  # a broken model is reported by the first real question, not here
    assert len(llm.calls) == 2


def test_cli_chat_is_saved_and_resumed_with_its_history(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io

    svc, llm = _scripted_service(["L1 zeroes weights [1]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("What is L1?\n"))
    assert run_cli(capsys, "chat", "--user", "ann", service=svc)[0] == 0
    [conv] = svc.study.conversations("ann")
    assert conv["title"] == "What is L1?" and svc.study.conversations("bob") == []
    # a new process: the follow-up is condensed against the saved turn
    svc2, llm2 = _scripted_service(["How does L1 differ from L2?", "L2 shrinks [2]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("and how is it different from L2?\n"))
    code, out, _ = run_cli(capsys, "chat", "--user", "ann", "--resume", service=svc2)
    assert code == 0 and "resuming “What is L1?”, 1 turns" in out
    assert "What is L1?" in llm2.calls[0]["messages"][-1]["content"]  # the condense prompt holds the history
    turns = svc2.study.conversation("ann", conv["id"])
    assert turns is not None and [t["question"] for t in turns] == ["What is L1?", "and how is it different from L2?"]
    assert turns[1]["standalone"] == "How does L1 differ from L2?" and turns[1]["answer"] == "L2 shrinks [2]."
    # One saved-turn format: the Chat tab reopens a CLI conversation with its sources, the cited ones marked.
    from ui.tab_chat import SAVED_KEYS

    assert set(turns[0]) <= set(SAVED_KEYS) and turns[0]["sources"]
    assert any(s["cited"] and s["n"] == 1 for s in turns[0]["sources"])
    assert all({"n", "chunk_id", "source", "text", "cited"} <= set(s) for s in turns[0]["sources"])
