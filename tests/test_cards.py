"""FSRS the way Anki users expect, on a real SQLite file: card control (edit, suspend, bury, delete) and its effect
on review, a user's desired retention and FSRS parameters optimised on their reviews, the Progress figures
(calendar, true retention, forecast), the `card` and `schedule` commands, and the schema migration of a database
written by the previous version."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from rag.quiz.models import QuizItem
from rag.settings import Settings
from rag.study import store as store_module
from rag.study.schedule import DEFAULT_PARAMETERS, counted_reviews, log_loss, make_scheduler, simulate_reviews
from rag.study.store import StudyStore, StudyStoreError
from rag.types import Citation
from ui.cli import main
from ui.service import StudyService

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EST = timezone(timedelta(hours=-5))
# A student who forgets faster than FSRS's defaults assume (smaller initial stabilities, a smaller stability
# increase after a success, a steeper forgetting curve); all within fsrs's bounds.
TRUE_PARAMETERS = [0.1, 0.4, 0.9, 3.0, *DEFAULT_PARAMETERS[4:8], 1.2, *DEFAULT_PARAMETERS[9:20], 0.35]
RETENTION = Settings().study.desired_retention  # a user who set none


def item(q: str, section: str = "Regularization", kind: str = "flashcard") -> QuizItem:
    cite = Citation(n=1, chunk_id="c1", source="doc.md", title="Doc", section=section, page=None,
                    text="L1 drives weights to zero.")
    options = ["zero weights", "larger weights", "more layers", "a lower learning rate"] if kind == "mcq" else []
    return QuizItem(type=kind, question=q, answer="zero weights", explanation="", options=options, citation=cite)


def due_ids(store: StudyStore, user: str, now: datetime) -> list[int]:
    return [d.item_id for d in store.due(user, now=now)]


def one_sentence(text: str) -> None:
    assert "\n" not in text.strip() and text.strip().endswith(".") and "Traceback" not in text


# --- card control ------------------------------------------------------------------------------------------
def test_editing_a_card_keeps_its_schedule_and_history(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    a, b, m = store.add_items("ann", [item("What does L1 do?"), item("What does L2 do?"),
                                      item("Which of these best describes L1?", kind="mcq")], now=T0)
    nxt = store.review("ann", a, "easy", now=T0)
    edited = store.edit_card("ann", a, question="  What does L1 regularization do?  ", answer="drives weights to 0")
    assert edited.item.question == "What does L1 regularization do?" and edited.item.answer == "drives weights to 0"
    assert edited.reviews == 1 and edited.due == nxt and edited.state == "review"
    assert due_ids(store, "ann", nxt) == [b, m, a]  # still scheduled as before, with its new text
    assert store.due("ann", now=nxt)[-1].item.question == "What does L1 regularization do?"
    assert "What does L1 regularization do?" in store.questions("ann")
    assert sum(s["reviews"] for s in store.mastery("ann", now=nxt)) == 1
    # an MCQ's key option is the answer: it is rewritten in place, the wrong options stay
    mcq = store.edit_card("ann", m, answer="sparse weights")
    assert mcq.item.options == ["sparse weights", "larger weights", "more layers", "a lower learning rate"]
    assert mcq.item.answer_index == 0
    for bad, match in (({"question": "What does L2 do?"}, f"Card {b} already asks"),
                       ({"answer": "   "}, "cannot be empty"), ({}, "Nothing to change")):
        with pytest.raises(StudyStoreError, match=match) as err:
            store.edit_card("ann", a, **bad)
        one_sentence(str(err.value))
    with pytest.raises(StudyStoreError, match="one of the card's wrong options"):
        store.edit_card("ann", m, answer="more layers")
    with pytest.raises(StudyStoreError, match=f"no card {a} for bob"):
        store.edit_card("bob", a, question="Mine now?")


def test_suspended_and_buried_cards_are_not_due_and_deleted_ones_are_gone(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    a, b, c = store.add_items("ann", [item("Qa?"), item("Qb?"), item("Qc?")], now=T0)
    assert due_ids(store, "ann", T0) == [a, b, c]

    assert store.suspend("ann", a).suspended
    assert due_ids(store, "ann", T0 + timedelta(days=400)) == [b, c]  # never due while suspended
    assert [x.item_id for x in store.cards("ann", "suspended")] == [a]
    assert store.due_forecast("ann", days=3, now=T0, tz=UTC)[0] == {"day": "2026-12-01", "count": 2}

    # Buried at 09:00 UTC by a student five hours behind UTC (04:00 their time): back at their next midnight.
    buried = store.bury("ann", b, now=T0, tz=EST)
    assert buried.buried_until == datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    assert due_ids(store, "ann", T0) == [c]
    assert due_ids(store, "ann", datetime(2026, 12, 2, 4, 59, tzinfo=UTC)) == [c]
    assert due_ids(store, "ann", datetime(2026, 12, 2, 5, 0, tzinfo=UTC)) == [b, c]
    assert [x.item_id for x in store.cards("ann", "buried", now=T0)] == [b]
    assert store.due_forecast("ann", days=3, now=T0, tz=EST) == [
        {"day": "2026-12-01", "count": 1}, {"day": "2026-12-02", "count": 1}, {"day": "2026-12-03", "count": 0}]
    assert store.next_due("ann") == T0  # c; b only from its burial's end, a never

    # Unsuspend / unbury: due again as scheduled; reviewing a buried card ends its burial.
    assert not store.suspend("ann", a, False).suspended and store.unbury("ann", b).buried_until is None
    assert due_ids(store, "ann", T0) == [a, b, c]
    store.bury("ann", c, now=T0, tz=UTC)
    store.review("ann", c, "good", now=T0)
    assert store.card("ann", c).buried_until is None

    # Deleted: gone from review, progress and the optimiser's history; its question is never asked again.
    store.review("ann", a, "again", now=T0)
    gone = store.delete_card("ann", a)
    assert gone.reviews == 1 and gone.item.question == "Qa?"
    assert a not in due_ids(store, "ann", T0 + timedelta(days=1)) and a not in [x.item_id for x in store.cards("ann")]
    assert sum(s["reviews"] for s in store.mastery("ann", now=T0)) == 1  # c's review; a's went with it
    with pytest.raises(StudyStoreError, match=f"no card {a} for ann"):
        store.review("ann", a, "good", now=T0)
    assert "Qa?" in store.questions("ann")  # a quiz avoids the questions the student deleted
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM reviews WHERE item_id = ?", (a,)).fetchone()[0] == 0


# --- desired retention and optimised parameters ------------------------------------------------------------
def test_desired_retention_changes_the_next_interval(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    interval = {}
    for user, retention in (("low", 0.8), ("default", None), ("high", 0.95)):
        [card] = store.add_items(user, [item("What does L1 do?")], now=T0)
        if retention is not None:
            schedule = store.set_retention(user, retention)
            assert schedule["desired_retention"] == retention and not schedule["default_retention"]
            assert schedule["warning"] is None
        interval[user] = store.review(user, card, "easy", now=T0) - T0
    # the same card, the same rating: a lower target waits longer, a higher one comes back sooner
    assert interval["low"] > interval["default"] > interval["high"] >= timedelta(days=1)
    assert store.schedule("default")["desired_retention"] == 0.9 and store.schedule("default")["default_retention"]

    # Changing it later changes the next interval, not the due date a card already has (as in Anki).
    [card] = store.add_items("ann", [item("Q?")], now=T0)
    due = store.review("ann", card, "easy", now=T0)
    warned = store.set_retention("ann", 0.98)
    assert store.card("ann", card).due == due
    assert warned["warning"] is not None and "0.98" in warned["warning"] and "0.97" in warned["warning"]
    one_sentence(warned["warning"])
    for bad in (0.5, 1.0, 0.995):
        with pytest.raises(StudyStoreError, match="out of range") as err:
            store.set_retention("ann", bad)
        one_sentence(str(err.value))
    # A weak spot is a section below the user's own target: 3 of 4 right is weak at 0.9, not at 0.7.
    cards = store.add_items("weak", [item(f"W{i}?", section="PCA") for i in range(4)], now=T0)
    for card, rating in zip(cards, ["good", "good", "good", "again"], strict=True):
        store.review("weak", card, rating, now=T0)
    assert [s["section"] for s in store.weak_sections("weak", now=T0)] == ["PCA"]
    store.set_retention("weak", 0.7)
    assert store.weak_sections("weak", now=T0) == []


def test_optimising_is_refused_below_the_minimum_of_reviews(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    ids = store.add_items("ann", [item(f"Q{i}?") for i in range(5)], now=T0)
    for day in range(3):
        for i in ids:
            store.review("ann", i, "good", now=T0 + timedelta(days=2 * day))
    assert store.schedule("ann")["reviews_counted"] == 10  # the second and third review of each card
    with pytest.raises(StudyStoreError, match="needs at least 512 reviews") as err:
        store.optimize("ann")
    one_sentence(str(err.value))
    assert "there are 10 so far" in str(err.value)
    assert store.schedule("ann")["default_parameters"] and store.schedule("ann")["optimized"] is None


def test_optimised_parameters_are_stored_and_used_by_the_scheduler(tmp_path: Path) -> None:
    history = simulate_reviews(TRUE_PARAMETERS, cards=60, days=200, seed=1, retention=RETENTION)
    assert counted_reviews(history) >= 512
    store = StudyStore(tmp_path / "study.sqlite3")
    ids = store.add_items("ann", [item(f"Card {n}?") for n in range(60)], now=history[0].at - timedelta(days=1))
    for r in sorted(history, key=lambda r: r.at):
        store.review("ann", ids[r.card - 1], r.rating, now=r.at)
    start = time.perf_counter()
    result = store.optimize("ann", now=T0)
    seconds = time.perf_counter() - start
    run = result["optimization"]
    assert run["reviews"] == counted_reviews(history) and run["adopted"]
    assert run["log_loss_after"] < run["log_loss_before"]
    assert run["log_loss_before"] == pytest.approx(log_loss(history), abs=1e-4)  # the defaults were in use
    assert not result["default_parameters"] and result["parameters"] != list(DEFAULT_PARAMETERS)
    assert result["optimized"] == run
    print(f"optimised on {run['reviews']} reviews in {seconds:.1f} s: {run['log_loss_before']} -> "
          f"{run['log_loss_after']}")

    # The scheduler of ann's next reviews uses them (a new process reads them from the file) ...
    again = StudyStore(store.path)
    assert list(again.scheduler("ann").parameters) == pytest.approx(result["parameters"])
    assert list(again.scheduler("bob").parameters) == pytest.approx(list(DEFAULT_PARAMETERS))
    # ... so the same reviews of the same card give ann other intervals than a default user (the first,
    # "easy", is the initial stability in days at 0.9 either way: 8).
    later = T0 + timedelta(days=400)
    due = {}
    for user in ("ann", "bob"):
        [card] = again.add_items(user, [item("New card?")], now=later)
        when = later
        for rating in ("easy", "good", "good"):
            when = again.review(user, card, rating, now=when)
        due[user] = when
    assert due["ann"] != due["bob"]


# --- Progress: calendar, true retention, forecast ----------------------------------------------------------
def test_calendar_true_retention_and_forecast_on_a_known_history(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    a, b, c = store.add_items("ann", [item("Qa?"), item("Qb?"), item("Qc?")], now=T0)
    # fsrs 6.3.2, defaults, no fuzzing: easy -> 8 days (review state), good -> 39 days, good -> 153 days.
    t1 = store.review("ann", a, "easy", now=T0)
    assert t1 - T0 == timedelta(days=8)
    t2 = store.review("ann", a, "good", now=t1)  # young: interval 8 days, passed
    t3 = store.review("ann", a, "good", now=t2)  # mature: interval 39 days, passed
    store.review("ann", a, "again", now=t3)  # mature: interval 153 days, failed
    store.review("ann", b, "again", now=T0)  # learning: not counted
    store.review("ann", b, "good", now=T0 + timedelta(minutes=10))  # a learning step: not counted either
    now = t3 + timedelta(hours=1)

    retention = store.true_retention("ann", now=now)
    assert retention["young"] == {"reviews": 1, "passed": 1, "retention": 1.0}
    assert retention["mature"] == {"reviews": 2, "passed": 1, "retention": 0.5}
    assert retention["total"] == {"reviews": 3, "passed": 2, "retention": 0.667} and retention["mature_days"] == 21
    assert store.true_retention("ann", days=30, now=now)["mature"]["reviews"] == 1  # only t3's
    assert store.true_retention("bob", now=now)["total"]["retention"] is None

    cal = store.review_calendar("ann", months=12, now=t3 + timedelta(days=1), tz=UTC)
    counts = {d["day"]: d["count"] for d in cal["days"] if d["count"]}
    assert counts == {T0.date().isoformat(): 3, t1.date().isoformat(): 1, t2.date().isoformat(): 1,
                      t3.date().isoformat(): 1}
    assert cal["days"][-1]["day"] == (t3 + timedelta(days=1)).date().isoformat() and cal["total"] == 6
    assert cal["days"][0]["day"] == "2026-06-21" and len(cal["days"]) == 365  # 12 months before 2027-06-20, + 1
    assert cal["days_studied"] == 4 and cal["longest_streak"] == 1
    assert cal["current_streak"] == 1  # reviewed yesterday, not yet today: the streak holds
    assert store.review_calendar("ann", months=1, now=t3 + timedelta(days=2), tz=UTC)["current_streak"] == 0
    assert len(store.review_calendar("ann", months=1, now=datetime(2027, 3, 31, tzinfo=UTC), tz=UTC)["days"]) == 31

    forecast = store.due_forecast("ann", days=30, now=T0, tz=UTC)
    assert len(forecast) == 30 and forecast[0] == {"day": "2026-12-01", "count": 2}  # b (10 min) and c (new)
    store.suspend("ann", c)
    assert store.due_forecast("ann", days=30, now=T0, tz=UTC)[0]["count"] == 1
    # In a time zone ahead of UTC a late review falls on the next local day.
    late = T0.replace(hour=23)
    [d] = store.add_items("eve", [item("Qd?")], now=late)
    store.review("eve", d, "good", now=late)
    ahead = timezone(timedelta(hours=2))
    assert [x["day"] for x in store.review_calendar("eve", 1, now=late, tz=ahead)["days"] if x["count"]] == ["2026-12-02"]


# --- the CLI -----------------------------------------------------------------------------------------------
def test_card_and_schedule_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc = StudyService(Settings(storage={"home": tmp_path / "home"}))
    a, b = svc.study.add_items("ann", [item("What does L1 do?"), item("What does dropout do?")])

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv), service=svc)
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("card", "list", "--user", "ann", "--json")
    assert code == 0 and [c["item_id"] for c in json.loads(out)["cards"]] == [a, b]
    code, out, _ = run("card", "edit", str(a), "--question", "What does L1 regularization do?", "--user", "ann",
                       "--json")
    assert code == 0 and json.loads(out)["card"]["question"] == "What does L1 regularization do?"
    code, out, _ = run("card", "suspend", str(a), "--user", "ann")
    assert code == 0 and out.startswith(f"Card {a} suspended")
    code, out, _ = run("review", "--user", "ann", "--json")
    assert [d["item_id"] for d in json.loads(out)["due"]] == [b]
    code, out, _ = run("card", "bury", str(b), "--user", "ann", "--json")
    card = json.loads(out)["card"]
    assert code == 0 and datetime.fromisoformat(card["buried_until"]) > datetime.now(UTC)
    assert json.loads(run("review", "--user", "ann", "--json")[1]) == {"due": []}
    code, out, _ = run("card", "list", "--which", "suspended", "--user", "ann")
    assert code == 0 and str(a) in out and "suspended" in out and "What does L1 regularization do?" in out
    assert run("card", "unsuspend", str(a), "--user", "ann")[0] == 0
    assert run("card", "unbury", str(b), "--user", "ann")[0] == 0
    assert len(json.loads(run("review", "--user", "ann", "--json")[1])["due"]) == 2
    code, out, _ = run("card", "delete", str(b), "--user", "ann", "--json")
    assert code == 0 and json.loads(out)["deleted"]["item_id"] == b
    code, out, err = run("card", "delete", str(b), "--user", "ann", "--json")
    assert code == 2 and "no card" in json.loads(out)["error"] and err.startswith("error: ")
    code, out, err = run("card", "edit", str(a), "--question", "Mine?", "--user", "bob")
    assert code == 2 and out == "" and f"no card {a} for bob" in err

    code, out, _ = run("schedule", "--user", "ann", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["desired_retention"] == 0.9 and shown["default_parameters"]
    assert shown["optimize_min_reviews"] == 512 and shown["reviews_counted"] == 0 and len(shown["parameters"]) == 21
    code, out, _ = run("schedule", "--user", "ann", "--retention", "0.98")
    assert code == 0 and "desired retention: 0.98" in out and "warning: A desired retention of 0.98" in out
    code, out, _ = run("schedule", "--user", "ann", "--retention", "0.85", "--json")
    assert json.loads(out)["desired_retention"] == 0.85 and json.loads(out)["warning"] is None
    code, out, err = run("schedule", "--user", "ann", "--retention", "1.5", "--json")
    assert code == 2 and "out of range" in json.loads(out)["error"]
    code, out, err = run("schedule", "--user", "ann", "--optimize")
    assert code == 2 and "needs at least 512 reviews" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_:
        main(["schedule", "--user", "ann", "--retention", "abc", "--json"], service=svc)
    assert exit_.value.code == 2 and "invalid float value" in json.loads(capsys.readouterr().out)["error"]


# --- schema migration --------------------------------------------------------------------------------------
def test_a_database_of_the_previous_schema_is_upgraded_and_keeps_working(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema-1 database as the previous version wrote it (items, cards, reviews without state or interval,
    no user settings) opens, is upgraded in place, and its history counts."""
    from fsrs import Card, Rating

    path = tmp_path / "study.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        old = StudyStore(path)
        [a, b] = old.add_items("ann", [item("Qa?"), item("Qb?")], now=T0)
        old.close()
    with sqlite3.connect(path) as db:  # reviews as schema 1 recorded them
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        card = Card.from_dict(json.loads(db.execute("SELECT fsrs FROM cards WHERE item_id = ?", (a,)).fetchone()[0]))
        for when, rating in ((T0, 4), (T0 + timedelta(days=8), 3), (T0 + timedelta(days=47), 1)):
            card, _ = make_scheduler(None, RETENTION).review_card(card, Rating(rating), review_datetime=when)
            db.execute("INSERT INTO reviews (user, item_id, rating, correct, answer, reviewed_at) VALUES (?, ?, ?, ?, ?, ?)",
                       ("ann", a, rating, None, "", when.isoformat()))
        db.execute("UPDATE cards SET due = ?, fsrs = ? WHERE item_id = ?",
                   (card.due.isoformat(), json.dumps(card.to_dict()), a))

    store = StudyStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS) == 2
    now = T0 + timedelta(days=47, hours=1)
    assert due_ids(store, "ann", now) == [b, a]
    assert store.card("ann", a).reviews == 3 and not store.card("ann", a).suspended
    # the old reviews count: the 8-day gap as a young card's, the 39-day gap as a mature card's
    retention = store.true_retention("ann", now=now)
    assert retention["young"]["reviews"] == 1 and retention["mature"] == {"reviews": 1, "passed": 0, "retention": 0.0}
    assert store.schedule("ann")["reviews_counted"] == 2 and store.schedule("ann")["default_retention"]
    store.review("ann", b, "good", now=now)
    store.suspend("ann", a)
    store.set_retention("ann", 0.85)
    assert due_ids(store, "ann", now) == [] and StudyStore(path).schedule("ann")["desired_retention"] == 0.85
