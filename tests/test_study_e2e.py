"""A study guide on the real default GGUF: key terms, summary and questions on "regularization", every line
cited to one of its passages, each definition and summary sentence passed by the verifier."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rag.settings import Settings
from tests.helpers import MODELS_CACHE
from ui.render import guide_markdown
from ui.service import StudyService

pytestmark = pytest.mark.llm

ON_TOPIC = re.compile(r"regulari|\bl1\b|\bl2\b|ridge|lasso|penalt|weight decay|dropout|elastic ?net|overfit", re.I)


def test_a_study_guide_on_the_real_model_is_cited_line_by_line(corpus_home: Path, embedder: Any,
                                                               tmp_path: Path) -> None:
    settings = Settings(storage={"home": corpus_home, "models_cache": MODELS_CACHE,
                                 "study_db": tmp_path / "study.sqlite3"}, llm={"temperature": 0.0})
    svc = StudyService(settings, embedder=embedder)
    guide = svc.guide("regularization")
    print(f"\nguide in {guide.seconds:.1f} s: {len(guide.lines)} lines kept, {guide.dropped} dropped {guide.reasons}")
    assert guide.terms or guide.summary
    assert len(guide.questions) <= 3
    assert all(1 <= line.n <= len(guide.citations) for line in guide.lines)
    assert any(ON_TOPIC.search(c.text) for c in guide.citations)
    md = guide_markdown(guide.to_json())
    assert md.startswith("# Study guide: regularization") and "## Sources" in md
    assert all(f"[{line.n}]" in md for line in guide.lines)
