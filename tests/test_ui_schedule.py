"""FSRS the way Anki users expect, in the web app (issue 29, item 3), on a real SQLite study database through
the real service: the Review tab's card control (edit with its history kept, suspend, bury until tomorrow,
delete after a confirm step, the suspended / buried cards put back), each said in one sentence with the due
queue updated; the Progress tab's review calendar (days in the browser's time zone, a tooltip per day), true
retention (mature reviews passed, with the counts), the 30-day forecast, their empty states in words, and the
schedule panel (desired retention with the service's workload warning, "Optimise my schedule" refused below
the minimum or showing the log-loss before and after)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rag.quiz.models import QuizItem
from rag.settings import Settings
from rag.study.schedule import DEFAULT_PARAMETERS, counted_reviews, simulate_reviews
from rag.types import Citation
from ui import tab_progress, tab_review
from ui.service import StudyService

USER = "ann"


def item(q: str, answer: str = "It drives weights to zero", kind: str = "flashcard") -> QuizItem:
    cite = Citation(n=1, chunk_id="c1", source="doc.md", title="Doc", section="Regularization", page=None,
                    text="L1 drives weights to zero.")
    options = [answer, "larger weights", "more layers", "a lower learning rate"] if kind == "mcq" else []
    return QuizItem(type=kind, question=q, answer=answer, explanation="", options=options, citation=cite)


@pytest.fixture
def svc(tmp_path: Path) -> StudyService:
    """The real service on a study database of its own (nothing here needs the index or the model)."""
    return StudyService(Settings(storage={"home": tmp_path / "home"}))


def one_sentence(text: str) -> None:
    text = text.strip()
    assert text and "\n" not in text and text.endswith(".") and "Traceback" not in text, text
    assert len(re.findall(r"[.!?](?:\s|$)", text)) == 1, text


def due_ids(svc: StudyService) -> list[int]:
    return [d.item_id for d in svc.study.due(USER)]


# --- Review: card control ------------------------------------------------------------------------------------
def test_suspend_and_bury_take_the_card_out_of_the_queue_and_put_back_returns_it(svc: StudyService) -> None:
    a, b, c = svc.study.add_items(USER, [item("What does L1 do?"), item("What does L2 do?"),
                                         item("What is dropout?")])
    rs = tab_review.load(svc, USER, tz="Europe/Berlin")
    assert rs.item_id == a and tab_review.view(svc, USER, rs).can_act

    rs = tab_review.suspend(svc, USER, rs)
    one_sentence(rs.message)
    assert rs.message.startswith("Suspended “What does L1 do?”: it stays out of review until you put it back")
    assert due_ids(svc) == [b, c] and rs.item_id == b  # the next due card comes up
    v = tab_review.view(svc, USER, rs)
    assert 'data-due="2">2 due now' in v.status_html and rs.message in v.status_html

    rs = tab_review.bury(svc, USER, rs)
    one_sentence(rs.message)
    # buried until the next midnight in the browser's time zone, said on its clock
    assert rs.message == "Buried “What does L2 do?” until tomorrow: it comes back tomorrow at 00:00."
    buried = svc.study.card(USER, b).buried_until
    assert buried is not None and buried.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "00:00"
    assert due_ids(svc) == [c] and rs.item_id == c

    kept_out = tab_review.hidden_cards(svc, USER)
    assert [k.item_id for k in kept_out] == [a, b]
    listing = tab_review.hidden_html(kept_out, "Europe/Berlin")
    assert 'data-count="2"' in listing and "Suspended:</span>What does L1 do?" in listing
    assert "Buried, back tomorrow at 00:00:</span>What does L2 do?" in listing
    assert [v for _, v in tab_review.hidden_choices(kept_out)] == [a, b]

    rs = tab_review.restore(svc, USER, rs, a)
    one_sentence(rs.message)
    assert rs.message == "Put “What does L1 do?” back in review (unsuspended): it is due now."
    assert due_ids(svc) == [a, c] and rs.item_id == c  # the card on screen stays
    rs = tab_review.restore(svc, USER, rs, b)
    assert "(unburied)" in rs.message and due_ids(svc) == [a, b, c]
    assert tab_review.hidden_cards(svc, USER) == []
    assert "No suspended or buried cards" in tab_review.hidden_html([])
    assert tab_review.restore(svc, USER, rs, None).message == "Choose a card from the list first, then put it back."


def test_with_nothing_due_suspend_and_the_other_actions_say_so(svc: StudyService) -> None:
    rs = tab_review.load(svc, USER)
    v = tab_review.view(svc, USER, rs)
    assert rs.item_id is None and not v.can_act
    for action, word in ((tab_review.suspend, "suspend"), (tab_review.bury, "bury"), (tab_review.delete, "delete")):
        said = action(svc, USER, rs).message
        assert said == f"No card to {word}: no card is shown.", said
    assert tab_review.save_edit(svc, USER, rs, "Q?", "A").message == "No card to edit: no card is shown."


def test_editing_the_card_shown_keeps_its_schedule_and_history(svc: StudyService) -> None:
    now = datetime.now(UTC)
    [a] = svc.study.add_items(USER, [item("What does L1 do?")], now=now - timedelta(days=2))
    [b] = svc.study.add_items(USER, [item("Which of these best describes L2?", answer="shrinks weights", kind="mcq")])
    svc.study.review(USER, a, "again", now=now - timedelta(days=1))  # forgotten yesterday: due again now
    due_before = svc.study.card(USER, a).due
    rs = tab_review.load(svc, USER)
    assert rs.item_id == a

    rs = tab_review.start_edit(rs)
    v = tab_review.view(svc, USER, rs)
    assert v.mode == "edit" and v.edit_question == "What does L1 do?" and v.edit_answer == "It drives weights to zero"

    rs = tab_review.save_edit(svc, USER, rs, "  What does L1 regularization do?  ", v.edit_answer)
    one_sentence(rs.message)
    assert rs.message == "Saved the card's new question: its schedule and its 1 review are kept."
    card = svc.study.card(USER, a)
    assert card.item.question == "What does L1 regularization do?" and card.item.answer == "It drives weights to zero"
    assert card.reviews == 1 and card.due == due_before and rs.mode == "" and rs.item_id == a
    v = tab_review.view(svc, USER, rs)
    assert "What does L1 regularization do?" in v.question_html  # the card on screen shows its new text

    # refusals: one sentence each, the editor stays open with what was typed
    rs = tab_review.start_edit(rs)
    for q, a_text, said in (("", "x", "A card's question cannot be empty"),
                            ("Which of these best describes L2?", "x", f"Card {b} already asks that question")):
        bad = tab_review.save_edit(svc, USER, rs, q, a_text)
        one_sentence(bad.message)
        assert bad.message.startswith(said) and bad.mode == "edit", bad.message
    same = tab_review.save_edit(svc, USER, rs, "What does L1 regularization do?", "It drives weights to zero")
    assert same.message == "Nothing changed: the card keeps its question and answer." and same.mode == ""
    rs = tab_review.save_edit(svc, USER, rs, None, "Sparse weights")
    assert rs.message == "Saved the card's new answer: its schedule and its 1 review are kept."
    assert svc.study.card(USER, a).item.answer == "Sparse weights"
    assert tab_review.cancel(tab_review.start_edit(rs), "edit").message == "Edit cancelled: the card is unchanged."
    [new] = svc.study.add_items(USER, [item("What is a new card?")], now=now - timedelta(days=3))
    rs = tab_review.save_edit(svc, USER, tab_review.start_edit(tab_review.load(svc, USER)), None, "Never reviewed")
    assert rs.item_id == new and rs.message == "Saved the card's new answer: its schedule is kept."


def test_delete_asks_first_and_then_removes_the_card_and_its_reviews(svc: StudyService) -> None:
    now = datetime.now(UTC)
    [a] = svc.study.add_items(USER, [item("What is <script>alert(1)</script> **bagging**?")],
                              now=now - timedelta(days=3))
    [b] = svc.study.add_items(USER, [item("What is boosting?")])
    svc.study.review(USER, a, "again", now=now - timedelta(days=2))
    svc.study.review(USER, a, "again", now=now - timedelta(days=1))
    rs = tab_review.load(svc, USER)
    assert rs.item_id == a

    asked = tab_review.delete(svc, USER, rs)  # the first click only asks
    assert asked.mode == "delete" and svc.study.card(USER, a).reviews == 2
    v = tab_review.view(svc, USER, asked)
    assert v.mode == "delete" and "and its 2 reviews?" in v.confirm_html and "cannot be undone" in v.confirm_html
    assert "<script>" not in v.confirm_html and "&lt;script&gt;" in v.confirm_html and "**" not in v.confirm_html

    kept = tab_review.cancel(asked, "delete")
    assert kept.message == "Nothing was deleted." and kept.mode == "" and due_ids(svc) == [a, b]

    rs = tab_review.delete(svc, USER, tab_review.ask_delete(kept))
    one_sentence(rs.message)
    assert rs.message.startswith("Deleted “What is <script>alert(1)</script> bagging?” with its 2 reviews")
    assert rs.message.endswith("a quiz will not ask it again.")
    assert due_ids(svc) == [b] and rs.item_id == b and [c.item_id for c in svc.cards(USER)] == [b]
    status = tab_review.view(svc, USER, rs).status_html
    assert "<script>" not in status and "&lt;script&gt;" in status  # the message is escaped on the page
    never = tab_review.view(svc, USER, tab_review.ask_delete(rs)).confirm_html  # a card never reviewed
    assert "Delete this card (“What is boosting?”)? A quiz will not ask" in never
    rs = tab_review.delete(svc, USER, tab_review.ask_delete(rs))
    assert rs.message == "Deleted “What is boosting?”: a quiz will not ask it again." and rs.item_id is None
    assert sum(s["reviews"] for s in svc.study.mastery(USER)) == 0  # its history went with it


def test_an_action_on_a_card_changed_in_another_window_changes_nothing(svc: StudyService) -> None:
    a, b = svc.study.add_items(USER, [item("What is bagging?"), item("What is boosting?")])
    rs = tab_review.ask_delete(tab_review.load(svc, USER))
    assert rs.item_id == a
    svc.suspend_card(USER, a)  # meanwhile, elsewhere (another tab, the CLI)
    after = tab_review.delete(svc, USER, rs)
    one_sentence(after.message)
    assert "no longer due" in after.message and "nothing was deleted" in after.message
    assert svc.study.card(USER, a).suspended and after.item_id == b and after.mode == ""


# --- Progress: calendar, true retention, forecast ------------------------------------------------------------
def test_progress_before_any_study_says_so_in_words(svc: StudyService) -> None:
    calendar, retention, forecast, schedule, desired = tab_progress.figures(svc, USER, "Europe/Berlin")
    assert "No reviews in the last 12 months yet" in calendar and "sb-cal-grid" not in calendar
    assert "No true retention yet" in retention and "<table" not in retention
    assert "No cards yet: take a quiz" in forecast and "sb-fc-bars" not in forecast
    assert "Desired retention: <b>0.90</b> (the default)" in schedule and desired == 0.9
    assert "FSRS parameters: the defaults (not optimised on your reviews yet)." in schedule
    # cards, none due within 30 days: said so, no empty bars
    [a] = svc.study.add_items(USER, [item("What is bagging?")])
    svc.suspend_card(USER, a)
    forecast = tab_progress.figures(svc, USER)[2]
    assert "No cards come due in the next 30 days." in forecast and "sb-fc-bars" not in forecast


def test_the_calendar_counts_reviews_per_day_in_the_browsers_time_zone(svc: StudyService) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    today = datetime.now(tokyo).date()
    ids = svc.study.add_items(USER, [item(f"Card {i}?") for i in range(4)],
                              now=datetime.now(UTC) - timedelta(days=60))
    d40, d10, d3 = (today - timedelta(days=k) for k in (40, 10, 3))

    def at(day: Any, hh: int, mm: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hh, mm, tzinfo=tokyo)

    svc.study.review(USER, ids[0], "good", now=at(d40, 12))
    svc.study.review(USER, ids[1], "good", now=at(d10, 9))
    svc.study.review(USER, ids[2], "good", now=at(d10, 20))
    svc.study.review(USER, ids[3], "good", now=at(d3, 0, 30))  # 00:30 in Tokyo: the day before in UTC

    calendar = tab_progress.figures(svc, USER, "Asia/Tokyo")[0]
    assert 'data-total="4"' in calendar
    assert f'title="{d10}: 2 reviews"' in calendar and f'title="{d40}: 1 review"' in calendar
    assert f'title="{d3}: 1 review"' in calendar and f'title="{d3 - timedelta(days=1)}: 0 reviews"' in calendar
    assert f'data-day="{today}" data-count="0" title="{today}: 0 reviews"' in calendar
    assert re.search(rf'sb-cal-today" [^>]*data-day="{today}"', calendar)
    days = re.findall(r'class="sb-cal-day sb-cal-l(\d)[^"]*" style="grid-column:\d+;grid-row:(\d)" data-day="([\d-]+)"',
                      calendar)
    assert len(days) >= 365 and len({d for *_, d in days}) == len(days)  # one square per day, no gaps
    shade = {d: int(level) for level, _, d in days}
    assert shade[str(d10)] == 4 and shade[str(d40)] == 2 and shade[str(today)] == 0  # busiest day darkest
    assert all(int(row) - 2 == datetime.fromisoformat(d).weekday() for _, row, d in days)  # Monday on top
    assert "4 reviews on 3 of " in calendar and "longest 1 day." in calendar and "Less " in calendar
    assert "Days are in your browser's time zone (Asia/Tokyo)." in calendar
    # in UTC the 00:30 review falls on the day before
    utc = tab_progress.figures(svc, USER, "UTC")[0]
    assert f'title="{d3 - timedelta(days=1)}: 1 review"' in utc


def test_true_retention_counts_mature_reviews_passed(svc: StudyService) -> None:
    """Two cards reviewed when due for a year, one lapse once mature: the figure and its counts match the
    reviews as made here (interval before each review and the card's state from the card list)."""
    now = datetime.now(UTC)
    start = now - timedelta(days=400)
    ids = svc.study.add_items(USER, [item("What is bagging?"), item("What is boosting?")], now=start)
    expected = {"mature": [0, 0], "young": [0, 0]}
    recent = {"mature": [0, 0], "young": [0, 0]}
    lapsed = False
    for n, card in enumerate(ids):
        t, last, due = start + timedelta(hours=n), None, None
        while t < now - timedelta(hours=1):
            state = next(c.state for c in svc.cards(USER) if c.item_id == card)
            interval = (due - last).total_seconds() / 86400 if last is not None and due is not None else None
            rating = "good"
            if state == "review" and interval is not None and interval >= 21 and not lapsed:
                rating, lapsed = "again", True
            if state == "review" and interval is not None:
                for bucket in (expected, recent) if t >= now - timedelta(days=30) else (expected,):
                    kind = bucket["mature" if interval >= 21 else "young"]
                    kind[0] += 1
                    kind[1] += rating != "again"
            last, due = t, svc.study.review(USER, card, rating, now=t)
            t = due
    assert expected["mature"][0] >= 3 and expected["mature"][1] == expected["mature"][0] - 1  # the lapse
    html = tab_progress.figures(svc, USER)[1]
    n, p = expected["mature"]
    assert f"Mature cards: {p / n:.0%} of reviews passed ({p} of {n} reviews, all time)." in html
    assert f'data-mature-reviews="{n}" data-mature-passed="{p}"' in html
    row = re.search(r"<tr><th>Mature \(21 days or more\)</th><td>(.*?)</td><td>(.*?)</td></tr>", html)
    assert row is not None
    rn, rp = recent["mature"]
    assert row.group(2) == f"{p / n:.0%} ({p} of {n})"
    assert row.group(1) == (f"{rp / rn:.0%} ({rp} of {rn})" if rn else "–")
    young = re.search(r"<tr><th>Young \(interval under 21 days\)</th><td>.*?</td><td>(.*?)</td></tr>", html)
    yn, yp = expected["young"]
    assert young is not None and young.group(1) == f"{yp / yn:.0%} ({yp} of {yn})"
    assert "a card is mature when it was scheduled 21 days or more after its previous review" in html
    assert "Your desired retention is 0.90" in html


def test_the_forecast_shows_the_next_30_days_with_todays_overdue_cards(svc: StudyService) -> None:
    now = datetime.now(UTC)
    ids = svc.study.add_items(USER, [item(f"Card {i}?") for i in range(5)], now=now - timedelta(days=3))
    svc.suspend_card(USER, ids[0])  # never due
    later = svc.study.review(USER, ids[1], "easy", now=now - timedelta(minutes=1))  # days ahead
    html = tab_progress.figures(svc, USER, "Europe/Berlin")[2]
    bars = re.findall(r'class="sb-fc-bar" data-day="([\d-]+)" data-count="(\d+)" title="([^"]+)"', html)
    assert len(bars) == 30
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    assert bars[0] == (str(today), "3", f"today ({today}): 3 cards due, overdue ones included")
    day = later.astimezone(ZoneInfo("Europe/Berlin")).date()
    assert (str(day), "1", f"{day}: 1 card due") in bars
    assert sum(int(c) for _, c, _ in bars) == 4
    assert "4 cards come due in the next 30 days: 3 today (overdue ones included)" in html
    assert 'style="height:100%"' in html  # the busiest day fills the chart


# --- the schedule: desired retention, Optimise my schedule -----------------------------------------------------
def test_desired_retention_is_saved_with_the_services_workload_warning(svc: StudyService) -> None:
    assert tab_progress.retention_preview(svc, USER, 0.95) == ""
    preview = tab_progress.retention_preview(svc, USER, 0.98)
    warning = svc.study.retention_warning(0.98)
    assert warning and warning in preview.replace("&#x27;", "'")

    schedule, message = tab_progress.save_retention(svc, USER, 0.98)
    assert "Desired retention: <b>0.98</b> (your setting)" in schedule and 'class="sb-sched-warning"' in schedule
    assert warning in schedule.replace("&#x27;", "'") and "7.0 times as often" in schedule
    assert "Desired retention set to 0.98" in message and svc.schedule(USER)["desired_retention"] == 0.98

    schedule, message = tab_progress.save_retention(svc, USER, 0.93)
    assert "Desired retention: <b>0.93</b>" in schedule and "sb-sched-warning" not in schedule
    schedule, message = tab_progress.save_retention(svc, USER, 0.5)  # out of range: the service's sentence
    assert "sb-error" in message and "out of range: use a value from 0.70 to 0.99" in message
    assert svc.schedule(USER)["desired_retention"] == 0.93 and "<b>0.93</b>" in schedule
    assert tab_progress.RETENTION_MIN == 0.7 and tab_progress.RETENTION_MAX == 0.99


def test_optimising_below_the_minimum_is_refused_in_the_services_sentence(svc: StudyService) -> None:
    ids = svc.study.add_items(USER, [item(f"Card {i}?") for i in range(3)],
                              now=datetime.now(UTC) - timedelta(days=30))
    for day in (20, 10):
        for i in ids:
            svc.study.review(USER, i, "good", now=datetime.now(UTC) - timedelta(days=day))
    schedule, message = tab_progress.optimize(svc, USER)
    text = re.sub(r"<[^>]+>", "", message).replace("&#x27;", "'")
    one_sentence(text)
    assert text.startswith("Optimising your schedule needs at least 512 reviews") and "there are 3 so far" in text
    assert USER not in text and "sb-error" in message
    assert "3 of the 512 needed" in schedule and "the defaults (not optimised" in schedule
    assert svc.schedule(USER)["default_parameters"]


def test_optimising_shows_the_log_loss_before_and_after_and_where_the_parameters_come_from(
        svc: StudyService) -> None:
    """A simulated student (fsrs itself, seeded) who forgets faster than FSRS's defaults assume."""
    true = [0.1, 0.4, 0.9, 3.0, *DEFAULT_PARAMETERS[4:8], 1.2, *DEFAULT_PARAMETERS[9:20], 0.35]
    history = simulate_reviews(true, cards=60, days=200, seed=1, retention=Settings().study.desired_retention)
    assert counted_reviews(history) >= 512
    ids = svc.study.add_items(USER, [item(f"Card {n}?") for n in range(60)], now=history[0].at - timedelta(days=1))
    for r in sorted(history, key=lambda r: r.at):
        svc.study.review(USER, ids[r.card - 1], r.rating, now=r.at)
    schedule, message = tab_progress.optimize(svc, USER, "Europe/Berlin")
    run = svc.schedule(USER)["optimized"]
    assert run["adopted"] and run["log_loss_after"] < run["log_loss_before"]
    n = f"{run['reviews']:,} reviews"
    assert (f"Optimised on {n} in {run['seconds']} s: log-loss {run['log_loss_before']:.4f} with the parameters "
            f"in use, {run['log_loss_after']:.4f} fitted (lower is better); the fitted parameters predict your "
            "recall better and are used from now on.") in message.replace("&#x27;", "'")
    day = datetime.fromisoformat(run["at"]).astimezone(ZoneInfo("Europe/Berlin")).date()
    assert (f"FSRS parameters: fitted on your {n} on {day} (log-loss {run['log_loss_before']:.4f} → "
            f"{run['log_loss_after']:.4f}).") in schedule
    assert 'data-default-parameters="0"' in schedule
    assert f"Reviews that count for optimising: {run['reviews']:,} (at least 512 needed)." in schedule.replace(
        "&#x27;", "'")
    # a later run that finds no better fit keeps the parameters, and says so
    kept = {**svc.schedule(USER), "optimized": {**run, "adopted": False}}
    assert "your own, fitted earlier; optimising again on" in tab_progress.parameters_origin(kept)
    assert "the defaults; optimising on" in tab_progress.parameters_origin({**kept, "default_parameters": True})


def test_a_study_database_that_cannot_be_read_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "study.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    svc = StudyService(Settings(storage={"home": tmp_path / "home", "study_db": bad}))
    calendar, retention, forecast, schedule, _ = tab_progress.figures(svc, USER)
    text = re.sub(r"<[^>]+>", "", calendar)
    one_sentence(text)
    assert "sb-error" in calendar and retention == forecast == schedule == ""
    rs = tab_review.suspend(svc, USER, tab_review.ReviewState(item_id=1))
    one_sentence(rs.message)
