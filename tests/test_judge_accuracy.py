"""How far to trust a faithfulness judge (evals/judge_accuracy.py), and the report that says so: the accuracy
computation on a scripted judge, the fixed split by question, thresholds from the tune half only, the model's
readers on a scripted model, `studybot eval --judge-accuracy` on a tiny claims file of this test's own, the
sentence metric and the report's drill-down through the real answer pipeline (scripted model), and
`--compare` naming the questions that changed. No real model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals import judge_accuracy as ja
from evals.gold import GoldItem
from evals.judge_accuracy import Claim, Method
from evals.runs import RunSpec
from evals.sentences import DEFAULT_METHOD, SENTENCE_METRIC, answer_sentences, judge_answer
from evals.suite import Suite
from rag.answer import AnswerPipeline
from rag.settings import Settings
from tests.fakes import TEXTS, FakeRetriever, HashEmbedder, ScriptedLLM, reader


def claim(cid: str, stated: bool, qid: str, sentence: str = "s", passage: str = "p", question: str = "q?") -> Claim:
    return Claim(id=cid, question=question, sentence=sentence, passage=passage, stated=stated, question_id=qid)


# --------------------------------------------------------------------------------------------------
# the metrics, by a hand-computed example
# --------------------------------------------------------------------------------------------------


def test_confusion_balanced_accuracy_precision_recall_by_hand() -> None:
    # readers: stated, stated, stated, not, not; the judge: stated, NOT, stated, not, STATED
    stated = [True, True, True, False, False]
    judged = [True, False, True, False, True]
    conf = ja.confusion(stated, judged)
    assert (conf.tp, conf.fp, conf.tn, conf.fn) == (1, 1, 2, 1)  # "not stated" is the positive class
    s = conf.scores()
    assert s["recall_not_stated"] == 0.5  # 1 of the 2 not-stated claims caught
    assert s["recall_stated"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-4)  # 0.5833
    assert s["precision_not_stated"] == 0.5  # of 2 "not stated" verdicts, 1 right
    assert s["accuracy"] == 0.6
    # a judge that says "stated" to everything: balanced accuracy 0.5 whatever the mix, no precision on "not"
    lazy = ja.confusion(stated, [True] * 5).scores()
    assert lazy["balanced_accuracy"] == 0.5 and lazy["precision_not_stated"] is None
    assert lazy["recall_not_stated"] == 0.0
    # one verdict only: no balanced accuracy (it needs both)
    assert ja.confusion([True, True], [True, False]).scores()["balanced_accuracy"] is None


# --------------------------------------------------------------------------------------------------
# the split
# --------------------------------------------------------------------------------------------------


def test_split_is_fixed_and_grouped_by_question() -> None:
    claims = [claim(f"c{q}-{k}", k % 2 == 0, f"q{q}") for q in range(40) for k in range(1 + q % 3)]
    halves = ja.split(claims)
    assert len(halves["tune"]) + len(halves["test"]) == len(claims)
    assert halves["tune"] and halves["test"]
    questions = {h: {c.question_id for c in cs} for h, cs in halves.items()}
    assert not questions["tune"] & questions["test"]  # no question in both halves
    # deterministic: the same halves in another order, another process, another machine (a hash, no seed)
    assert ja.split(list(reversed(claims)))["tune"] == list(reversed(halves["tune"]))
    assert [ja.half_of(q) for q in ("g01", "g03", "q1", "q3")] == ["test", "tune", "tune", "test"]  # pinned
    summary = ja.split_summary(claims)
    assert summary["tune"]["questions"] == sorted(questions["tune"]) and summary["rule"] == ja.SPLIT_RULE
    # --limit: a fixed sample, from both halves
    picked = ja.sample(claims, 10)
    assert len(picked) == 10 and picked == ja.sample(list(claims), 10)
    assert {c.half for c in picked} == {"tune", "test"}
    assert sum(c.half == "tune" for c in picked) == 5


# --------------------------------------------------------------------------------------------------
# thresholds: chosen on the tune half only
# --------------------------------------------------------------------------------------------------


def _halves(n: int = 60) -> tuple[list[str], list[str]]:
    qs = [f"q{i}" for i in range(n)]
    return [q for q in qs if ja.half_of(q) == "tune"], [q for q in qs if ja.half_of(q) == "test"]


def test_threshold_is_chosen_on_tune_and_reported_on_test() -> None:
    tune_q, test_q = _halves()
    tune = [(2.0, True), (1.5, True), (1.0, True), (-1.0, False), (0.2, False)]
    test = [(0.5, True), (3.0, True), (-2.0, False), (0.55, False)]
    claims, values = [], {}
    for i, (v, s) in enumerate(tune):
        claims.append(claim(f"t{i}", s, tune_q[i]))
        values[f"t{i}"] = v
    for i, (v, s) in enumerate(test):
        claims.append(claim(f"x{i}", s, test_q[i]))
        values[f"x{i}"] = v
    assert ja.choose_threshold([v for v, _ in tune], [s for _, s in tune]) == 0.6  # the one that separates tune
    method = Method("scripted", "a scripted judge", lambda c: values[c.id])
    readings = ja.read_all(method, claims)
    fig = ja.evaluate(method, claims, readings)
    assert fig["tuned"] and fig["threshold"] == 0.6
    assert fig["tune"]["balanced_accuracy"] == 1.0
    # on test at 0.6: stated 0.5 missed (fp), 3.0 kept; both not-stated caught: (2/2 + 1/2) / 2
    assert fig["test"]["balanced_accuracy"] == 0.75
    assert fig["test"]["precision_not_stated"] == pytest.approx(2 / 3, abs=1e-4)
    assert fig["test"]["recall_not_stated"] == 1.0
    # the test half's readings never move the threshold
    for cid in ("x0", "x1", "x2", "x3"):
        values[cid] = -values[cid] * 7
    assert ja.evaluate(method, claims, ja.read_all(method, claims))["threshold"] == 0.6
    # a method as shipped keeps its threshold
    fixed = Method("fixed", "as shipped", lambda c: values[c.id], threshold=1.2)
    assert ja.evaluate(fixed, claims, readings)["threshold"] == 1.2 and not ja.evaluate(fixed, claims, readings)["tuned"]


def test_the_share_of_stated_sentences_is_compared_with_the_readers_answer_by_answer() -> None:
    # two answers (questions): q1's three sentences, two stated, judged all stated; q2's two, one stated,
    # judged one stated but the wrong one (balanced accuracy is hurt; the share is not)
    claims = [claim("a", True, "q1"), claim("b", True, "q1"), claim("c", False, "q1"),
              claim("d", True, "q2"), claim("e", False, "q2")]
    share = ja.share_agreement(claims, [True, True, True, False, True])
    assert share["share_reader"] == 0.6 and share["share_judged"] == 0.8 and share["share_bias"] == 0.2
    assert share["share_error"] == pytest.approx((abs(2 / 3 - 1) + 0) / 2, abs=1e-4) and share["questions"] == 2
    assert ja.share_agreement([], [])["share_error"] is None
    with pytest.raises(ValueError):
        ja.share_agreement(claims, [True])


def test_rescore_computes_the_figures_again_from_the_saved_readings() -> None:
    tune_q, test_q = _halves()
    claims = [claim("t0", True, tune_q[0]), claim("t1", False, tune_q[1]), claim("x0", True, test_q[0]),
              claim("x1", False, test_q[1])]
    values = {"t0": 2.0, "t1": -1.0, "x0": 1.0, "x1": 0.9}
    tuned = Method("tuned", "a tuned judge", lambda c: values[c.id])
    fixed = Method("fixed", "as shipped", lambda c: values[c.id], threshold=0.95)
    result = {"claims": {"n": 4}, "methods": {}}
    for m in (tuned, fixed):
        fig = ja.evaluate(m, claims, ja.read_all(m, claims))
        for half in ja.HALVES:  # as saved before the share figures existed
            fig[half] = {k: v for k, v in fig[half].items() if not k.startswith("share") and k != "questions"}
        fig["seconds_per_claim"], fig["measured"] = 7.5, "2026-12-05 23:01"
        result["methods"][m.name] = fig
    again = ja.rescore(result, claims)
    t, f = again["methods"]["tuned"], again["methods"]["fixed"]
    assert t["threshold"] == result["methods"]["tuned"]["threshold"] and t["tuned"]
    assert f["threshold"] == 0.95 and not f["tuned"]
    assert f["test"]["share_judged"] == 0.5 and f["test"]["share_bias"] == 0.0 and f["test"]["balanced_accuracy"] == 1.0
    assert t["seconds_per_claim"] == 7.5 and t["measured"] == "2026-12-05 23:01"  # the reading's facts are kept
    assert ja.rescore(result, claims[:2])["methods"]["fixed"]["n_read"] == 2  # claims gone: readings dropped


def test_a_second_readers_verdicts_are_scored_like_a_method_on_the_claims_they_cover(tmp_path: Path) -> None:
    tune_q, test_q = _halves()
    claims = [claim("x0", True, test_q[0], "A is B."), claim("x1", False, test_q[0], "A is C."),
              claim("x2", True, test_q[1], "D is E."), claim("x3", False, test_q[1], "D is F."),
              claim("t0", True, tune_q[0], "G is H.")]
    path = tmp_path / "second.jsonl"
    rows = [("x0", "A is B.", "stated"), ("x1", "A is C.", "stated"), ("x2", "D is E.", "stated"),
            ("x3", "D is F.", "not_stated"), ("t0", "G is H, edited since.", "stated")]
    path.write_text("\n".join(json.dumps({"id": i, "sentence": s, "verdict": v, "why": ""}) for i, s, v in rows) + "\n",
                    encoding="utf-8")
    reader = ja.second_reader(claims, path)
    assert reader is not None and reader["n_read"] == 4  # t0's sentence changed: left out
    test = reader["test"]
    # not stated x1, x3: the reader catches x3 only; stated x0, x2: both kept -> BA (1/2 + 1) / 2
    assert test["agree"] == 3 and test["tp"] == 1 and test["fn"] == 1 and test["balanced_accuracy"] == 0.75
    assert test["share_bias"] == 0.25 and reader["tune"]["n"] == 0
    table = ja.format_table({"methods": {}, "second_reader": reader})
    assert "| a second reader, blind to the labels and the checkers (`second_reader`) | 0.75 |" in table
    assert "4 (agrees on 3)" in table

    result = {"claims": {"n": 5}, "methods": {}}
    assert ja.rescore(result, claims, path)["second_reader"]["test"]["agree"] == 3
    assert ja.second_reader(claims, tmp_path / "none.jsonl") is None
    assert ja.second_reader([claim("y", True, "q", "other")], path) is None  # covers none of these claims
    path.write_text('{"id": "x0", "sentence": "A is B.", "verdict": "maybe"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="second.jsonl:1"):
        ja.second_reader(claims, path)


def test_the_projects_second_reader_covers_the_held_out_half_it_was_given() -> None:
    claims = ja.load_claims()
    reader = ja.second_reader(claims)
    assert reader is not None and reader["n_read"] == sum(c.half == "test" for c in claims)


def test_failed_readings_are_counted_not_scored() -> None:
    tune_q, test_q = _halves()
    claims = [claim("a", True, tune_q[0]), claim("b", False, tune_q[1]), claim("c", True, test_q[0]),
              claim("d", False, test_q[1])]

    def read(c: Claim) -> float:
        if c.id == "d":
            raise ValueError("the judge returned no valid JSON")
        return 1.0 if c.stated else 0.0

    fig = ja.evaluate(Method("m", "m", read), claims, ja.read_all(Method("m", "m", read), claims))
    assert fig["n_failed"] == 1 and fig["test"]["n"] == 1 and "d" in fig["errors"]
    assert fig["readings"]["d"] is None


def test_merge_keeps_other_methods_of_the_same_claims(tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    a = {"claims": {"sha256": "x"}, "methods": {"ragas": {"test": {"balanced_accuracy": 0.6}}}}
    b = {"claims": {"sha256": "x"}, "methods": {"yesno": {"test": {"balanced_accuracy": 0.8}, "label": "y"}}}
    ja.save_result(a, out)
    merged = ja.save_result(b, out)
    assert set(merged["methods"]) == {"ragas", "yesno"}
    assert ja.accuracy_of("yesno", merged)["balanced_accuracy"] == 0.8 and ja.accuracy_of("nli", merged) is None
    other = ja.save_result({"claims": {"sha256": "y"}, "methods": {"nli": {}}}, out)
    assert set(other["methods"]) == {"nli"}  # another claims file: the old figures do not describe it


# --------------------------------------------------------------------------------------------------
# the model's readers, on a scripted model
# --------------------------------------------------------------------------------------------------

PASSAGE = TEXTS[0]  # "L1 regularization adds the absolute values of the weights to the loss and drives ..."


def scripted_model(check: dict[str, float], nli: float = 1.0, adds: float = -1.0) -> ScriptedLLM:
    """yes/no log-odds by prompt: the check prompt by the sentence's first word, the bare NLI and 'adds
    anything?' prompts fixed."""

    def judge(messages: list[dict[str, str]]) -> float:
        content = messages[-1]["content"]
        if "Is every part of the statement stated" in content:
            return nli
        if "Does the statement add" in content:
            return adds
        sentence = content.split("Check. Sentence:", 1)[1].split()[0]
        return check[sentence]

    return ScriptedLLM(judge=judge)


