"""CI's answer gate on the real default GGUF (evals/answer_gate.py): ten gold questions answered as in the app;
the unanswerable ones refused, the answerable ones with valid citations, verbatim quotes holding the gold phrase
and, over the gate, a floor on the share of written sentences the default faithfulness method reads as stated.
Beside the retrieval gate (tests/test_evals.py); about a minute and a half on 2 cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evals.answer_gate import GATE_IDS, run_gate
from evals.gold import load_gold
from rag.settings import Settings
from tests.helpers import MODELS_CACHE
from ui.service import StudyService

pytestmark = pytest.mark.llm


def test_gate_questions_are_answered_grounded_or_refused(corpus_home: Path, embedder: Any) -> None:
    gold = {g.id: g for g in load_gold()}
    assert {gold[i].answerable for i in GATE_IDS} == {True, False}
    svc = StudyService(Settings(storage={"home": corpus_home, "models_cache": MODELS_CACHE}), embedder=embedder)
    svc.warm_up()
    result = run_gate(svc)
    report = "\n".join(f"{r['id']}: answer {r['answer_s']} s, checks {r['check_s']} s, {r['stated']} of "
                       f"{r['written']} written read as stated" for r in result["questions"])
    assert result["failures"] == [], "\n".join(result["failures"]) + "\n" + report
    answered = [r for r in result["questions"] if not r["refused"]]
    assert answered and result["written"] > 0, report
    print(report)
