"""The answer path with a scripted model: quotes first (whole, cited), the explanation verified sentence by
sentence, refusals from the ranking, streaming order, chat condensing and the CLI (no real model)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from rag.answer import AnswerPipeline
from rag.answer.chat import ChatSession, clean_condensed
from rag.answer.checks import is_refusal
from rag.answer.events import Condensed, Delta, Finished, Passages, Quotes, Stage
from rag.citations import markers_in_code
from rag.errors import QueryError
from rag.prompts import REFUSAL
from rag.settings import Settings
from tests.fakes import TEXTS, FakeRetriever, HashEmbedder, ScriptedLLM, reader

LIST_TEXT = """**Use Cases:**
- **Medical Diagnosis:** Prioritize recall to minimize false negatives.
- **Weather Forecasting:** Use MAE for symmetric error penalties.
- **Fraud Detection:** Optimize precision to reduce false alarms."""

CODE_TEXT = """Resampling with SMOTE creates synthetic minority samples:
```python
from imblearn.over_sampling import SMOTE
smote = SMOTE()
X_resampled, y_resampled = smote.fit_resample(X, y)
```
Use it on the training split only."""

TABLE_TEXT = """| Function | Formula | Range |
|:---|:---|:---|
| **Sigmoid** | 1/(1+e^(-x)) | (0, 1) |
| **Leaky ReLU** | max(0.01x, x) | (-inf, inf) |"""


def make(replies: list[str] | None = None, answering: tuple[str, ...] = ("drives some weights to zero",),
         similarity: float = 0.6, texts: list[str] = TEXTS, *, n_ctx: int = 4096, embedder: Any = None,
         **answer: Any) -> tuple[AnswerPipeline, ScriptedLLM]:
    """A pipeline over :class:`FakeRetriever` (``texts``) and a :class:`ScriptedLLM` whose yes/no judge reads
    like a student (:func:`tests.fakes.reader`: an excerpt answers when it holds one of ``answering``)."""
    llm = ScriptedLLM(replies or [], n_ctx=n_ctx, judge=reader(answering))
    retriever = FakeRetriever(similarity, texts=texts)
    return AnswerPipeline(retriever, llm, Settings(answer=answer), embedder=embedder or HashEmbedder()), llm


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def deltas(events: Any) -> list[str]:
    return [e.text for e in events if isinstance(e, Delta)]


def judged_excerpts(llm: ScriptedLLM) -> list[str]:
    """The units the model was asked to judge (rag/prompts/judge.txt)."""
    return [m[-1]["content"].split("\n\nSentence:", 1)[1] for m in llm.judged
            if m[-1]["content"].startswith("Question:")]


# -- quotes: the handbook's own words, whole and cited ------------------------------------------------------
def test_the_answer_starts_with_the_handbooks_own_words_then_a_checked_explanation() -> None:
    pipe, llm = make(["L1 regularization drives some weights to zero [1]."])
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert not a.refused and [q.citation.n for q in a.quotes] == [1]
    assert a.quotes[0].text == TEXTS[0]  # verbatim
    assert a.answer.startswith("> " + TEXTS[0] + " [1]")
    assert a.explanation == "L1 regularization drives some weights to zero [1]." and a.answer.endswith(a.explanation)
    assert [c.chunk_id for c in a.citations] == ["c0"] and a.citations[0].text == TEXTS[0]
    assert a.dropped == 0 and [c.reason for c in a.checks] == ["model"]
    d = a.to_json()
    assert {"answer", "refused", "refusal_reason", "citations", "quotes", "timings"} <= set(d)
    assert d["quotes"][0] == {"text": TEXTS[0], "citation": d["citations"][0]}
    assert d["timings"]["quotes_s"] is not None and d["timings"]["quotes_s"] <= d["timings"]["total_s"]
    json.dumps(d)


def test_the_explanation_prompt_holds_only_the_quotes() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]."])
    pipe.ask("What does L1 regularization do to the weights?")
    prompt = llm.calls[0]["messages"][-1]["content"]
    assert TEXTS[0] in prompt and TEXTS[1] not in prompt and TEXTS[2] not in prompt
    assert llm.calls[0]["temperature"] == 0.0  # greedy: the same answer in every process
    # every prompt about the quotes starts with the same fixed prefix and the same excerpts (the KV cache keeps
    # them): the answers? check, the explanation, the check of its sentences
    about_quotes = [m for m in [*llm.judged, llm.calls[0]["messages"]] if len(m) > 1]
    assert len(about_quotes) == 3 and len({json.dumps(m[:-1]) for m in about_quotes}) == 1
    assert len({m[-1]["content"].split("</excerpts>")[0] for m in about_quotes}) == 1


def test_the_pipeline_keeps_the_fixed_prefix_once_before_its_first_model_call() -> None:
    # `studybot eval` never warmed the model up: each question evaluated the prefix again (16 s, not 7)
    pipe, llm = make(["L1 drives some weights to zero [1].", "L1 drives some weights to zero [1]."])
    assert llm.kept == []
    judged_before: list[int] = []
    original = llm.keep_prefix

    def keep(messages: list[dict[str, str]]) -> int:
        judged_before.append(len(llm.judged))
        return original(messages)

    llm.keep_prefix = keep  # type: ignore[method-assign]
    pipe.ask("What does L1 regularization do to the weights?")
    pipe.ask("What does L1 regularization do to the weights?")
    assert judged_before == [0] and len(llm.kept) == 1
    about_quotes = [m for m in llm.judged if len(m) > 1]
    assert about_quotes and all(m[:-1] == llm.kept[0] for m in about_quotes)


def test_a_list_item_is_quoted_with_its_introduction() -> None:
    pipe, _ = make(["Use MAE for weather forecasting [1]."], answering=("Use MAE",), texts=[LIST_TEXT])
    a = pipe.ask("Which error measure suits weather forecasting?")
    assert a.quotes[0].text == "**Use Cases:**\n- **Weather Forecasting:** Use MAE for symmetric error penalties."


def test_a_table_row_is_quoted_under_its_header_row() -> None:
    pipe, _ = make(["Leaky ReLU is max(0.01x, x) [1]."], answering=("Leaky ReLU",), texts=[TABLE_TEXT])
    a = pipe.ask("What slope does leaky relu use for negative inputs?")
    quote = a.quotes[0].text
    assert quote.splitlines()[0] == "| Function | Formula | Range |" and "| **Leaky ReLU** | max(0.01x, x)" in quote
    assert "\n>\n> [1]" in a.answer  # the marker on its own line, not a table row
    header_judged = [e for e in judged_excerpts(pipe.llm) if e.strip().endswith("| Function | Formula | Range |")]  # type: ignore[arg-type]
    assert header_judged == []  # a header row alone is never a candidate


def test_a_code_block_is_quoted_whole_with_the_marker_after_it() -> None:
    pipe, _ = make(["SMOTE creates synthetic minority samples [1]."], answering=("fit_resample",),
                   texts=[CODE_TEXT])
    a = pipe.ask("How do I oversample with SMOTE in code?")
    assert a.quotes[0].text.startswith("Resampling with SMOTE creates synthetic minority samples:\n```python")
    assert "smote.fit_resample(X, y)\n```" in a.quotes[0].text
    assert markers_in_code(a.answer) == 0 and "```\n>\n> [1]" in a.answer


def test_a_code_block_cut_by_its_chunk_is_quoted_closed_with_the_marker_outside() -> None:
    cut = CODE_TEXT.split("```\nUse it")[0]  # the chunk ends inside the code block
    pipe, _ = make(["SMOTE creates synthetic minority samples [1]."], answering=("fit_resample",), texts=[cut])
    a = pipe.ask("How do I oversample with SMOTE in code?")
    assert a.quotes[0].text.endswith("smote.fit_resample(X, y)\n```")
    assert markers_in_code(a.answer) == 0 and "```\n>\n> [1]" in a.answer


def test_indexing_inside_quoted_code_is_left_as_the_handbook_wrote_it() -> None:
    table = ("| Method | When to Use | Implementation |\n|:---|:---|:---|\n"
             "| **Mode** | Categorical | `df.fillna(df.mode()[0])` |")
    pipe, _ = make(["Fill missing categories with the mode [1]."], answering=("fillna",), texts=[table])
    a = pipe.ask("How do I fill missing categorical values with the most common value?")
    assert "| **Mode** | Categorical | `df.fillna(df.mode()[0])` |\n>\n> [1]" in a.answer  # the handbook's [0] kept


def test_headings_questions_and_diagrams_are_never_quoted() -> None:
    text = ("## Regularization\n**Key Concepts:**\n- How does L1 differ from L2?\n```\n┌──────┐\n│ L1 │\n└──────┘\n```\n"
            "L1 regularization drives some weights to zero.")
    pipe, llm = make(["L1 drives some weights to zero [1]."], answering=("L1",), texts=[text])
    a = pipe.ask("What does L1 regularization do?")
    assert [q.text for q in a.quotes] == ["L1 regularization drives some weights to zero."]
    judged = judged_excerpts(llm)
    assert not any("Key Concepts" in e or "How does L1" in e or "┌" in e for e in judged), judged


def test_two_units_answering_a_comparison_are_both_quoted_in_reading_order() -> None:
    pipe, _ = make(["L1 zeroes some weights [1] while L2 shrinks them all [2]."],
                   answering=("drives some weights", "shrinks all weights"), max_quotes=2, quote_margin=10.0)
    a = pipe.ask("How do L1 and L2 regularization differ?")
    assert [q.citation.n for q in a.quotes] == [1, 2] or [q.citation.n for q in a.quotes] == [2, 1]
    assert {q.text for q in a.quotes} == {TEXTS[0], TEXTS[1]}
    assert {c.chunk_id for c in a.citations} == {"c0", "c1"}


def test_the_model_judges_only_the_scorers_top_units() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]."], judge_top_k=2)
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert a.ranking is not None and a.ranking.judged == 2
    assert len(judged_excerpts(llm)) == 2
    pipe, llm = make(["L1 drives some weights to zero [1]."], judge_top_k=0)
    assert pipe.ask("What does L1 regularization do to the weights?").quotes  # the scorer's order alone
    assert judged_excerpts(llm) == []


# -- the explanation: verified sentence by sentence -----------------------------------------------------------
def test_an_unsupported_explanation_sentence_is_dropped_and_never_shown() -> None:
    reply = "L1 drives some weights to zero [1]. It was invented by Tibshirani in Stanford in 1996 [1]."
    pipe, _ = make([reply])
    events = list(pipe.stream("What does L1 regularization do to the weights?"))
    shown = "".join(deltas(events))
    assert "Tibshirani" not in shown and "1996" not in shown
    a = events[-1].answer
    assert a.explanation == "L1 drives some weights to zero [1]." and a.dropped == 1
    assert [c.reason for c in a.checks] == ["model", "number"]


def test_when_every_explanation_sentence_fails_the_quotes_still_answer() -> None:
    pipe, _ = make(["L1 uses a learning rate of 0.001 chosen by Adam [1]."])
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert not a.refused and a.quotes and a.explanation == "" and a.dropped == 1
    assert a.answer == "> " + TEXTS[0] + " [1]"


def test_a_sentence_the_model_says_the_quotes_do_not_state_is_dropped() -> None:
    # Passes every rule (its words are the quote's) but reverses it: the model's check fails it.
    pipe, llm = make(["L1 regularization adds the squared weights to the loss [1]."])
    pipe.llm.judge = lambda m: -2.0 if "Check." in m[-1]["content"] else 3.0  # type: ignore[attr-defined]
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert a.explanation == "" and a.checks[0].reason == "model" and a.checks[0].logodds == -2.0


def test_the_explanation_is_bounded_in_sentences() -> None:
    reply = ("L1 drives some weights to zero [1]. L1 adds absolute values of weights [1]. "
             "L1 drives weights to zero [1]. L1 adds values to the loss [1].")
    pipe, _ = make([reply])
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert len(a.checks) == 2 and a.explanation.count("[1]") == 2


def test_an_uncited_sentence_gets_the_marker_of_the_quote_and_invalid_markers_go() -> None:
    pipe, _ = make(["L1 regularization drives some weights to zero. L1 adds the absolute values [3]."])
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert a.explanation == "L1 regularization drives some weights to zero [1]. L1 adds the absolute values [1]."


def test_a_sentence_citing_the_quote_next_to_the_one_that_states_it_is_recited() -> None:
    pipe, _ = make(["L1 regularization drives some weights to zero [2]. L1 drives weights to zero and L2 shrinks all "
                    "weights [1][2]."], answering=("drives some weights", "shrinks all weights"),
                   max_quotes=2, quote_margin=10.0)
    a = pipe.ask("How do L1 and L2 regularization differ?")
    first, second = a.explanation.split(". ", 1)
    assert first == "L1 regularization drives some weights to zero [1]"  # quote [1] states it, not [2]
    assert second == "L1 drives weights to zero and L2 shrinks all weights [1][2]."  # two markers: as written


def test_markers_inside_code_in_the_explanation_are_moved_out() -> None:
    pipe, _ = make(["SMOTE creates synthetic minority samples with `smote [1].fit_resample(X, y)`."],
                   answering=("fit_resample",), texts=[CODE_TEXT])
    a = pipe.ask("How do I oversample with SMOTE in code?")
    assert markers_in_code(a.answer) == 0, a.answer
    assert "`smote.fit_resample(X, y)`" in a.explanation


def test_a_refusal_written_as_the_explanation_is_dropped_not_the_answer() -> None:
    pipe, _ = make([REFUSAL])
    a = pipe.ask("What does L1 regularization do to the weights?")
    assert not a.refused and a.quotes and a.explanation == ""


# -- refusals ------------------------------------------------------------------------------------------------
def test_no_unit_judged_to_answer_is_a_refusal_before_anything_is_quoted() -> None:
    pipe, llm = make([], answering=("nothing here",))  # no explanation queued: a call would fail the test
    events = list(pipe.stream("What is the default beta1 of the adam optimizer?"))
    assert not any(isinstance(e, Quotes) for e in events)
    a = events[-1].answer
    assert a.refused and a.refusal_reason == "no_answer" and a.answer == REFUSAL and a.citations == []
    assert a.quotes == [] and a.passages and llm.calls == []
    assert deltas(events) == [REFUSAL]


def test_weak_retrieval_evidence_refuses_without_the_model() -> None:
    pipe, llm = make([], similarity=0.1)
    a = pipe.ask("What is the airspeed of an unladen swallow?")
    assert a.refused and a.refusal_reason == "evidence" and a.passages == [] and llm.calls == [] and llm.judged == []


def test_a_term_no_handbook_mentions_is_refused_without_the_model() -> None:
    pipe, llm = make([])
    a = pipe.ask("When should I use Mahalanobis distance instead of L2 regularization?")
    assert a.refused and a.refusal_reason == "unknown_term" and a.missing_terms == ["Mahalanobis"]
    assert llm.calls == [] and llm.judged == [] and a.to_json()["missing_terms"] == ["Mahalanobis"]
    pipe, llm = make(["L1 drives some weights to zero [1]."], check_terms=False)
    assert not pipe.ask("Is Mahalanobis like L1 regularization, driving some weights to zero?").refused


@pytest.mark.parametrize("reply", ["I cannot find that in the handbooks.", "i can't find that in the handbook",
                                   "The excerpts do not mention Adam's defaults.", ""])
def test_replies_close_to_the_refusal_are_refusals(reply: str) -> None:
    assert is_refusal(reply)


def test_a_real_explanation_is_not_a_refusal() -> None:
    assert not is_refusal("L1 drives some weights to zero [1].")


# -- streaming ---------------------------------------------------------------------------------------------------
def test_stream_order_sources_then_quotes_then_checked_sentences() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]. L1 adds the absolute values of the weights [1]."])
    events = pipe.stream("What does L1 regularization do to the weights?")
    first, second = next(events), next(events)
    assert isinstance(first, Stage) and first.name == "retrieving"
    assert isinstance(second, Passages) and len(second.passages) == 3 and llm.judged == []  # before the model
    rest = list(events)
    assert kinds(rest) == ["Stage", "Quotes", "Stage", "Stage", "Delta", "Delta", "Finished"]
    assert [e.name for e in rest if isinstance(e, Stage)] == ["ranking", "explaining", "checking"]
    answer = rest[-1].answer
    assert rest[1].quotes == answer.quotes and "".join(deltas(rest)) == answer.explanation
    assert answer.passages == second.passages


def test_stream_of_an_evidence_refusal() -> None:
    pipe, _ = make([], similarity=0.1)
    events = list(pipe.stream("Unrelated?"))
    assert kinds(events) == ["Stage", "Passages", "Delta", "Finished"] and events[1] == Passages([])
    assert events[-1].answer.refused


# -- errors -------------------------------------------------------------------------------------------------------
def test_empty_question_is_a_query_error() -> None:
    pipe, _ = make([])
    with pytest.raises(QueryError):
        pipe.ask("   ")


def test_question_too_long_is_a_query_error() -> None:
    pipe, llm = make([])
    with pytest.raises(QueryError, match="characters"):
        pipe.ask("How does regularization work? " * 100)
    assert llm.calls == [] and llm.judged == []


# -- chat -----------------------------------------------------------------------------------------------------------
def test_chat_condenses_follow_ups_through_the_same_steps() -> None:
    pipe, llm = make([
        "L1 drives some weights to zero [1].",
        "Standalone question: How is L1 regularization different from L2 regularization?",
        "L2 shrinks all weights smoothly [2].",
    ], answering=("drives some weights", "shrinks all weights"), max_quotes=2, quote_margin=10.0)
    chat = ChatSession(pipe)
    first = chat.ask("What does L1 regularization do to the weights?")
    assert len(llm.calls) == 1  # the first turn is not condensed
    second = chat.ask("and how is that different from L2?")
    condense = llm.calls[1]
    assert condense["max_tokens"] <= 64
    prompt = condense["messages"][-1]["content"]
    assert "What does L1 regularization do to the weights?" in prompt and "drives some weights to zero" in prompt
    assert "> " not in prompt  # quotes are history text, not Markdown block quotes
    assert pipe.retriever.queries == ["What does L1 regularization do to the weights?",  # type: ignore[attr-defined]
                                      "How is L1 regularization different from L2 regularization?"]
    assert second.question == "How is L1 regularization different from L2 regularization?"
    assert not first.refused and not second.refused and second.quotes and "condense_s" in second.timings


def test_chat_history_is_bounded() -> None:
    pipe, llm = make()
    chat = ChatSession(pipe, history_turns=2)
    llm.queue("L1 drives some weights to zero [1].")
    chat.ask("What does L1 do to weights?")
    for i in range(3):
        llm.queue(f"What does L1 variant {i} do to weights?", "L1 drives some weights to zero [1].")
        chat.ask(f"and variant {i}?")
    assert len(chat.history) == 2
    assert chat.history[-1].standalone == "What does L1 variant 2 do to weights?"


def test_chat_stream_announces_the_rewritten_question() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1].", "How does L1 compare to L2?",
                      "L1 drives some weights to zero [1]."])
    chat = ChatSession(pipe)
    list(chat.ask_stream("What does L1 do to the weights?"))
    events = list(chat.ask_stream("how does it compare to L2?"))
    assert events[0] == Condensed("How does L1 compare to L2?")
    assert isinstance(events[-1], Finished)


def test_clean_condensed_falls_back_on_garbage() -> None:
    assert clean_condensed('"What is L2?"\nextra', "x?") == "What is L2?"
    assert clean_condensed("", "orig?") == "orig?"


def test_warm_up_keeps_the_fixed_prefix_and_swallows_model_errors(tmp_path: Path) -> None:
    from rag.errors import ModelError
    from ui.service import StudyService

    llm = ScriptedLLM([])
    svc = StudyService(Settings(storage={"home": tmp_path}), llm=llm, retriever=FakeRetriever(), embedder=HashEmbedder())
    svc.warm_up()
    assert len(llm.kept) == 1 and llm.kept[0][0]["role"] == "system" and llm.kept[0][-1]["role"] == "assistant"

    class Broken(ScriptedLLM):
        def keep_prefix(self, messages: list[dict[str, str]]) -> int:
            raise ModelError("no model")

    StudyService(Settings(storage={"home": tmp_path}), llm=Broken([]), retriever=FakeRetriever(),
                 embedder=HashEmbedder()).warm_up()  # reported by the first real question, not here


def test_warm_up_with_search_opens_the_index_and_keyword_index_before_the_first_question(
        corpus_home: Path, embedder: Any, tmp_path: Path) -> None:
    from rag.retrieval import HybridRetriever
    from tests.helpers import MODELS_CACHE
    from ui.service import StudyService

    llm = ScriptedLLM([])
    svc = StudyService(Settings(storage={"home": corpus_home, "models_cache": MODELS_CACHE}), llm=llm,
                       embedder=embedder)
    svc.warm_up()  # the CLI's warm-up: the model only
    assert svc._retriever is None and len(llm.kept) == 1
    svc.warm_up(search=True)  # the web app's: one search over the real index
    retriever = svc._retriever
    assert isinstance(retriever, HybridRetriever) and retriever.version is not None and retriever.n_chunks > 0
    assert llm.calls == []  # the search asks the model nothing

    empty = StudyService(Settings(storage={"home": tmp_path}), llm=ScriptedLLM([]), embedder=HashEmbedder())
    empty.warm_up(search=True)  # nothing ingested yet: the first question says so, not the warm-up


# -- CLI ------------------------------------------------------------------------------------------------------------
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


def _scripted_service(replies: list[str], answering: tuple[str, ...] = ("drives some weights", "Dropout"),
                      similarity: float = 0.6) -> tuple[Any, ScriptedLLM]:
    """A service whose every unit judged to answer is quoted (up to three)."""
    from ui.service import StudyService

    llm = ScriptedLLM(replies, judge=reader(answering))
    settings = Settings(answer={"max_quotes": 3, "quote_margin": 10.0})
    return StudyService(settings, llm=llm, retriever=FakeRetriever(similarity), embedder=HashEmbedder()), llm


def test_cli_ask_prints_the_quotes_first_then_the_explanation_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service(["L1 drives some weights to zero [1] and dropout disables units [3]."])
    code, out, _ = run_cli(capsys, "ask", "-k", "3", "--max-tokens", "50",
                           "What do L1 and dropout do to the weights and units?", service=svc)
    assert code == 0 and llm.calls[0]["max_tokens"] == 50
    assert out.index("> " + TEXTS[0]) < out.index("L1 drives some weights to zero [1] and dropout")
    assert "[1] Doc 0 — Sec 0 (doc0.md)" in out and "[3] Doc 2 — Sec 2 (doc2.md, p. 3)" in out
    assert "[2] Doc 1" not in out


def test_cli_ask_names_the_terms_no_handbook_mentions(capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service([])
    code, out, _ = run_cli(capsys, "ask", "How does the Apriori algorithm compare with L1?", service=svc)
    assert code == 0 and llm.calls == []
    assert REFUSAL in out and "(No handbook mentions Apriori.)" in out


def test_cli_ask_json(capsys: pytest.CaptureFixture[str]) -> None:
    svc, llm = _scripted_service(["L1 drives some weights to zero [1]."], answering=("drives some weights",))
    code, out, _ = run_cli(capsys, "ask", "--json", "What does L1 do to the weights?", service=svc)
    assert code == 0
    d = json.loads(out)
    assert d["refused"] is False and d["quotes"][0]["text"] == TEXTS[0]
    assert d["answer"] == f"> {TEXTS[0]} [1]\n\nL1 drives some weights to zero [1]."
    assert d["citations"][0]["chunk_id"] == "c0" and d["timings"]["quotes_s"] > 0


def test_cli_chat_reads_piped_lines(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    svc, llm = _scripted_service(["L1 drives some weights to zero [1].", "How does dropout differ from L1?",
                                  "Dropout randomly disables units during training [3]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("What does L1 do?\n\nhow does dropout differ from it?\nexit\nx\n"))
    code, out, _ = run_cli(capsys, "chat", service=svc)
    assert code == 0 and len(llm.calls) == 3
    assert "L1 drives some weights to zero [1]." in out and "Dropout randomly disables units during training [3]." in out
    assert "How does dropout differ from L1?" in out


def test_cli_chat_is_saved_and_resumed_with_its_history(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io

    svc, llm = _scripted_service(["L1 drives some weights to zero [1]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("What does L1 do?\n"))
    assert run_cli(capsys, "chat", "--user", "ann", service=svc)[0] == 0
    [conv] = svc.study.conversations("ann")
    assert conv["title"] == "What does L1 do?" and svc.study.conversations("bob") == []
    # a new process: the follow-up is condensed against the saved turn
    svc2, llm2 = _scripted_service(["How does dropout differ from L1?",
                                    "Dropout randomly disables units during training [3]."])
    monkeypatch.setattr("sys.stdin", io.StringIO("and how does dropout differ from it?\n"))
    code, out, _ = run_cli(capsys, "chat", "--user", "ann", "--resume", service=svc2)
    assert code == 0 and "resuming “What does L1 do?”, 1 turns" in out
    assert "What does L1 do?" in llm2.calls[0]["messages"][-1]["content"]  # the condense prompt holds the history
    turns = svc2.study.conversation("ann", conv["id"])
    assert turns is not None and [t["question"] for t in turns] == ["What does L1 do?",
                                                                    "and how does dropout differ from it?"]
    assert turns[1]["standalone"] == "How does dropout differ from L1?"
    assert turns[1]["explanation"] == "Dropout randomly disables units during training [3]."
    assert 3 in [q["citation"]["n"] for q in turns[1]["quotes"]]
    # One saved-turn format: the Chat tab reopens a CLI conversation with its sources, the cited ones marked.
    from ui.tab_chat import SAVED_KEYS

    assert set(turns[0]) <= set(SAVED_KEYS) and turns[0]["sources"]
    assert any(s["cited"] and s["n"] == 1 for s in turns[0]["sources"])
    assert all({"n", "chunk_id", "source", "text", "cited"} <= set(s) for s in turns[0]["sources"])