def test_model_readers_share_one_call_and_the_verifier_keeps_its_shipped_threshold() -> None:
    llm = scripted_model({"L1": 0.5, "Weights": 3.0})
    readers = ja.ModelReaders(Settings(), llm)
    m = readers.methods()
    weak = claim("a", True, "q1", "L1 regularization drives some weights to zero [1].", PASSAGE,
                 "What does L1 do?")
    assert m["yesno"].read(weak) == 0.5
    assert m["verifier"].read(weak) == 0.0  # 0.5 < verify_min_logodds 0.75: as in production, not tuned
    assert m["rules_yesno"].read(weak) == 0.5
    assert m["rules"].read(weak) == 1.0
    assert m["vote"].read(weak) == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    check_calls = [j for j in llm.judged if "Check. Sentence:" in j[-1]["content"]]
    assert len(check_calls) == 1  # yesno, verifier, rules_yesno and vote read the check prompt once
    assert "<excerpt id=\"1\"" in check_calls[0][-1]["content"] and "[1]" not in check_calls[0][-1]["content"].split(
        "Check. Sentence:")[1]  # the claim's passage as excerpt [1]; the marker stripped, as the Verifier does
    # a number the passage does not hold fails the rules: the model is not asked by the Verifier
    memory = claim("b", False, "q1", "Weights shrink by 0.9 each step [1].", PASSAGE, "What does L1 do?")
    assert m["rules"].read(memory) == 0.0 and m["verifier"].read(memory) == 0.0
    assert m["rules_yesno"].read(memory) == ja.RULES_FAIL
    assert m["yesno"].read(memory) == 3.0  # the model alone is fooled


