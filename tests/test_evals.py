"""The eval suite without a real model: scripted judge replies through the real Ragas metrics, a fake
service, resumable runs, reports, comparisons and the retrieval baseline gate (on the real corpus)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from evals import check_baseline
from evals.cli import run_cli
from evals.gold import GoldItem
from evals.judge import (
    JudgeParseError,
    JudgeStats,
    RagasEmbeddings,
    RagasJudgeLLM,
    build_metrics,
    constrain_schema,
    metric_scope,
)
from evals.report import compare_runs, format_compare, load_results
from evals.runs import RunSpec, resolve_run_dir
from evals.scoring import aggregate, id_scores
from evals.suite import Suite
from rag.settings import Settings
from rag.types import Chunk, Passage
from tests.fakes import ScriptedLLM

# --------------------------------------------------------------------------------------------------
# judge: schemas and parsing
# --------------------------------------------------------------------------------------------------


def _ragas_output_models() -> list[type]:
    from ragas.metrics.collections.answer_relevancy.util import AnswerRelevanceOutput
    from ragas.metrics.collections.context_precision.util import ContextPrecisionOutput
    from ragas.metrics.collections.context_recall.util import ContextRecallOutput
    from ragas.metrics.collections.faithfulness.util import NLIStatementOutput, StatementGeneratorOutput

    return [StatementGeneratorOutput, NLIStatementOutput, ContextPrecisionOutput, ContextRecallOutput,
            AnswerRelevanceOutput]


def test_constrained_schemas_become_llama_cpp_grammars() -> None:
    """llama_cpp.server silently falls back to 'any JSON' when a schema does not convert: every schema the
    judge sends must convert, with the 0/1 verdicts as an enum."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    for model in _ragas_output_models():
        schema = constrain_schema(model.model_json_schema())
        gbnf = json_schema_to_gbnf(json.dumps(schema))
        assert "root ::=" in gbnf, model.__name__
    nli = constrain_schema(_ragas_output_models()[1].model_json_schema())
    verdict = nli["$defs"]["StatementFaithfulnessAnswer"]["properties"]["verdict"]
    assert verdict["enum"] == [0, 1]
    assert nli["properties"]["statements"]["maxItems"] >= 5
    # an empty classification list makes context recall NaN (0/0): the grammar must ask for at least one
    assert nli["properties"]["statements"]["minItems"] == 1
    recall = constrain_schema(_ragas_output_models()[3].model_json_schema())
    arrays = [p for p in recall["properties"].values() if p.get("type") == "array"]
    assert arrays and all(p["minItems"] == 1 for p in arrays)


def _judge(replies: list[Any]) -> tuple[RagasJudgeLLM, ScriptedLLM]:
    fake = ScriptedLLM(replies)
    return RagasJudgeLLM(fake, max_tokens=200, retries=1, stats=JudgeStats()), fake


def test_judge_parses_retries_and_counts_failures() -> None:
    from ragas.metrics.collections.context_precision.util import ContextPrecisionOutput

    judge, fake = _judge(['{"reason": "ok", "verdict": 1}', "not json", '{"reason": "x", "verdict": 0}',
                          "{", '{"verdict": 1}'])
    with metric_scope("context_precision"):
        assert judge.generate("p", ContextPrecisionOutput).verdict == 1
        assert judge.generate("p", ContextPrecisionOutput).verdict == 0  # second attempt recovers
        with pytest.raises(JudgeParseError):
            judge.generate("p", ContextPrecisionOutput)  # invalid twice: a counted failure, not a guess
    stats = judge.stats.snapshot()["context_precision"]
    assert stats["calls"] == 5 and stats["parse_failures"] == 3
    sent = fake.calls[0]
    assert sent["json_schema"]["properties"]["verdict"]["enum"] == [0, 1]  # constrained decoding asked for
    assert fake.calls[0]["temperature"] == 0.0 and fake.calls[2]["temperature"] > 0.0  # retry is sampled


