"""The Review and Progress tabs as a student reads them (issue 28, items 7, 10 and 11), on a real SQLite study
database: due times said relative to now in the browser's time zone, one lettering of the options, Markdown
rendered and escaped, the Progress tab's empty state in words, whole-number count axes, readable days in
calendar order, no internal user name, a recall figure that drops after a wrong answer, and table columns
that say different things."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from rag.quiz import QuizItem
from rag.study.store import StudyStore
from rag.types import Citation
from ui import render, tab_progress, tab_review

T0 = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)  # 16:00 in Berlin, 07:00 in Los Angeles


# --- due times -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("later", "tz", "said"), [
    (timedelta(seconds=10), "Europe/Berlin", "now"),
    (timedelta(minutes=1), "Europe/Berlin", "in 1 minute"),
    (timedelta(minutes=10), "Europe/Berlin", "in 10 minutes"),
    (timedelta(hours=3), "Europe/Berlin", "in 3 hours (today at 19:00)"),
    (timedelta(hours=3), "America/Los_Angeles", "in 3 hours (today at 10:00)"),
    # 20 hours on: tomorrow in both places, at their own clock time
    (timedelta(hours=20), "Europe/Berlin", "tomorrow at 12:00"),
    (timedelta(hours=20), "America/Los_Angeles", "tomorrow at 03:00"),
    # 10 hours on: 01:00 tomorrow in Berlin, 17:00 today in Los Angeles
    (timedelta(hours=10), "Europe/Berlin", "tomorrow at 02:00"),
    (timedelta(hours=10), "America/Los_Angeles", "in 10 hours (today at 17:00)"),
    (timedelta(days=3), "Europe/Berlin", "on Tuesday at 16:00"),
    (timedelta(days=12), "Asia/Tokyo", "in 12 days (Fri 18 Dec)"),
    # no (or no valid) time zone: relative wording only, never a UTC clock time
    (timedelta(hours=20), None, "in 20 hours"),
    (timedelta(days=3), "Not/AZone", "in 3 days"),
    (timedelta(hours=5), "../../etc/passwd", "in 5 hours"),
])
def test_due_times_are_relative_and_in_the_students_time_zone(later: timedelta, tz: str | None, said: str) -> None:
    assert render.relative_time(T0 + later, T0, tz) == said


def test_the_browsers_time_zone_is_read_by_the_tab() -> None:
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in tab_review.TZ_JS
    assert render.time_zone("Europe/Berlin") is not None and render.time_zone("x" * 80) is None


# --- the Review tab ---------------------------------------------------------------------------------------
PASSAGE = "**Boosting**: trains learners one after another. $\\eta$ is the rate.\n\n```\nfit(X) <b>\n```"


def _mcq(question: str = "Which of these best describes Boosting?") -> QuizItem:
    cite = Citation(n=1, chunk_id="c1", source="ml.md", title="ML", section="Ensembles > Boosting", page=None,
                    text=PASSAGE)
    return QuizItem(type="mcq", question=question, answer="Trains learners one after another",
                    explanation="**Boosting** trains each learner on the errors of the previous one.",
                    options=["Trains learners in **parallel**", "Trains learners one after another",
                             "Drops units at random", "Adds squared weights"], citation=cite)


def _flashcard(q: str, section: str) -> QuizItem:
    cite = Citation(n=1, chunk_id=q, source="doc.md", title="Doc", section=section, page=None, text="Some text.")
    return QuizItem(type="flashcard", question=q, answer="an answer", explanation="", options=[], citation=cite)


@pytest.fixture
def svc(tmp_path: Path) -> Any:
    """The part of the service the Review and Progress tabs use: a real study database."""
    return SimpleNamespace(study=StudyStore(tmp_path / "study.sqlite3"))


def test_review_letters_the_options_and_renders_the_answer(svc: Any) -> None:
    svc.study.add_items("ann", [_mcq()])
    rs = tab_review.load(svc, "ann", tz="Europe/Berlin")
    v = tab_review.view(svc, "ann", rs)
    for i, letter in enumerate("ABCD"):
        assert f'data-letter="{letter}"><span class="sb-quiz-letter">{letter})</span>' in v.question_html, i
    assert "<ol" not in v.question_html and "**" not in v.question_html  # no 1-4 numbering, no raw markers
    assert "<strong>parallel</strong>" in v.question_html
    v = tab_review.view(svc, "ann", tab_review.reveal(rs))
    assert '<b>Answer:</b> <span class="sb-quiz-letter">B)</span> Trains learners one after another' in v.answer_html
    assert "**" not in v.answer_html and "```" not in v.answer_html and "$" not in v.answer_html
    assert "<strong>Boosting</strong> trains each learner" in v.answer_html and "η" in v.answer_html
    assert "&lt;b&gt;" in v.answer_html and "<b>\n" not in v.answer_html


def test_review_says_when_a_card_comes_back_in_the_students_time_zone(svc: Any) -> None:
    [iid] = svc.study.add_items("ann", [_flashcard("What is bagging?", "Ensembles")])
    rs = tab_review.reveal(tab_review.load(svc, "ann", tz="America/Los_Angeles"))
    assert rs.item_id == iid and rs.tz == "America/Los_Angeles"
    rs = tab_review.rate(svc, "ann", rs, "good")  # a new card's first step: minutes
    assert rs.message.startswith("Graded good: you will see that card again in ") and "minutes" in rs.message
    assert "UTC" not in rs.message and rs.tz == "America/Los_Angeles"
    v = tab_review.view(svc, "ann", rs)
    assert "Nothing is due now. The next card is due in " in v.status_html and "UTC" not in v.status_html
    # a card due days ahead: a day and a clock time in the student's zone
    svc.study.review("ann", iid, "easy", now=datetime.now(UTC) + timedelta(minutes=30))
    v = tab_review.view(svc, "ann", tab_review.load(svc, "ann", tz="Asia/Tokyo"))
    assert "The next card is due " in v.status_html and ("on " in v.status_html or "in " in v.status_html)
    assert "UTC" not in v.status_html


# --- the Progress tab ---------------------------------------------------------------------------------------
def test_progress_before_any_study_says_so_in_words_and_draws_no_empty_chart(svc: Any) -> None:
    data = tab_progress.progress_data(svc, "local")
    summary = tab_progress.summary_html(data, "local")
    assert "Nothing studied yet" in summary and "Quiz tab" in summary and "local" not in summary
    updates = tab_progress.chart_updates(*tab_progress.progress_outputs(svc, "local"))
    assert updates[0] == summary
    assert [u["visible"] for u in updates[1:]] == [False, False, False, False]  # no empty chart, no empty table


def test_progress_counts_are_whole_numbers_and_days_are_readable_and_in_order(svc: Any) -> None:
    ids = svc.study.add_items("ann", [_flashcard(f"Q{i}?", "Ensembles") for i in range(3)], now=T0)
    svc.study.review("ann", ids[0], "good", now=T0)
    data = tab_progress.progress_data(svc, "ann")
    for frame, col in ((data["reviews"], "reviews"), (data["due"], "cards due")):
        assert pd.api.types.is_integer_dtype(frame[col]), frame.dtypes
        assert all(len(d.split()) == 2 and d.split()[0].isalpha() for d in frame["day"])  # "Dec 5"
    assert tab_progress.day_label("2026-12-05") == "Dec 5" and tab_progress.day_label("2027-01-02") == "Jan 2"
    summary, mastery, reviews, due, table = tab_progress.progress_outputs(svc, "ann")
    _, m, r, d, t = tab_progress.chart_updates(summary, mastery, reviews, due, table)
    assert m["visible"] and d["visible"] and t["visible"]
    assert d["y_lim"] == [0, 5.0] and d["sort"] == list(due["day"])  # whole-number ticks; calendar order
    assert tab_progress.count_axis(pd.Series([0, 12, 3])) == [0, 12.0]
    assert "3 cards in 1 section, 1 review." in summary


def test_recall_after_a_wrong_answer_is_not_100_percent(svc: Any) -> None:
    ids = svc.study.add_items("ann", [_flashcard("A?", "Bagging"), _flashcard("B?", "Boosting")])
    svc.study.review("ann", ids[0], "again")  # just answered wrong
    svc.study.review("ann", ids[1], "good")
    rows = {s["section"]: s for s in svc.study.mastery("ann")}
    assert rows["Bagging"]["retrievability"] == 1.0  # FSRS "now": a whole day after any review, even a wrong one
    assert rows["Bagging"]["recall_tomorrow"] < 0.8 < rows["Boosting"]["recall_tomorrow"] < 1.0
    table = tab_progress.progress_data(svc, "ann")["table"]
    assert list(table.columns) == tab_progress.TABLE_COLUMNS and "recall now (FSRS)" not in table.columns
    wrong = table[table["section"] == "Bagging"].iloc[0]
    assert wrong["recall tomorrow (FSRS)"] != "100%" and wrong["recall tomorrow (FSRS)"].endswith("%")
    # mastery is a percentage; "reviews right" counts the reviews: the two columns say different things
    assert wrong["mastery"] == "0%" and wrong["reviews right"] == "0 of 1"
    right = table[table["section"] == "Boosting"].iloc[0]
    assert right["mastery"] == "100%" and right["reviews right"] == "1 of 1"


def test_a_section_never_reviewed_has_no_mastery_yet(svc: Any) -> None:
    svc.study.add_items("ann", [_flashcard("A?", "Bagging")])
    data = tab_progress.progress_data(svc, "ann")
    assert data["mastery"].empty  # nothing to chart: not a 0% bar
    row = data["table"].iloc[0]
    assert row["mastery"] == "–" and row["reviews right"] == "–" and row["recall tomorrow (FSRS)"] == "–"
    assert "None reviewed yet" in tab_progress.summary_html(data)