def test_readings_are_kept_on_disk_for_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    first = scripted_model({"L1": 0.5})
    weak = claim("a", True, "q1", "L1 regularization drives some weights to zero [1].", PASSAGE, "What does L1 do?")
    assert ja.ModelReaders(Settings(), first, ja.ReadingCache(path)).methods()["vote"].read(weak) == pytest.approx(
        (0.5 + 1.0 + 1.0) / 3)
    assert len(first.judged) == 3 and len(path.read_text().splitlines()) == 3
    again = scripted_model({"L1": -9.0}, nli=-9.0, adds=9.0)  # a stopped run resumed: nothing read again
    readers = ja.ModelReaders(Settings(), again, ja.ReadingCache(path))
    assert readers.methods()["yesno"].read(weak) == 0.5 and readers.methods()["nli"].read(weak) == 1.0
    assert again.judged == [] and readers.cost() >= 0.0


def test_focus_pmi_adds_the_least_supported_tokens_log_prob_difference(tmp_path: Path) -> None:
    # a scripted model whose tokens read like a student's memory: a word in the prompt's passage is likely
    # (-0.5), any other word unlikely (-4.0); with "(none)" as the passage every word is unlikely
    def tokens(messages: list[dict[str, str]], text: str) -> list[float]:
        passage = set(messages[-1]["content"].split("\n\nQuestion:")[0].lower().replace(".", " ").split())
        return [-0.5 if w.strip(".,").lower() in passage else -4.0 for w in text.split()]

    llm = ScriptedLLM(judge=lambda m: 2.0, tokens=tokens)
    readers = ja.ModelReaders(Settings(), llm, ja.ReadingCache(tmp_path / "cache.jsonl"))
    m = readers.methods()["focus_pmi"]
    stated = claim("a", True, "q1", "L1 regularization drives some weights to zero [1].", PASSAGE, "What does L1 do?")
    swapped = claim("b", False, "q1", "L1 regularization drives some weights to one [1].", PASSAGE, "What does L1 do?")
    # every word of the stated sentence is in the passage: each token gains 3.5 with it, the least too
    assert m.read(stated) == pytest.approx(2.0 + ja.PMI_WEIGHT * 3.5)
    # "one" is not: it gains nothing, and that is the sentence's least supported token
    assert m.read(swapped) == pytest.approx(2.0 + ja.PMI_WEIGHT * 0.0)
    with_passage, alone = llm.token_reads[0][0][-1]["content"], llm.token_reads[1][0][-1]["content"]
    assert with_passage.startswith("Passage:\n" + PASSAGE) and "Question: What does L1 do?" in with_passage
    assert alone.startswith("Passage:\n" + ja.NO_PASSAGE) and llm.token_reads[0][1] == (
        "L1 regularization drives some weights to zero.")  # the marker stripped
    # the token readings are kept on disk like the yes/no ones: a resumed run reads nothing again
    again = ScriptedLLM(judge=lambda m: 2.0, tokens=lambda m, t: [-9.0] * len(t.split()))
    assert ja.ModelReaders(Settings(), again, ja.ReadingCache(tmp_path / "cache.jsonl")).methods()[
        "focus_pmi"].read(swapped) == pytest.approx(2.0)
    assert again.token_reads == [] and again.judged == []