def test_real_ragas_faithfulness_over_scripted_judge_without_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken

    def no_download(*a: Any, **k: Any) -> Any:
        raise AssertionError("tiktoken must not be used (it downloads its encodings)")

    monkeypatch.setattr(tiktoken, "get_encoding", no_download)
    monkeypatch.setattr(tiktoken, "encoding_for_model", no_download)
    judge, _ = _judge([
        '{"statements": ["MAE is recommended.", "MAE was invented in 1990."]}',
        '{"statements": [{"statement": "MAE is recommended.", "reason": "stated", "verdict": 1},'
        ' {"statement": "MAE was invented in 1990.", "reason": "not stated", "verdict": 0}]}',
    ])
    metric = build_metrics(judge, None, ["faithfulness"])["faithfulness"]
    with metric_scope("faithfulness"):
        result = asyncio.run(metric.ascore(user_input="q?", response="MAE. Invented 1990.",
                                           retrieved_contexts=["Use MAE for symmetric error penalties."]))
    assert result.value == pytest.approx(0.5)
    assert judge.stats.snapshot()["faithfulness"]["calls"] == 2


class _VecEmbedder:
    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, float(len(t) % 3)] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


def test_answer_relevancy_uses_local_embeddings() -> None:
    judge, _ = _judge(['{"question": "q?", "noncommittal": 0}'] * 2)
    emb = RagasEmbeddings(_VecEmbedder())
    metric = build_metrics(judge, emb, ["answer_relevancy"], strictness=2)["answer_relevancy"]
    result = asyncio.run(metric.ascore(user_input="q?", response="an answer"))
    assert 0.99 <= result.value <= 1.0


# --------------------------------------------------------------------------------------------------
# the suite over a fake service
# --------------------------------------------------------------------------------------------------


def _chunk(cid: str, text: str, source: str = "a.md", ordinal: int = 0) -> Chunk:
    return Chunk(id=cid, text=text, source=source, title="A", section="S", page=None, start=0, end=len(text),
                 content_hash=cid, ordinal=ordinal)


CHUNKS = [
    _chunk("c1", "Use MAE for symmetric error penalties in forecasting.", ordinal=0),
    _chunk("c2", "Bayesian optimization for learning rates beats grid search.", ordinal=1),
    _chunk("c3", "Cats are not covered here.", source="b.md"),
]
ITEMS = [
    GoldItem("t1", "Which error measure for symmetric penalties?", True, "a.md", ["Use MAE for symmetric"],
             "MAE, for symmetric error penalties."),
    GoldItem("t2", "How to pick a learning rate?", True, "a.md", ["Bayesian optimization for learning rates"],
             "Bayesian optimization."),
    GoldItem("t3", "What is the capital of Peru?", False, None, [], None),
]


class FakeAnswer:
    def __init__(self, question: str, text: str, refused: bool, passages: list[Passage], cite: bool) -> None:
        self.question, self.answer, self.refused, self.passages = question, text, refused, passages
        self.cite = cite

    def to_json(self) -> dict[str, Any]:
        cites = []
        if self.cite and self.passages:
            c = self.passages[0].chunk
            cites = [{"n": 1, "chunk_id": c.id, "source": c.source, "title": c.title, "section": c.section,
                      "page": c.page, "text": c.text}]
        return {"question": self.question, "answer": self.answer, "refused": self.refused,
                "citations": cites, "timings": {"total_s": 0.01}}


class FakeIndex:
    def all_chunks(self) -> list[Chunk]:
        return list(CHUNKS)


class FakeRetriever:
    def retrieve(self, question: str, k: int, mode: str = "hybrid") -> list[Passage]:
        if "learning rate" in question:
            order = [CHUNKS[2], CHUNKS[1], CHUNKS[0]]
        else:
            order = [CHUNKS[0], CHUNKS[2], CHUNKS[1]]
        return [Passage(c, 1.0 / (n + 1)) for n, c in enumerate(order[:k])]


class FakeService:
    def __init__(self, settings: Settings, fail_on: str | None = None) -> None:
        self.settings = settings
        self.index = FakeIndex()
        self.retriever = FakeRetriever()
        self.embedder = _VecEmbedder()
        self.asked: list[str] = []
        self.fail_on = fail_on

    def ask(self, question: str) -> FakeAnswer:
        if self.fail_on and self.fail_on in question:
            raise KeyboardInterrupt  # a killed run
        self.asked.append(question)
        passages = self.retriever.retrieve(question, 2)
        if "Peru" in question:
            return FakeAnswer(question, "I cannot find this in the handbooks.", True, [], False)
        return FakeAnswer(question, "MAE [1].", False, passages, cite=True)


