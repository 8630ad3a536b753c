"""End to end with the real default GGUF: the real answer pipeline, a real llama_cpp.server judge and Ragas.

One gold question is answered and scored for faithfulness (the CI check that Ragas runs on the real model),
and the judge must rate the gold reference above a fabricated answer for the same question. Both tests share
one judge server; together they take about 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest

from tests.helpers import MODELS_CACHE

pytestmark = pytest.mark.llm

GOLD_ID = "g03"  # a short question with a short, well-supported answer


def _gguf() -> Path:
    from rag.backends.models import DEFAULT_GGUF_NAME

    path = MODELS_CACHE / DEFAULT_GGUF_NAME
    if not path.is_file():
        from rag.backends.models import ensure_default_gguf
        from rag.settings import Settings

        ensure_default_gguf(Settings(storage={"models_cache": MODELS_CACHE}), show_progress=False)
    return path


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory):
    from evals.judge import JudgeEndpoint, JudgeServer, JudgeStats, judge_llm
    from rag.settings import Settings

    settings = Settings(storage={"models_cache": MODELS_CACHE})
    log = tmp_path_factory.mktemp("judge") / "judge-server.log"
    with JudgeServer(_gguf(), model_alias=settings.judge.model, n_ctx=settings.judge.n_ctx,
                     threads=settings.llm.threads, log_path=log, start_timeout=300) as server:
        endpoint = JudgeEndpoint(server.base_url, settings.judge.model, "x", True, "test judge")
        yield judge_llm(endpoint, settings, JudgeStats())


def _item(gold_id: str = GOLD_ID):
    from evals.gold import load_gold

    return next(i for i in load_gold() if i.id == gold_id)


def test_judge_rates_faithful_above_fabricated(judge, corpus_service) -> None:
    from evals.scoring import run_judge_sanity, sanity_pairs

    pairs = sanity_pairs(corpus_service, [_item()] + [i for i in _load_all() if i.id != GOLD_ID], 1)
    assert pairs and pairs[0]["id"] == GOLD_ID
    summary = run_judge_sanity(judge, pairs)
    row = summary["pairs"][0]
    assert row["holds"], row
    assert math.isfinite(row["faithful"]) and row["faithful"] > row["fabricated"]


def _load_all():
    from evals.gold import load_gold

    return load_gold()


def test_eval_one_gold_item_end_to_end(judge, corpus_settings, tmp_path: Path) -> None:
    """Answer one gold question with the real pipeline and model, score faithfulness with Ragas + the real
    judge, write the report."""
    from evals.runs import RunSpec
    from evals.suite import Suite
    from ui.service import StudyService

    svc = StudyService(corpus_settings)

    @contextlib.contextmanager
    def factory(run_dir: Path):
        yield judge

    run_dir = tmp_path / "run"
    results = Suite(svc, RunSpec([_item()], ["faithfulness"], run_dir), judge_factory=factory,
                    log=lambda m: None).run()
    d = results["detail"]["faithfulness"]
    assert results["metrics"]["hit@5"] == 1.0
    assert results["metrics"]["wrong_refusal_rate"] == 0.0, "the pipeline refused an answerable question"
    assert d["n_scored"] + d["n_failed"] == 1 and d["n_skipped"] == 0
    assert d["n_scored"] == 1, d["errors"]
    assert 0.0 <= results["metrics"]["faithfulness"] <= 1.0
    assert d["judge_calls"] >= 2 and "parse_failures" in d
    assert (run_dir / "report.md").is_file() and (run_dir / "charts" / "metrics.png").is_file()