def test_the_default_metric_falls_back_to_focus_without_token_log_probs() -> None:
    from evals.sentences import FALLBACK_METHOD, default_method
    from rag.llm import LLM

    assert default_method(Settings(), ScriptedLLM()).name == DEFAULT_METHOD == "focus_pmi"

    class Server(ScriptedLLM):  # an OpenAI-compatible server: no token log-probabilities
        def __getattribute__(self, name: str) -> Any:
            if name == "token_logprobs":
                raise AttributeError(name)
            return super().__getattribute__(name)

    server: LLM = Server(judge=lambda m: 1.0)
    assert default_method(Settings(), server).name == FALLBACK_METHOD == "focus"
    with pytest.raises(ValueError, match="no token log-probabilities"):
        ja.CachedYesNo(server).token_logprobs([{"role": "user", "content": "x"}], "y")


# --------------------------------------------------------------------------------------------------
# `studybot eval --judge-accuracy` on a tiny claims file (this test's own; never the real set)
# --------------------------------------------------------------------------------------------------

TINY = [
    # (sentence, stated, question id): the scripted model reads "stated" when every 4+ letter word is in the
    # passage (tests.fakes.reader), so the swapped-fact claims are caught and the paraphrase is missed
    ("L1 regularization drives some weights to zero [1].", True, "g01"),
    ("L1 regularization adds the absolute values of the weights [1].", True, "g01"),
    ("L1 regularization adds the squared weights [1].", False, "g02"),
    ("L1 regularization makes every weight exactly equal [1].", False, "g02"),
    ("L1 sets some coefficients to nothing at all [1].", True, "g03"),
    ("L1 regularization drives all weights to zero [1].", False, "q1"),
    ("L1 regularization adds the absolute values to the loss [1].", True, "q1"),
    ("L1 regularization adds squared values to the loss [1].", False, "q3"),
    ("L1 regularization drives weights to zero [1].", True, "q3"),
    ("L1 regularization adds the absolute values of the weights [1].", True, "q2"),
    ("L1 regularization removes the loss entirely [1].", False, "q2"),
]


