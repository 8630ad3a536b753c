"""Evidence-first answers (scripted model): the lead, the evidence prompt, per-sentence verification."""

from __future__ import annotations

import json
from typing import Any

from rag.answer import AnswerPipeline
from rag.citations import markers_in_code
from rag.events import Delta, Finished, LeadReady, Passages
from rag.prompts import REFUSAL
from rag.settings import Settings
from rag.verify import Verifier
from tests.fakes import TEXTS, FakeRetriever, HashEmbedder, ScriptedLLM

YES, NO = "Yes.", "No."


def make(replies: list[str], similarity: float = 0.6, texts: list[str] = TEXTS, **answer: Any
         ) -> tuple[AnswerPipeline, ScriptedLLM]:
    llm = ScriptedLLM(replies)
    settings = Settings(answer={"evidence_first": True, **answer})
    return AnswerPipeline(FakeRetriever(similarity, texts), llm, settings, embedder=HashEmbedder()), llm


def test_the_lead_comes_before_the_model_and_is_the_handbooks_own_words() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1].", YES])
    events = list(pipe.stream("Which regularization drives weights to zero?"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[:2] == ["Passages", "LeadReady"] and kinds[-1] == "Finished"
    lead = next(e for e in events if isinstance(e, LeadReady))
    assert lead.lead.text in TEXTS[0] and "drives some weights to zero" in lead.lead.text
    assert lead.lead.citations[0].chunk_id == "c0" and lead.seconds >= 0
    first_delta = kinds.index("Delta")
    assert first_delta > kinds.index("LeadReady")
    answer = events[-1].answer  # type: ignore[union-attr]
    d = answer.to_json()
    assert d["lead"]["text"] == lead.lead.text and d["lead"]["citations"][0]["n"] == 1
    assert set(d["lead"]["citations"][0]) == {"n", "chunk_id", "source", "title", "section", "page", "text"}
    assert isinstance(d["timings"]["lead_s"], float) and d["timings"]["lead_s"] <= d["timings"]["total_s"]
    json.dumps(d)
    assert len(llm.calls) == 2  # the answer, then one check of its one sentence


def test_the_prompt_holds_sentences_not_whole_passages() -> None:
    long_texts = [TEXTS[0] + " " + " ".join(f"Filler sentence {i} is about gardening and soil." for i in range(40)),
                  *TEXTS[1:]]
    pipe, llm = make(["L1 drives some weights to zero [1].", YES], texts=long_texts)
    pipe.ask("Which regularization drives weights to zero?")
    prompt = llm.calls[0]["messages"][-1]["content"]
    assert "drives some weights to zero" in prompt and prompt.count("gardening") < 5


def test_an_unsupported_sentence_is_dropped_and_the_rest_kept() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]. L1 also adds the squared weights to the loss [1].",
                      YES, NO])
    a = pipe.ask("Which regularization drives weights to zero?")
    assert not a.refused and a.dropped == 1
    assert a.answer == "L1 drives some weights to zero [1]."
    assert a.verification is not None and [c.reason for c in a.verification.checks] == ["model", "model"]
    check_prompt = llm.calls[2]["messages"][-1]["content"]
    assert "squared weights" in check_prompt and "zero" in check_prompt  # the claim and the passage text quoted
    assert llm.calls[2]["messages"][:-1] == llm.calls[0]["messages"][:-1]  # after the cached fixed prefix


def test_nothing_supported_is_a_refusal_without_a_lead() -> None:
    pipe, _ = make(["Adam was published in 2014 by Kingma [1].", NO])
    a = pipe.ask("Which regularization drives weights to zero?")
    assert a.refused and a.refusal_reason == "unsupported" and a.lead is None and a.answer == REFUSAL
    assert a.to_json()["lead"] is None


def test_numbers_terms_and_words_no_passage_states_fail_without_asking_the_model() -> None:
    pipe, llm = make(["L1 drives some weights to zero [1]. Use a strength of 0.01 for it [1]. "
                      "Export it with ONNX afterwards [1]. It also makes training much slower overall [1]. "
                      "Regularization drives weights to zero [1].", YES])
    a = pipe.ask("Which regularization drives weights to zero?")
    assert a.verification is not None
    assert [c.reason for c in a.verification.checks] == ["model", "number", "term", "memory", "restates"]
    assert a.answer == "L1 drives some weights to zero [1]." and len(llm.calls) == 2


def test_an_uncited_sentence_gets_the_marker_of_the_passage_that_supports_it() -> None:
    pipe, _ = make(["Dropout randomly disables units during training.", YES])
    a = pipe.ask("What does dropout do?")
    assert not a.refused and not a.uncited
    assert [c.chunk_id for c in a.citations] == ["c2"] and a.answer.endswith(f"[{a.citations[0].n}].")


def test_markers_inside_code_are_moved_out() -> None:
    texts = ["Consider using np.argsort() to find the indices of the closest points for a k-NN vote.", *TEXTS]
    pipe, _ = make(["Find the closest points' indices with `np [1].argsort()` for the vote.", YES], texts=texts)
    a = pipe.ask("How do I find the nearest points for k-NN in numpy?")
    assert not a.refused, a.verification
    assert markers_in_code(a.answer) == 0 and "`np.argsort()`" in a.answer


def test_the_models_refusal_has_no_lead_and_streams_the_refusal() -> None:
    pipe, _ = make([REFUSAL, REFUSAL])
    events = list(pipe.stream("What is the default beta1 of adam?"))
    final = events[-1]
    assert isinstance(final, Finished) and final.answer.refused and final.answer.lead is None
    assert final.answer.refusal_reason == "model"
    assert any(isinstance(e, LeadReady) for e in events)  # shown while waiting, withdrawn by the refusal
    assert "".join(e.text for e in events if isinstance(e, Delta)) == REFUSAL


def test_weak_evidence_refuses_before_the_lead() -> None:
    pipe, llm = make([], similarity=0.1)
    events = list(pipe.stream("What is the airspeed of an unladen swallow?"))
    assert not any(isinstance(e, LeadReady) for e in events) and llm.calls == []
    assert isinstance(events[0], Passages) and events[0].passages == []


def test_verifier_rules_alone_without_a_model() -> None:
    pipe, _ = make([])
    passages = pipe.selector.select("L1", FakeRetriever().retrieve("L1"), lambda t: len(t) // 4).passages
    ver = Verifier(None).verify("L1 drives some weights to zero [1]. It needs 42 epochs [1].", "", passages,
                                "What does L1 do?", None, None)
    assert [c.supported for c in ver.checks] == [True, False] and ver.text == "L1 drives some weights to zero [1]."


def test_cli_ask_prints_the_lead_first_and_json_carries_it(capsys) -> None:  # type: ignore[no-untyped-def]
    from ui.cli import main
    from ui.service import StudyService

    llm = ScriptedLLM(["L1 drives some weights to zero [1].", YES, "L1 drives some weights to zero [1].", YES])
    svc = StudyService(Settings(), llm=llm, retriever=FakeRetriever(), embedder=HashEmbedder())
    assert main(["ask", "Which regularization drives weights to zero?"], service=svc) == 0
    out = capsys.readouterr().out
    assert out.index("From the handbook") < out.index("L1 drives some weights to zero [1].\n")
    assert "Sources:" in out and "doc0.md" in out
    assert main(["ask", "--json", "Which regularization drives weights to zero?"], service=svc) == 0
    d = json.loads(capsys.readouterr().out)
    assert "drives some weights to zero" in d["lead"]["text"] and d["lead"]["citations"][0]["chunk_id"] == "c0"
    assert d["timings"]["lead_s"] is not None and d["dropped"] == 0