FAITHFUL_REPLIES = ['{"statements": ["MAE is used."]}',
                    '{"statements": [{"statement": "MAE is used.", "reason": "r", "verdict": 1}]}']


@contextlib.contextmanager
def scripted_judge_factory(replies: list[Any]):
    judge, _ = _judge(replies)

    @contextlib.contextmanager
    def factory(run_dir: Path):
        yield judge

    yield factory, judge


def test_suite_scores_reports_and_resumes(tmp_path: Path) -> None:
    settings = Settings(storage={"home": tmp_path / "home"})
    svc = FakeService(settings, fail_on="learning rate")
    run_dir = tmp_path / "runs" / "r1"
    spec = RunSpec(list(ITEMS), ["faithfulness"], run_dir)
    with scripted_judge_factory([]) as (factory, judge):
        suite = Suite(svc, spec, judge_factory=factory, log=lambda m: None)
        with pytest.raises(KeyboardInterrupt):  # killed while answering t2 (all answers come before scores)
            suite.run()
    item1 = json.loads((run_dir / "items" / "t1.json").read_text())
    assert item1["answer"]["answer"] == "MAE [1]." and "faithfulness" not in item1["scores"]
    assert not (run_dir / "results.json").exists()

    # rerun: t1 is not asked again; t1 is judged, then t2, whose judge reply is invalid twice (a counted failure)
    svc2 = FakeService(settings)
    with scripted_judge_factory([*FAITHFUL_REPLIES, '{"statements": ["x"]}', "garbage", "garbage"]) as (factory,
                                                                                                       judge):
        results = Suite(svc2, RunSpec(list(ITEMS), ["faithfulness"], run_dir), judge_factory=factory,
                        log=lambda m: None).run()
    assert [q for q in svc2.asked] == [ITEMS[1].question, ITEMS[2].question]
    item1 = json.loads((run_dir / "items" / "t1.json").read_text())
    assert item1["scores"]["faithfulness"]["value"] == 1.0
    trace = item1["scores"]["faithfulness"]["trace"]  # the judge's raw replies, kept for the report reader
    assert [t["output"] for t in trace] == ["StatementGeneratorOutput", "NLIStatementOutput"]
    m, d = results["metrics"], results["detail"]
    assert m["faithfulness"] == 1.0  # the mean of what was scored...
    assert d["faithfulness"]["n_scored"] == 1 and d["faithfulness"]["n_failed"] == 1  # ...and what was not
    assert d["faithfulness"]["n_skipped"] == 1  # the refused unanswerable item
    assert d["faithfulness"]["parse_failures"] == 2
    assert m["refusal_rate"] == 1.0 and m["wrong_refusal_rate"] == 0.0
    assert m["hit@1"] == 0.5 and m["hit@5"] == 1.0 and m["mrr@5"] == 0.75
    assert m["id_context_precision"] == 0.5 and m["id_context_recall"] == 1.0
    assert m["citation_precision"] == 0.5  # t2 cites the off-topic passage it was given first
    for name in ("results.json", "report.md", "charts/metrics.png", "charts/per_question.png"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    assert "| faithfulness | 1.000 | 1 | 1 | 1 | 2 |" in report
    assert "t2: JudgeParseError" in report


def test_a_lost_judge_stops_the_run_and_resume_rescores(tmp_path: Path) -> None:
    """A judge server that dies (OOM-killed, say) must stop the run: caching 'cannot reach' as the score of
    every remaining question would silently empty the report. Resuming scores those questions."""
    from rag.errors import BackendUnreachableError

    settings = Settings(storage={"home": tmp_path / "home"})
    run_dir = tmp_path / "runs" / "r1"
    gone = BackendUnreachableError("Cannot reach the model server at http://127.0.0.1:9/v1: start it.")
    with scripted_judge_factory([*FAITHFUL_REPLIES, gone]) as (factory, _):
        suite = Suite(FakeService(settings), RunSpec(list(ITEMS), ["faithfulness"], run_dir),
                      judge_factory=factory, log=lambda m: None)
        with pytest.raises(BackendUnreachableError, match="run the same `studybot eval` again to resume"):
            suite.run()
    assert json.loads((run_dir / "items" / "t1.json").read_text())["scores"]["faithfulness"]["value"] == 1.0
    t2 = json.loads((run_dir / "items" / "t2.json").read_text())
    assert "faithfulness" not in t2["scores"]  # not recorded as a failed score
    assert not (run_dir / "results.json").exists()
    # an item file written by an older version, with the unreachable judge recorded as its score
    t2["scores"]["faithfulness"] = {"value": None, "error": "BackendError: Cannot reach the model server at x"}
    (run_dir / "items" / "t2.json").write_text(json.dumps(t2))

    svc = FakeService(settings)
    with scripted_judge_factory(list(FAITHFUL_REPLIES)) as (factory, judge):
        results = Suite(svc, RunSpec(list(ITEMS), ["faithfulness"], run_dir), judge_factory=factory,
                        log=lambda m: None).run()
    assert svc.asked == []  # every answer was kept
    assert results["detail"]["faithfulness"]["n_scored"] == 2 and results["metrics"]["faithfulness"] == 1.0


def test_llm_metrics_skip_refusals_and_unanswerable() -> None:
    rec = {"answer": {"answer": "x", "refused": True, "passages": [{"id": "c1", "source": "a.md", "text": "t"}]}}
    from evals.scoring import llm_metric_inputs

    assert llm_metric_inputs(ITEMS[0], rec, "faithfulness") == "refused"
    assert llm_metric_inputs(ITEMS[0], rec, "answer_relevancy") == "refused"
    assert isinstance(llm_metric_inputs(ITEMS[0], rec, "context_recall"), dict)
    assert llm_metric_inputs(ITEMS[2], rec, "context_precision") == "unanswerable"


def test_id_scores_count_merged_chunks() -> None:
    rec = {"relevant_ids": ["c1"], "answer": {
        "passages": [{"id": "c1", "chunk_ids": ["c1", "c2"], "source": "a.md", "text": "..."}],
        "citations": [{"n": 1, "chunk_id": "c1"}]}}
    s = id_scores(ITEMS[0], rec)
    assert s["id_context_precision"]["value"] == 0.5
    assert s["id_context_recall"]["value"] == 1.0
    assert s["citation_precision"]["value"] == 1.0


def test_resolve_run_dir_continues_latest_unfinished(tmp_path: Path) -> None:
    base = tmp_path / "evals"
    first, resumed = resolve_run_dir(base, ITEMS, ["faithfulness"], None)
    assert not resumed
    first.mkdir(parents=True)
    (first / "run.json").write_text(json.dumps({"items": [i.id for i in ITEMS], "metrics": ["faithfulness"]}))
    assert resolve_run_dir(base, ITEMS, ["faithfulness"], None) == (first, True)
    assert resolve_run_dir(base, ITEMS[:1], ["faithfulness"], None)[0] != first  # other questions
    assert resolve_run_dir(base, ITEMS, ["faithfulness"], None, new=True)[0] != first
    (first / "results.json").write_text("{}")
    assert resolve_run_dir(base, ITEMS, ["faithfulness"], None)[0] != first  # finished runs are not resumed


def _results(run_id: str, **metrics: float) -> dict[str, Any]:
    spec = RunSpec([], [], Path(run_id))
    r = aggregate([], {}, {"modes": {"hybrid": {"hit@5": metrics.get("hit@5", 0.9), "n": 0}}}, spec)
    r["metrics"].update(metrics)
    return r


def test_compare_runs_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, r in ((a, _results("a", faithfulness=0.5)), (b, _results("b", faithfulness=0.75, **{"hit@5": 0.8}))):
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
    diff = compare_runs(a, b)
    assert diff["metrics"]["faithfulness"]["delta"] == 0.25
    assert diff["metrics"]["hit@5"]["delta"] == pytest.approx(-0.1)
    assert "| hit@5 | 0.900 | 0.800 | -0.100 ↓ |" in format_compare(diff)

    from ui.cli import build_parser

    args = build_parser().parse_args(["eval", "--compare", str(a), str(b), "--json"])
    assert run_cli(args, FakeService(Settings(storage={"home": tmp_path})), []) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["faithfulness"]["b"] == 0.75


def test_cli_no_judge_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli import build_parser

    args = build_parser().parse_args(["eval", "--no-judge", "--json", "--out", str(tmp_path / "runs")])
    assert run_cli(args, FakeService(Settings(storage={"home": tmp_path})), list(ITEMS)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hit@5"] == 1.0 and out["refusal_rate"] == 1.0 and "faithfulness" not in out
    run_dir = Path(out["run_dir"])
    assert load_results(run_dir)["n_items"] == 3


def test_report_charts_against_previous_run(tmp_path: Path) -> None:
    from evals.report import write_report

    prev, cur = tmp_path / "20240101-000000", tmp_path / "20240102-000000"
    prev.mkdir()
    (prev / "results.json").write_text(json.dumps(_results(prev.name, faithfulness=0.4)))
    paths = write_report(cur, _results(cur.name, faithfulness=0.6), prev)
    assert paths["metrics"].stat().st_size > 5000
    assert "previous" in (cur / "report.md").read_text()


def test_judge_server_reports_a_bad_model(tmp_path: Path) -> None:
    from evals.judge import JudgeServer
    from rag.errors import BackendError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    server = JudgeServer(bad, model_alias="j", n_ctx=512, threads=1, log_path=tmp_path / "log.txt",
                         start_timeout=120)
    with pytest.raises(BackendError, match="exited while starting"):
        server.start()
    assert server.proc is None


# --------------------------------------------------------------------------------------------------
# the committed retrieval baseline
# --------------------------------------------------------------------------------------------------


def test_check_baseline_tolerance(tmp_path: Path) -> None:
    base = check_baseline.load_baseline()
    hyb = dict(base["modes"]["hybrid"])
    assert check_baseline.check(base, {"hybrid": {**hyb, "hit@5": hyb["hit@5"] - 0.015}}) == []
    fails = check_baseline.check(base, {"hybrid": {**hyb, "mrr@5": hyb["mrr@5"] - 0.03}})
    assert len(fails) == 1 and "mrr@5" in fails[0]
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(base["modes"]))
    bad.write_text(json.dumps({"hybrid": {**hyb, "hit@5": hyb["hit@5"] - 0.05}}))
    assert check_baseline.main(["--current", str(good)]) == 0
    assert check_baseline.main(["--current", str(bad)]) == 1
    assert check_baseline.main(["--current", str(tmp_path / "missing.json")]) == 2


def test_retrieval_holds_the_committed_baseline(corpus_service) -> None:
    """The CI gate on the real corpus: hybrid hit@5 / MRR@5 within 0.02 of evals/baseline.json."""
    from evals.gold import load_gold
    from evals.retrieval import evaluate_retrieval

    current = evaluate_retrieval(corpus_service.retriever, load_gold(), modes=("hybrid",))
    baseline = check_baseline.load_baseline()
    assert check_baseline.check(baseline, current) == [], check_baseline.format_check(baseline, current)


# --------------------------------------------------------------------------------------------------
# the UI tab
# --------------------------------------------------------------------------------------------------


def test_evals_tab_builds_and_lists_runs(tmp_path: Path) -> None:
    gr = pytest.importorskip("gradio")
    from ui import tab_evals

    svc = FakeService(Settings(storage={"home": tmp_path / "home"}))
    run = svc.settings.storage.evals_dir / "20240101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "results.json").write_text(json.dumps(_results(run.name, faithfulness=0.5)))
    from evals.report import write_report

    write_report(run, load_results(run))
    with gr.Blocks():
        tab = tab_evals.build_evals_tab(svc)
    assert tab is not None
    md, images, choices = tab_evals.latest_report(svc.settings)
    assert "faithfulness" in md and len(images) == 1  # no per-question data: no distribution chart

    # a run from the tab (no judge) writes a new report
    outs = list(tab_evals.run_eval(svc, 3, "none", items=list(ITEMS)))
    assert "hit@5" in outs[-1][1] and len(outs[-1][2]) == 2
    assert argparse  # keep the import used