def write_tiny(path: Path) -> Path:
    rows = [{"id": f"t{i}", "question": "What does L1 regularization do?", "sentence": s, "passage": PASSAGE,
             "source": "doc0.md", "verdict": "stated" if ok else "not_stated", "origin": "test", "kind": "fact",
             "question_id": q, "note": ""} for i, (s, ok, q) in enumerate(TINY)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


class ModelService:
    """What `studybot eval --judge-accuracy` needs of the service: settings and the model."""

    def __init__(self, settings: Settings, llm: ScriptedLLM) -> None:
        self.settings, self.llm = settings, llm


def test_cli_judge_accuracy_prints_the_table_and_the_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from evals.cli import run_cli
    from ui.cli import build_parser

    claims = write_tiny(tmp_path / "claims.jsonl")
    out = tmp_path / "acc.json"
    svc = ModelService(Settings(storage={"home": tmp_path / "home"}), ScriptedLLM(judge=reader()))
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(claims), "--methods",
                                      "rules,verifier,yesno", "--accuracy-out", str(out)])
    assert run_cli(args, svc, []) == 0  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert "balanced accuracy (test)" in text and "split: sha256" in text
    assert "tune:" in text and "test:" in text and "g03" in text  # the split, printed with its questions
    saved = json.loads(out.read_text())
    assert set(saved["methods"]) == {"rules", "verifier", "yesno"}
    yesno = saved["methods"]["yesno"]
    assert yesno["tuned"] and not saved["methods"]["verifier"]["tuned"]
    assert yesno["test"]["n"] + yesno["tune"]["n"] == len(TINY) and yesno["seconds_per_claim"] is not None
    assert saved["split"]["tune"]["n"] == sum(ja.half_of(q) == "tune" for _, _, q in TINY)
    # a second run of one method is merged into the same file; --limit reads a sample
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(claims), "--methods", "nli",
                                      "--limit", "4", "--accuracy-out", str(out), "--json"])
    assert run_cli(args, svc, []) == 0  # type: ignore[arg-type]
    printed = json.loads(capsys.readouterr().out)
    assert printed["methods"]["nli"]["n_read"] == 4 and printed["methods"]["nli"]["limit"] == 4
    assert set(json.loads(out.read_text())["methods"]) == {"rules", "verifier", "yesno", "nli"}


def test_cli_rescore_needs_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evals.cli import run_cli
    from rag.errors import StudybotError
    from ui.cli import build_parser

    claims = write_tiny(tmp_path / "claims.jsonl")
    out = tmp_path / "acc.json"
    svc = ModelService(Settings(storage={"home": tmp_path / "home"}), ScriptedLLM(judge=reader()))
    argv = ["eval", "--judge-accuracy", "--claims", str(claims), "--accuracy-out", str(out)]
    with pytest.raises(StudybotError, match="No saved judge accuracy"):
        run_cli(build_parser().parse_args([*argv, "--rescore"]), svc, [])  # type: ignore[arg-type]
    assert run_cli(build_parser().parse_args([*argv, "--methods", "yesno"]), svc, []) == 0  # type: ignore[arg-type]
    capsys.readouterr()
    saved = json.loads(out.read_text())
    del saved["methods"]["yesno"]["test"]["share_error"]
    out.write_text(json.dumps(saved))
    silent = ModelService(svc.settings, ScriptedLLM(judge=lambda m: pytest.fail("the model was asked")))
    assert run_cli(build_parser().parse_args([*argv, "--rescore"]), silent, []) == 0  # type: ignore[arg-type]
    assert "per-answer share error (test)" in capsys.readouterr().out
    assert json.loads(out.read_text())["methods"]["yesno"]["test"]["share_error"] is not None
    other = write_tiny(tmp_path / "other.jsonl")
    other.write_text(other.read_text().replace("g01", "g09"))
    with pytest.raises(StudybotError, match="another claims file"):
        run_cli(build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(other), "--accuracy-out",
                                           str(out), "--rescore"]), silent, [])  # type: ignore[arg-type]


def test_cli_judge_accuracy_errors_are_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evals.cli import run_cli
    from rag.errors import StudybotError
    from ui.cli import build_parser

    svc = ModelService(Settings(storage={"home": tmp_path / "home"}), ScriptedLLM())
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(tmp_path / "none.jsonl")])
    with pytest.raises(StudybotError, match="No labelled claims at"):
        run_cli(args, svc, [])  # type: ignore[arg-type]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "sentence": "s", "passage": "p", "verdict": "maybe"}\n')
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(bad)])
    with pytest.raises(StudybotError, match=r"bad.jsonl:1: ValueError: verdict 'maybe'"):
        run_cli(args, svc, [])  # type: ignore[arg-type]
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(write_tiny(tmp_path / "c.jsonl")),
                                      "--methods", "oracle"])
    with pytest.raises(StudybotError, match="unknown method"):
        run_cli(args, svc, [])  # type: ignore[arg-type]
    broken = tmp_path / "second.jsonl"
    broken.write_text("{not json\n")
    monkeypatch.setattr(ja, "SECOND_READER_PATH", broken)
    args = build_parser().parse_args(["eval", "--judge-accuracy", "--claims", str(write_tiny(tmp_path / "c.jsonl")),
                                      "--methods", "yesno"])
    with pytest.raises(StudybotError, match=r"cannot be measured: .*second.jsonl:1"):
        run_cli(args, svc, [])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# the sentence metric and the drill-down, through the real answer pipeline (scripted model)
# --------------------------------------------------------------------------------------------------


class PipelineService:
    """A :class:`evals.suite.System` over the real answer pipeline, the fake retriever and a scripted model."""

    def __init__(self, settings: Settings, llm: ScriptedLLM) -> None:
        self.settings, self.llm = settings, llm
        self.retriever = FakeRetriever(0.6)
        self.embedder = HashEmbedder()
        self.pipeline = AnswerPipeline(self.retriever, llm, settings, embedder=self.embedder)

    @property
    def index(self) -> Any:
        retriever = self.retriever

        class _Index:
            def all_chunks(self) -> list[Any]:
                return list(retriever.chunks.values())

        return _Index()

    def ask(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Any:
        return self.pipeline.ask(question, k=k, max_tokens=max_tokens)


ITEMS = [
    GoldItem("a1", "What does L1 regularization do to the weights?", True, "doc0.md", ["drives some weights to zero"]),
    GoldItem("a2", "What does dropout do during training?", True, "doc2.md", ["randomly disables units"]),
]


@pytest.fixture
def measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A judge-accuracy result of this test's own in place of evals/judge_accuracy.json: the default method tuned
    to 1.0."""
    data = {"claims": {"n": 40, "sha256": "x"}, "methods": {
        DEFAULT_METHOD: {"label": "yes/no", "threshold": 1.0, "tuned": True, "test": {"balanced_accuracy": 0.83, "n": 20}},
        "ragas": {"label": "Ragas", "tuned": True, "test": {"balanced_accuracy": 0.61, "n": 12}}}}
    path = tmp_path / "judge_accuracy.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(ja, "RESULT_PATH", path)
    return data


def _run(tmp_path: Path, replies: list[str], run: str, sentence_check: dict[str, float]) -> dict[str, Any]:
    """One eval run of ITEMS with sentence_faithfulness; the scripted model answers with ``replies`` (one
    explanation a question) and reads a checked sentence by its first word (``sentence_check``)."""
    base = reader(("drives some weights to zero", "randomly disables units"))

    def judge(messages: list[dict[str, str]]) -> float:
        content = messages[-1]["content"]
        for mark in ("Check. Sentence:", "\n\nStatement:"):  # the pipeline's check prompt; the eval's NLI prompt
            if mark in content:
                first = content.split(mark, 1)[1].split()[0]
                if first in sentence_check:
                    return sentence_check[first]
        return base(messages)

    settings = Settings(storage={"home": tmp_path / "home"})
    svc = PipelineService(settings, ScriptedLLM(list(replies), judge=judge))
    run_dir = tmp_path / "runs" / run
    return Suite(svc, RunSpec(list(ITEMS), [SENTENCE_METRIC], run_dir), log=lambda m: None).run()


def test_sentence_metric_and_report_drill_down(tmp_path: Path, measured: dict[str, Any]) -> None:
    # a1: one sentence the pipeline shows and the eval's reading finds stated; one it drops (a number not in
    # the quote). a2: a sentence the pipeline shows (0.9 >= its 0.75) that the eval reads as not stated (below
    # the 1.0 its method was tuned to on the claims)
    results = _run(tmp_path, ["L1 regularization drives some weights to zero [1]. It cuts 90% of them [1].",
                              "Dropout randomly disables units during training [3]."],
                   "20240101-000000", {"L1": 3.0, "Dropout": 0.9})
    d = results["detail"][SENTENCE_METRIC]
    assert d["n_scored"] == 2 and d["written"] == 2 and d["dropped"] == 1 and d["quotes"] == d["quotes_verbatim"] == 2
    item = json.loads((tmp_path / "runs" / "20240101-000000" / "items" / "a1.json").read_text())
    kinds = [(s["kind"], s.get("verdict")) for s in item["scores"][SENTENCE_METRIC]["sentences"]]
    assert kinds == [("quote", None), ("written", "stated"), ("dropped", None)]
    assert item["answer"]["checks"][1]["reason"] == "number"  # the pipeline's verdicts are kept for the report
    report = (tmp_path / "runs" / "20240101-000000" / "report.md").read_text()
    section = report.split("## Per question: the answer, each sentence's verdict and its passage", 1)[1]
    a1 = section.split("### a1", 1)[1].split("### a2", 1)[0]
    assert "1. quote [1], verbatim: " + TEXTS[0] in a1
    assert "2. written [1], **stated** (reading 3.00): L1 regularization drives some weights to zero [1]." in a1
    assert "3. dropped by the pipeline (number), not shown: It cuts 90% of them [1]." in a1
    assert "Passage [1] `doc0.md`:" in a1 and "> " + TEXTS[0] in a1  # the passage each sentence cites
    a2 = section.split("### a2", 1)[1]
    assert "**not stated** (reading 0.90)" in a2 and "> " + TEXTS[2] in a2
    assert "sentence_faithfulness 0.00 (0/1 stated" in a2
    # the figure carries its judge's accuracy
    assert f"| sentence_faithfulness | 0.500 | 2 | 0 | 0 | 0 | BA 0.83 ({DEFAULT_METHOD}) |" in report
    assert "judge balanced accuracy 0.83 on 20 held-out labelled claims (yes/no)" in report
    assert "threshold 1.00" in report


def test_compare_names_the_questions_that_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  measured: dict[str, Any]) -> None:
    from evals.cli import run_cli
    from ui.cli import build_parser

    first = ["L1 regularization drives some weights to zero [1].", "Dropout randomly disables units during training [3]."]
    second = [first[0], "Dropout disables random units while training [3]."]
    _run(tmp_path, first, "20240101-000000", {"L1": 3.0, "Dropout": 3.0})
    _run(tmp_path, second, "20240102-000000", {"L1": 3.0, "Dropout": 0.9})  # shown (0.75), not stated (1.0)
    a, b = tmp_path / "runs" / "20240101-000000", tmp_path / "runs" / "20240102-000000"
    args = build_parser().parse_args(["eval", "--compare", str(a), str(b)])
    assert run_cli(args, PipelineService(Settings(), ScriptedLLM()), []) == 0
    out = capsys.readouterr().out
    assert "Questions that changed: 1 (a2)" in out
    assert "- a2: sentence_faithfulness 1.00 -> 0.00; answer text" in out
    args = build_parser().parse_args(["eval", "--compare", str(a), str(b), "--json"])
    run_cli(args, PipelineService(Settings(), ScriptedLLM()), [])
    diff = json.loads(capsys.readouterr().out)
    assert [q["id"] for q in diff["questions"]] == ["a2"]


def test_answer_sentences_of_a_saved_answer() -> None:
    answer = {"answer": "> quote [1]\n\nWritten one [2]. Written two.", "refused": False,
              "quotes": [{"text": "The quote text.", "citation": {"n": 1, "text": "Before. The quote text. After."}}],
              "explanation": "Written one sentence here [2]. Written two without a marker.",
              "passages": [{"text": "Before. The quote text. After.", "source": "a.md"},
                           {"text": "Second passage.", "source": "b.md"}],
              "citations": [{"n": 1, "title": "A", "section": "S", "text": "Before. The quote text. After."}],
              "checks": [{"text": "Dropped [2].", "supported": False, "reason": "memory", "logodds": None}]}
    ss = answer_sentences(answer)
    assert [(s["kind"], s["cites"]) for s in ss] == [("quote", [1]), ("written", [2]), ("written", [1]),
                                                     ("dropped", [2])]
    assert ss[0]["verbatim"] and ss[1]["passage"] == "Second passage." and ss[2]["passage"].startswith("Before.")
    quotes_only = {**answer, "explanation": "", "checks": []}
    got = judge_answer("q?", quotes_only, Method("m", "m", lambda c: 1.0), 0.5)
    assert got["skipped"].startswith("quotes only") and got["quotes_verbatim"] == 1
    assert judge_answer("q?", {"answer": "x", "refused": True}, Method("m", "m", lambda c: 1.0), 0.5) == {
        "skipped": "refused"}


def test_report_prints_each_faithfulness_figure_with_its_judge_accuracy(tmp_path: Path,
                                                                         measured: dict[str, Any]) -> None:
    from evals import report
    from evals.scoring import aggregate

    item = GoldItem("a1", "q?", True, "a.md", ["x"])
    rec = {"answer": {"answer": "x", "refused": False, "passages": []},
           "scores": {SENTENCE_METRIC: {"value": 1.0, "method": DEFAULT_METHOD, "threshold": 0.4, "written": 1, "stated": 1},
                      "faithfulness": {"value": 0.5}}}
    results = aggregate([item], {"a1": rec}, {}, RunSpec([item], [SENTENCE_METRIC, "faithfulness"], tmp_path / "r"))
    table = report.metrics_table(results)
    assert "| sentence_faithfulness | 1.000 |" in table and f"BA 0.83 ({DEFAULT_METHOD}) |" in table
    assert "BA 0.61 (ragas) |" in table
    summary = report.format_summary(results)
    assert "judge balanced accuracy 0.83 on 20 held-out labelled claims (yes/no)" in summary
    assert "judge balanced accuracy 0.61 on 12 held-out labelled claims (Ragas)" in summary


# --------------------------------------------------------------------------------------------------
# the answer gate's checks (the gate itself runs on the real model: tests/test_answer_gate.py)
# --------------------------------------------------------------------------------------------------


def test_answer_gate_checks_refusals_citations_quotes_and_sentences() -> None:
    from evals.answer_gate import check_answer, unstated
    from evals.sentences import is_verbatim

    item = GoldItem("g1", "What does L1 do?", True, "doc0.md", ["drives some weights to zero"])
    good = {"answer": f"> {TEXTS[0]} [1]\n\nL1 drives some weights to zero [1].", "refused": False,
            "quotes": [{"text": TEXTS[0], "citation": {"n": 1, "text": TEXTS[0]}}],
            "explanation": "L1 drives some weights to zero [1].",
            "passages": [{"id": "c0", "chunk_ids": ["c0"], "text": TEXTS[0], "source": "doc0.md"}],
            "citations": [{"n": 1, "chunk_id": "c0", "text": TEXTS[0]}]}
    stated = Method("m", "m", lambda c: 2.0 if "zero" in c.sentence else -2.0)
    fails, score = check_answer(item, good, stated, 0.5)
    assert fails == [] and score["value"] == 1.0
    bad = {**good, "answer": good["answer"] + " Also [2].", "explanation": "L1 makes models faster [1].",
           "quotes": [{"text": "L1 changes the loss a lot.", "citation": {"n": 1}}],
           "citations": [{"n": 1, "chunk_id": "c9"}]}
    fails, bad_score = check_answer(item, bad, stated, 0.5)
    assert any("citation [1] does not point at passage 1" in f for f in fails)
    assert any("marker(s) [2] name no cited passage" in f for f in fails)
    assert any("quote not verbatim" in f for f in fails) and any("no quote states the gold phrase" in f for f in fails)
    assert bad_score["value"] == 0.0 and unstated(bad_score, "g1") == [
        "g1: written sentence read as not stated by passage [1] (m -2.0 < 0.5): 'L1 makes models faster [1].'"]
    assert unstated(score, "g1") == []
    # A unit joining a list item to its intro (or a table row to its header) is verbatim line by line.
    passage = "**Use Cases:**\n- Speech: use CTC.\n- **Weather:** Use MAE.\n"
    assert is_verbatim("**Use Cases:**\n- **Weather:** Use MAE.", passage)
    assert not is_verbatim("**Use Cases:**\n- **Weather:** Use MSE.", passage) and not is_verbatim("", passage)
    table = "| Net | Year |\n|------|:---:|\n| LeNet | 1998 |\n| VGG | 2014 |"
    assert is_verbatim("| Net | Year |\n|---|---|\n| VGG | 2014 |", table)
    assert not is_verbatim("| Net | Year |\n|---|---|\n| VGG | 2015 |", table)
    assert check_answer(item, {**good, "refused": True, "refusal_reason": "no_answer"}, stated, 0.5)[0] == [
        "g1: refused (no_answer)"]
    unanswerable = GoldItem("u1", "Capital of Peru?", False, None)
    assert check_answer(unanswerable, {"refused": True}, stated, 0.5)[0] == []
    assert check_answer(unanswerable, good, stated, 0.5)[0] == ["u1: an unanswerable question was answered"]


def test_evals_tab_drills_down_a_question_and_shows_the_judge_accuracy(tmp_path: Path,
                                                                       measured: dict[str, Any]) -> None:
    pytest.importorskip("gradio")
    from ui import tab_evals

    _run(tmp_path, ["L1 regularization drives some weights to zero [1].",
                    "Dropout randomly disables units during training [3]."], "20240101-000000",
         {"L1": 3.0, "Dropout": 0.9})
    run_dir = tmp_path / "runs" / "20240101-000000"
    assert tab_evals.question_ids(run_dir) == ["a1", "a2"]
    view = tab_evals.question_view(run_dir, "a2")
    assert "**not stated** (reading 0.90)" in view and "> " + TEXTS[2] in view
    assert "No saved answer for zz" in tab_evals.question_view(run_dir, "zz")
    table = tab_evals.accuracy_table()
    assert f"| **yes/no** (`{DEFAULT_METHOD}`) | 0.83 |" in table and "Ragas" in table
    assert SENTENCE_METRIC in tab_evals.LLM_METRICS and tab_evals.DEFAULT_METRICS == [SENTENCE_METRIC]


def test_the_focused_excerpt_keeps_the_units_nearest_the_sentence_whole_and_in_order() -> None:
    from evals.judge_accuracy import focused_excerpt

    passage = ("Intro sentence about models. Dropout drops units at random during training.\n\n"
               "| Optimizer | Trait |\n|---|---|\n| **SGD** | noisy steps |\n| **Adam** | adaptive learning rates |\n\n"
               "Batch norm normalises activations. Weight decay shrinks weights.")
    out = focused_excerpt("Adam uses adaptive learning rates [1].", passage, k=1)
    assert out == "| Optimizer | Trait |\n|---|---|\n| **Adam** | adaptive learning rates |"  # the row under its header
    two = focused_excerpt("Weight decay and dropout both regularise [1].", passage, k=2)
    assert two.splitlines() == ["Dropout drops units at random during training.", "Weight decay shrinks weights."]
    assert focused_excerpt("anything", "One short passage.", k=3) == "One short passage."
