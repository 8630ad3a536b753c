"""Study state, persisted: the quiz items each user was asked, every answer and grade, FSRS review cards and
saved conversations, in one SQLite file under ``STUDYBOT_HOME`` (``study.sqlite3``).

The schema is versioned (``PRAGMA user_version``, upgraded in order by :data:`MIGRATIONS`); every write is
one transaction; the database runs in WAL mode with a busy timeout, so several web UI users (threads) and a
CLI process can use it at once. Scheduling is the ``fsrs`` package's :class:`fsrs.Scheduler` with the user's
desired retention and (once optimised on their reviews, :mod:`rag.study.schedule`) their own parameters; a
card's FSRS state is stored as its ``to_dict()`` JSON. A card can be edited (its history kept), suspended,
buried until the student's next local day, or deleted (with its history; its question is remembered so that
a quiz never asks it again).

Every SQLite error (a damaged file, a locked or full disk) leaves a public method as one
:class:`rag.errors.StudyDatabaseError` sentence naming the file and the fix. With a :class:`BackupPolicy` the
store backs itself up (:mod:`rag.study.backup`): when a process first opens it and after a day's first write.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from rag.errors import StudybotError, StudyDatabaseError
from rag.quiz.models import QuizItem
from rag.settings import StudySettings
from rag.study import backup
from rag.study.backup import BackupPolicy

if TYPE_CHECKING:
    from fsrs import Scheduler

    from rag.study.schedule import Review

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

RATINGS = {"again": 1, "hard": 2, "good": 3, "easy": 4}
# The quiz grader's verdict as an FSRS rating when a quiz answer is a card's review ("revealed": a flashcard
# turned over without an answer is not a review; the card stays due).
VERDICT_RATING = {"correct": "good", "partial": "hard", "incorrect": "again"}
LOCAL_USER = "local"  # the one user of the CLI without --user and of the web UI without --auth
# Mastery weighs each review by its age: a review this many days old counts half. Two weeks, the Progress charts'
# window: set by hand with mastery (2026-12-02), not tuned on students' reviews.
MASTERY_HALF_LIFE_DAYS = 14
STATES = {1: "learning", 2: "review", 3: "relearning"}  # fsrs.State; a card never reviewed is "new"

MIGRATIONS: list[str] = [
    # 1: items, cards, reviews, conversations
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        question TEXT NOT NULL,
        payload TEXT NOT NULL,
        chunk_id TEXT NOT NULL,
        content_hash TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        section TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL,
        stale INTEGER NOT NULL DEFAULT 0,
        UNIQUE (user, question)
    );
    CREATE TABLE cards (
        item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
        user TEXT NOT NULL,
        due TEXT NOT NULL,
        fsrs TEXT NOT NULL
    );
    CREATE INDEX cards_due ON cards (user, due);
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL,
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        rating INTEGER NOT NULL,
        correct INTEGER,
        answer TEXT NOT NULL DEFAULT '',
        reviewed_at TEXT NOT NULL
    );
    CREATE INDEX reviews_user ON reviews (user, reviewed_at);
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        title TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        turns TEXT NOT NULL
    );
    CREATE INDEX conversations_user ON conversations (user, updated);
    """,
    # 2: card control (suspend, bury), what a review met (the card's FSRS state and interval before it: true
    # retention), a user's schedule (desired retention, optimised parameters), deleted cards' questions
    """
    ALTER TABLE cards ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cards ADD COLUMN buried_until TEXT;
    ALTER TABLE reviews ADD COLUMN state INTEGER;
    ALTER TABLE reviews ADD COLUMN interval_days REAL;
    CREATE TABLE user_settings (
        user TEXT PRIMARY KEY,
        desired_retention REAL,
        parameters TEXT,
        optimized TEXT,
        updated TEXT NOT NULL
    );
    CREATE TABLE deleted_questions (
        user TEXT NOT NULL,
        question TEXT NOT NULL,
        deleted TEXT NOT NULL,
        PRIMARY KEY (user, question)
    );
    """,
]


class StudyStoreError(StudybotError):
    """The study database cannot be used; ``str(err)`` is one sentence for the user."""


def now_utc() -> datetime:
    return datetime.now(UTC)


# The study databases this process has opened once (a backup on start is taken at most once per process).
_OPENED: set[str] = set()
_OPENED_LOCK = threading.Lock()


def _guarded(method: Callable[Concatenate[StudyStore, P], R]) -> Callable[Concatenate[StudyStore, P], R]:
    """Any SQLite error in ``method`` reaches the caller as one :class:`StudyDatabaseError` sentence."""

    @functools.wraps(method)
    def wrapper(self: StudyStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise backup.database_error(self.path, exc) from exc

    return wrapper


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC)


def _local(when: datetime, tz: tzinfo | None) -> datetime:
    """``when`` in the student's time zone (None: this machine's)."""
    return when.astimezone(tz) if tz is not None else when.astimezone()


def top_section(section: str, source: str = "") -> str:
    """The unit mastery is measured on: a handbook's top-level section ("Section 8 — Ensemble Methods" of
    "Section 8 — Ensemble Methods > Bagging"), or the document when a passage has no section."""
    return section.split(" > ")[0].strip() if section else (source or "(start)")


@dataclass(frozen=True)
class DueCard:
    item_id: int
    item: QuizItem
    section: str
    source: str
    due: datetime
    stale: bool

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "question": self.item.question, "type": self.item.type,
                "section": self.section, "source": self.source, "due": self.due.isoformat(),
                "stale": self.stale}


@dataclass(frozen=True)
class CardInfo:
    """A card as the Review tab and ``studybot card`` show it (suspended and buried ones included)."""

    item_id: int
    item: QuizItem
    section: str
    source: str
    due: datetime
    stale: bool
    suspended: bool
    buried_until: datetime | None
    state: str  # new, learning, review or relearning
    reviews: int

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "question": self.item.question, "answer": self.item.answer,
                "type": self.item.type, "section": self.section, "source": self.source, "due": self.due.isoformat(),
                "stale": self.stale, "suspended": self.suspended,
                "buried_until": self.buried_until.isoformat() if self.buried_until else None,
                "state": self.state, "reviews": self.reviews}


class StudyStore:
    """One SQLite file; safe to share between threads (one connection per thread).

    ``backups``: where to back it up and how many backups to keep (None: no backups); ``clock``: the time a
    backup is stamped with and whose calendar day (local time) decides a day's first write; ``study``: the
    schedule's defaults and thresholds (desired retention, the optimiser's minimum, mature cards)."""

    @_guarded
    def __init__(self, path: Path, backups: BackupPolicy | None = None,
                 clock: Callable[[], datetime] = now_utc, study: StudySettings | None = None) -> None:
        self.path = Path(path)
        self.settings = study or StudySettings()
        self._local = threading.local()
        self._backups = backups
        self._clock = clock
        self._backup_lock = threading.Lock()
        self._backup_day: date | None = None  # the local day of the newest backup this store knows of
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StudyStoreError(
                    f"{self.path} was written by a newer studybot (schema {version}); upgrade studybot to use it.")
            for i in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[i].split(";"):  # not executescript: it would commit half-way
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {i + 1}")
        if self._backups is not None:
            self._backup_on_open(existed)

    # -- connection ---------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error:
                db.close()
                raise
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection (the last one to close folds the write-ahead log into the file)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        before = db.total_changes
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (a damaged page, a full disk)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if db.total_changes != before:
            self._after_write()

    # -- backups (rag.study.backup) -----------------------------------------------------------------------
    def _backup_on_open(self, existed: bool) -> None:
        """At a process's first open: back up a database that has rows and changed since its newest backup.
        Raises :class:`StudyDatabaseError` when the database is damaged (it is not backed up)."""
        assert self._backups is not None
        key = str(self.path.resolve())
        with _OPENED_LOCK:
            if key in _OPENED:
                return
        if existed and self._has_rows():
            found = backup.backups(self._backups.folder, self.path.stem)
            if not found or backup.changed_since(self.path, found[-1]):
                backup.take(self.path, self._backups, self._clock())
        with _OPENED_LOCK:
            _OPENED.add(key)

    def _has_rows(self) -> bool:
        row = self._db().execute("SELECT EXISTS (SELECT 1 FROM items) OR EXISTS (SELECT 1 FROM conversations)")
        return bool(row.fetchone()[0])

    def _after_write(self) -> None:
        """The day's first write (local calendar day, by the clock) is followed by a backup, unless one was
        taken that day already (by this process or another). A damaged database is not backed up; the
        write itself stands, and the next read that meets the damage reports it."""
        if self._backups is None:
            return
        today = self._clock().astimezone().date()
        if self._backup_day is not None and self._backup_day >= today:
            return
        with self._backup_lock:
            found = backup.backups(self._backups.folder, self.path.stem)
            newest = found[-1].taken.astimezone().date() if found else None
            if newest is not None and newest >= today:
                self._backup_day = newest
                return
            self._backup_day = today  # tried today: at most one attempt a day, even when it fails
            try:
                backup.take(self.path, self._backups, self._clock())
            except StudyDatabaseError as exc:
                log.warning("studybot: %s", exc)

    @_guarded
    def backup_now(self) -> backup.Backup | None:
        """Back the database up now (kept only when it passes ``quick_check``); None without a backup policy or
        when the copy could not be written. Raises :class:`StudyDatabaseError` when the database is damaged."""
        if self._backups is None:
            return None
        with self._backup_lock:
            taken = backup.take(self.path, self._backups, self._clock())
            if taken is not None:
                self._backup_day = taken.taken.astimezone().date()
            return taken

    # -- items and cards ----------------------------------------------------------------------------------
    @_guarded
    def add_items(self, user: str, items: Iterable[QuizItem], content_hashes: dict[str, str] | None = None,
                  now: datetime | None = None) -> list[int]:
        """Record quiz items for ``user``; each new one becomes an FSRS card due at once. Returns their ids
        (an item the user already has keeps its id and its schedule)."""
        from fsrs import Card

        now = now or now_utc()
        ids: list[int] = []
        with self._tx() as db:
            for item in items:
                c = item.citation
                row = db.execute("SELECT id FROM items WHERE user = ? AND question = ?", (user, item.question)).fetchone()
                if row is not None:
                    ids.append(int(row["id"]))
                    continue
                cur = db.execute(
                    "INSERT INTO items (user, kind, question, payload, chunk_id, content_hash, source, section, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user, item.type, item.question, json.dumps(item.to_json(), ensure_ascii=False), c.chunk_id,
                     (content_hashes or {}).get(c.chunk_id, ""), c.source, c.section, now.isoformat()))
                item_id = int(cur.lastrowid or 0)
                card = Card(due=now)
                db.execute("INSERT INTO cards (item_id, user, due, fsrs) VALUES (?, ?, ?, ?)",
                           (item_id, user, card.due.isoformat(), json.dumps(card.to_dict())))
                ids.append(item_id)
        return ids

    @_guarded
    def questions(self, user: str) -> list[str]:
        """Every question ``user`` already has or deleted (a new quiz never repeats one)."""
        return [r["question"] for r in self._db().execute(
            "SELECT question FROM items WHERE user = ? UNION ALL SELECT question FROM deleted_questions WHERE user = ?"
            " AND question NOT IN (SELECT question FROM items WHERE user = ?)", (user, user, user))]

    @_guarded
    def chunk_ids(self, user: str) -> set[str]:
        """The passages ``user``'s cards were written from."""
        return {r["chunk_id"] for r in self._db().execute("SELECT chunk_id FROM items WHERE user = ?", (user,))}

    @_guarded
    def due(self, user: str, now: datetime | None = None, limit: int = 100) -> list[DueCard]:
        """The cards due now, the longest due first; a suspended card, or one buried until a later time, is not."""
        stamp = _utc(now or now_utc()).isoformat()
        rows = self._db().execute(
            "SELECT items.id, payload, section, source, stale, cards.due FROM cards JOIN items ON items.id = cards.item_id"
            " WHERE cards.user = ? AND cards.due <= ? AND cards.suspended = 0"
            " AND (cards.buried_until IS NULL OR cards.buried_until <= ?) ORDER BY cards.due LIMIT ?",
            (user, stamp, stamp, limit)).fetchall()
        return [DueCard(int(r["id"]), QuizItem.from_json(json.loads(r["payload"])), r["section"], r["source"],
                        datetime.fromisoformat(r["due"]), bool(r["stale"])) for r in rows]

    @_guarded
    def review(self, user: str, item_id: int, rating: int | str, *, answer: str = "", correct: bool | None = None,
               now: datetime | None = None) -> datetime:
        """Grade one card (1-4 or again/hard/good/easy) with FSRS at the user's desired retention and parameters
        (:meth:`scheduler`); returns its next due time. A buried card reviewed anyway is no longer buried."""
        from fsrs import Card, Rating

        value = RATINGS.get(str(rating).lower(), rating) if isinstance(rating, str) else rating
        if value not in (1, 2, 3, 4):
            raise StudyStoreError(f"Unknown rating {rating!r}: use again, hard, good or easy.")
        now = _utc(now or now_utc())
        with self._tx() as db:
            row = db.execute("SELECT fsrs FROM cards WHERE item_id = ? AND user = ?", (item_id, user)).fetchone()
            if row is None:
                raise StudyStoreError(f"There is no card {item_id} for {user}.")
            before = Card.from_dict(json.loads(row["fsrs"]))
            interval = (before.due - before.last_review).total_seconds() / 86400 if before.last_review else None
            card, _log = self._scheduler(db, user).review_card(before, Rating(int(value)), review_datetime=now)
            db.execute("UPDATE cards SET due = ?, fsrs = ?, buried_until = NULL WHERE item_id = ?",
                       (card.due.isoformat(), json.dumps(card.to_dict()), item_id))
            db.execute("INSERT INTO reviews (user, item_id, rating, correct, answer, reviewed_at, state, interval_days)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (user, item_id, int(value), None if correct is None else int(correct), answer, now.isoformat(),
                        int(before.state.value), interval))
        return card.due

    @_guarded
    def mark_stale(self, current: dict[str, str]) -> int:
        """After a re-ingest: cards whose chunk is gone or whose text changed (``current``: chunk id -> content
        hash) are marked stale (shown as such, never deleted). Returns how many changed state."""
        changed = 0
        with self._tx() as db:
            for r in db.execute("SELECT id, chunk_id, content_hash, stale FROM items").fetchall():
                stale = r["chunk_id"] not in current or bool(r["content_hash"]) and current[r["chunk_id"]] != r["content_hash"]
                if stale != bool(r["stale"]):
                    db.execute("UPDATE items SET stale = ? WHERE id = ?", (int(stale), r["id"]))
                    changed += 1
        return changed

    # -- history ------------------------------------------------------------------------------------------
    @_guarded
    def mastery(self, user: str, now: datetime | None = None) -> list[dict[str, Any]]:
        """Per top-level handbook section the user has cards in, weakest first:

        * ``mastery``: the recency-weighted share of its reviews rated good or easy (a review's weight halves
          every :data:`MASTERY_HALF_LIFE_DAYS`), 0 for a section never reviewed. Not FSRS retrievability: right
          after a review every card's retrievability is near 1, a card just forgotten included;
        * ``retrievability``: the mean FSRS probability of recalling its reviewed cards now (None if none). FSRS
          counts whole days since a card's last review, so it is 1.0 all day after a review, a wrong one too;
        * ``recall_tomorrow``: the same a day from now, which tells a card just forgotten (short stability)
          from one just remembered (what the Progress tab shows);
        * ``right`` (plain share of good/easy reviews, None without reviews), ``reviews``, ``cards``."""
        from fsrs import Card

        now = _utc(now or now_utc())
        scheduler = self._scheduler(self._db(), user)
        sections: dict[str, dict[str, Any]] = {}
        cards = self._db().execute(
            "SELECT items.id, items.section, items.source, cards.fsrs FROM items JOIN cards ON cards.item_id = items.id"
            " WHERE items.user = ?", (user,)).fetchall()
        reviews: dict[int, list[tuple[datetime, int]]] = {}
        for r in self._db().execute("SELECT item_id, rating, reviewed_at FROM reviews WHERE user = ?", (user,)):
            reviews.setdefault(int(r["item_id"]), []).append((datetime.fromisoformat(r["reviewed_at"]), int(r["rating"])))
        for r in cards:
            key = top_section(r["section"], r["source"])
            e = sections.setdefault(key, {"section": key, "source": r["source"], "w": 0.0, "w_right": 0.0,
                                          "reviews": 0, "good": 0, "r": [], "r1": [], "cards": 0})
            e["cards"] += 1
            done = reviews.get(int(r["id"]), [])
            for when, rating in done:
                weight = 0.5 ** (max((now - when).total_seconds(), 0.0) / 86400 / MASTERY_HALF_LIFE_DAYS)
                e["w"] += weight
                e["w_right"] += weight * (rating >= 3)
                e["reviews"] += 1
                e["good"] += rating >= 3
            if done:
                card = Card.from_dict(json.loads(r["fsrs"]))
                e["r"].append(scheduler.get_card_retrievability(card, now))
                e["r1"].append(scheduler.get_card_retrievability(card, now + timedelta(days=1)))
        out = [{"section": e["section"], "source": e["source"],
                "mastery": round(e["w_right"] / e["w"], 3) if e["w"] else 0.0,
                "retrievability": round(sum(e["r"]) / len(e["r"]), 3) if e["r"] else None,
                "recall_tomorrow": round(sum(e["r1"]) / len(e["r1"]), 3) if e["r1"] else None,
                "right": round(e["good"] / e["reviews"], 3) if e["reviews"] else None,
                "reviews": e["reviews"], "cards": e["cards"]} for e in sections.values()]
        return sorted(out, key=lambda e: (e["mastery"], e["section"]))

    @_guarded
    def weak_sections(self, user: str, k: int = 3, now: datetime | None = None) -> list[dict[str, Any]]:
        """The (at most ``k``) sections the user does worst on: reviewed at least once and below the user's
        desired retention (``study.desired_retention`` until they set one: its cards are, on average, less likely
        to be recalled than the scheduler aims for), lowest mastery first, then lowest retrievability. Sections
        never reviewed are not weak spots (they are due in Review)."""
        target = self._retention(self._db(), user)
        rows = [m for m in self.mastery(user, now) if m["reviews"] and m["mastery"] < target]
        rows.sort(key=lambda m: (m["mastery"], m["retrievability"] or 0.0, m["section"]))
        return rows[:k]

    @_guarded
    def activity(self, user: str, now: datetime | None = None, days: int = 14) -> dict[str, list[dict[str, Any]]]:
        """For the Progress charts: reviews per day over the last ``days`` days and cards due per day over
        the next ``days`` (everything already due counts today; suspended cards do not count, a buried one on
        the day it comes back), dates in UTC."""
        now = _utc(now or now_utc())
        today = now.date()
        past = {(today - timedelta(days=d)).isoformat(): 0 for d in range(days - 1, -1, -1)}
        for r in self._db().execute("SELECT reviewed_at FROM reviews WHERE user = ?", (user,)):
            day = datetime.fromisoformat(r["reviewed_at"]).date().isoformat()
            if day in past:
                past[day] += 1
        ahead = {(today + timedelta(days=d)).isoformat(): 0 for d in range(days)}
        for when in self._due_times(user):
            day = max(_utc(when).date(), today).isoformat()
            if day in ahead:
                ahead[day] += 1
        return {"reviews": [{"day": d, "count": n} for d, n in past.items()],
                "due": [{"day": d, "count": n} for d, n in ahead.items()]}

    @_guarded
    def next_due(self, user: str) -> datetime | None:
        """When the next card comes due (a buried card when it comes back; suspended ones never)."""
        return min(self._due_times(user), default=None)

    def _due_times(self, user: str) -> list[datetime]:
        """When each card of ``user`` that is not suspended comes due (a buried one: when its burial ends)."""
        rows = self._db().execute("SELECT due, buried_until FROM cards WHERE user = ? AND suspended = 0", (user,))
        return [max(datetime.fromisoformat(r["due"]), datetime.fromisoformat(r["buried_until"] or r["due"]))
                for r in rows]

    # -- a user's schedule (desired retention, FSRS parameters) ------------------------------------------------
    def _settings_row(self, db: sqlite3.Connection, user: str) -> sqlite3.Row | None:
        return db.execute("SELECT desired_retention, parameters, optimized FROM user_settings WHERE user = ?",
                          (user,)).fetchone()

    def _retention(self, db: sqlite3.Connection, user: str) -> float:
        row = self._settings_row(db, user)
        return float(row["desired_retention"]) if row and row["desired_retention"] is not None \
            else self.settings.desired_retention

    def _parameters(self, db: sqlite3.Connection, user: str) -> list[float] | None:
        row = self._settings_row(db, user)
        return [float(w) for w in json.loads(row["parameters"])] if row and row["parameters"] else None

    def _scheduler(self, db: sqlite3.Connection, user: str) -> Scheduler:
        from rag.study.schedule import make_scheduler

        return make_scheduler(self._parameters(db, user), self._retention(db, user))

    @_guarded
    def scheduler(self, user: str) -> Scheduler:
        """The ``fsrs`` scheduler of ``user``'s next reviews: their desired retention and parameters."""
        return self._scheduler(self._db(), user)

    def _history(self, user: str) -> list[Review]:
        from rag.study.schedule import Review

        rows = self._db().execute("SELECT item_id, rating, reviewed_at FROM reviews WHERE user = ?", (user,))
        return [Review(int(r["item_id"]), int(r["rating"]), _utc(datetime.fromisoformat(r["reviewed_at"])))
                for r in rows]

    def retention_warning(self, retention: float, parameters: Sequence[float] | None = None) -> str | None:
        """One sentence about the workload when ``retention`` is above ``study.retention_warning``, else None."""
        from rag.study.schedule import workload_factor

        if retention <= self.settings.retention_warning:
            return None
        base = self.settings.desired_retention
        factor = workload_factor(retention, parameters, base=base)
        return (f"A desired retention of {retention:.2f} is above {self.settings.retention_warning:.2f}: each card "
                f"comes back about {factor:.1f} times as often as at {base:.2f}, so your reviews a day grow steeply.")

    @_guarded
    def schedule(self, user: str) -> dict[str, Any]:
        """``user``'s schedule: ``desired_retention`` (and whether it is the default), the FSRS ``parameters``
        the scheduler uses (and whether they are FSRS's defaults), ``optimized`` (the last optimisation's
        record, None if never optimised), ``reviews_counted`` / ``optimize_min_reviews`` (what "Optimise my schedule" needs) and a
        ``warning`` sentence about the workload (None below ``study.retention_warning``)."""
        from rag.study.schedule import DEFAULT_PARAMETERS, counted_reviews

        db = self._db()
        row = self._settings_row(db, user)
        retention = self._retention(db, user)
        parameters = self._parameters(db, user)
        return {"user": user, "desired_retention": retention,
                "default_retention": not (row and row["desired_retention"] is not None),
                "parameters": parameters or list(DEFAULT_PARAMETERS), "default_parameters": parameters is None,
                "optimized": json.loads(row["optimized"]) if row and row["optimized"] else None,
                "reviews_counted": counted_reviews(self._history(user)),
                "optimize_min_reviews": self.settings.optimize_min_reviews,
                "warning": self.retention_warning(retention, parameters)}

    @_guarded
    def set_retention(self, user: str, retention: float, now: datetime | None = None) -> dict[str, Any]:
        """Set ``user``'s desired retention (from 0.70 to 0.99, Anki's range); the next intervals use it (cards
        keep their due dates until reviewed, as in Anki). Returns :meth:`schedule` (with its ``warning``)."""
        from rag.settings import RETENTION_MAX, RETENTION_MIN

        if not isinstance(retention, int | float) or not RETENTION_MIN <= retention <= RETENTION_MAX:
            raise StudyStoreError(f"A desired retention of {retention} is out of range: use a value from "
                                  f"{RETENTION_MIN:.2f} to {RETENTION_MAX:.2f} (FSRS's default is 0.90).")
        with self._tx() as db:
            db.execute("INSERT INTO user_settings (user, desired_retention, updated) VALUES (?, ?, ?) ON CONFLICT(user)"
                       " DO UPDATE SET desired_retention = excluded.desired_retention, updated = excluded.updated",
                       (user, float(retention), _utc(now or now_utc()).isoformat()))
        return self.schedule(user)

    @_guarded
    def optimize(self, user: str, now: datetime | None = None) -> dict[str, Any]:
        """"Optimise my schedule": fit FSRS parameters on ``user``'s reviews with ``fsrs``'s optimiser and keep
        them when their log-loss on those reviews is lower than the current parameters' (the scheduler uses
        them from then on). Refused in one sentence below ``study.optimize_min_reviews`` reviews that count.
        Returns :meth:`schedule` with ``optimization``: ``reviews`` (counted), ``log_loss_before`` (the
        parameters in use), ``log_loss_after`` (the fitted ones), ``adopted``, ``seconds``, ``at``."""
        import time as clock

        from rag.study.schedule import counted_reviews, fit, log_loss

        history = self._history(user)
        counted = counted_reviews(history)
        needed = self.settings.optimize_min_reviews
        if counted < needed:
            raise StudyStoreError(
                f"Optimising {user}'s schedule needs at least {needed} reviews made a day or more after the card's "
                f"previous one, and there are {counted} so far, so FSRS's default parameters stay in use.")
        current = self._parameters(self._db(), user)
        start = clock.perf_counter()
        try:
            fitted = fit(history)
        except ImportError as exc:
            raise StudyStoreError(f"The FSRS optimiser cannot run ({exc}): install torch, then try again.") from exc
        before, after = log_loss(history, current), log_loss(history, fitted)
        assert before is not None and after is not None  # counted > 0
        record = {"at": _utc(now or now_utc()).isoformat(), "reviews": counted, "log_loss_before": round(before, 4),
                  "log_loss_after": round(after, 4), "adopted": after < before,
                  "seconds": round(clock.perf_counter() - start, 1)}
        kept = fitted if after < before else current
        with self._tx() as db:
            db.execute("INSERT INTO user_settings (user, parameters, optimized, updated) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT(user) DO UPDATE SET parameters = excluded.parameters,"
                       " optimized = excluded.optimized, updated = excluded.updated",
                       (user, json.dumps(kept) if kept else None, json.dumps(record), record["at"]))
        return {**self.schedule(user), "optimization": record}

    # -- card control (edit, suspend, bury, delete) -------------------------------------------------------------
    _CARD_SQL = ("SELECT items.id, payload, section, source, stale, cards.due, cards.fsrs, suspended, buried_until,"
                 " (SELECT COUNT(*) FROM reviews WHERE reviews.item_id = items.id) AS n"
                 " FROM cards JOIN items ON items.id = cards.item_id WHERE cards.user = ?")

    @staticmethod
    def _card_info(r: sqlite3.Row) -> CardInfo:
        state = STATES.get(int(json.loads(r["fsrs"]).get("state", 1)), "learning") if r["n"] else "new"
        return CardInfo(int(r["id"]), QuizItem.from_json(json.loads(r["payload"])), r["section"], r["source"],
                        datetime.fromisoformat(r["due"]), bool(r["stale"]), bool(r["suspended"]),
                        datetime.fromisoformat(r["buried_until"]) if r["buried_until"] else None, state, int(r["n"]))

    def _get_card(self, db: sqlite3.Connection, user: str, item_id: int) -> CardInfo:
        row = db.execute(self._CARD_SQL + " AND items.id = ?", (user, item_id)).fetchone()
        if row is None:
            raise StudyStoreError(f"There is no card {item_id} for {user}: `studybot card list --user {user}` "
                                  "lists their cards.")
        return self._card_info(row)

    @_guarded
    def card(self, user: str, item_id: int) -> CardInfo:
        return self._get_card(self._db(), user, item_id)

    @_guarded
    def cards(self, user: str, which: str = "all", now: datetime | None = None) -> list[CardInfo]:
        """``user``'s cards, by due time: ``all``, ``suspended`` or ``buried`` (buried until a later time)."""
        stamp = _utc(now or now_utc()).isoformat()
        where = {"all": ("", ()), "suspended": (" AND suspended = 1", ()),
                 "buried": (" AND buried_until > ?", (stamp,))}
        if which not in where:
            raise StudyStoreError(f"Unknown card list {which!r}: use all, suspended or buried.")
        sql, args = where[which]
        rows = self._db().execute(self._CARD_SQL + sql + " ORDER BY cards.due, items.id", (user, *args)).fetchall()
        return [self._card_info(r) for r in rows]

    @_guarded
    def edit_card(self, user: str, item_id: int, question: str | None = None, answer: str | None = None) -> CardInfo:
        """Change a card's question and/or answer; its schedule and review history stay. An MCQ's key option is
        rewritten with its answer. Refused in one sentence when a text is empty or the question is another
        card's."""
        changes = {"question": question, "answer": answer}
        for name, text in changes.items():
            if text is not None and not text.strip():
                raise StudyStoreError(f"A card's {name} cannot be empty: give the new text, or leave it out to keep it.")
        if question is None and answer is None:
            raise StudyStoreError("Nothing to change: give a new question, a new answer or both.")
        with self._tx() as db:
            info = self._get_card(db, user, item_id)
            item = info.item
            data = item.to_json()
            if question is not None:
                other = db.execute("SELECT id FROM items WHERE user = ? AND question = ? AND id != ?",
                                   (user, question.strip(), item_id)).fetchone()
                if other is not None:
                    raise StudyStoreError(f"Card {other['id']} already asks that question: edit or delete that one "
                                          "instead.")
                data["question"] = question.strip()
            if answer is not None:
                new = answer.strip()
                key = item.answer_index
                if key is not None:
                    if any(o == new for i, o in enumerate(item.options) if i != key):
                        raise StudyStoreError("That answer is already one of the card's wrong options: give a "
                                              "different answer.")
                    data["options"] = [new if i == key else o for i, o in enumerate(item.options)]
                data["answer"] = new
            db.execute("UPDATE items SET question = ?, payload = ? WHERE id = ?",
                       (data["question"], json.dumps(data, ensure_ascii=False), item_id))
            return self._get_card(db, user, item_id)

    @_guarded
    def suspend(self, user: str, item_id: int, suspended: bool = True) -> CardInfo:
        """Suspend a card (never due until unsuspended; its schedule and history stay) or unsuspend it."""
        with self._tx() as db:
            self._get_card(db, user, item_id)
            db.execute("UPDATE cards SET suspended = ? WHERE item_id = ?", (int(suspended), item_id))
            return self._get_card(db, user, item_id)

    @_guarded
    def bury(self, user: str, item_id: int, now: datetime | None = None, tz: tzinfo | None = None) -> CardInfo:
        """Bury a card until tomorrow: not due before the student's next local midnight (``tz``: the student's
        time zone, None: this machine's); then due as FSRS scheduled it."""
        midnight = datetime.combine(_local(now or now_utc(), tz).date() + timedelta(days=1), time(0))
        # a naive time's astimezone() reads it as this machine's local time, daylight saving included
        tomorrow = midnight.replace(tzinfo=tz) if tz is not None else midnight.astimezone()
        with self._tx() as db:
            self._get_card(db, user, item_id)
            db.execute("UPDATE cards SET buried_until = ? WHERE item_id = ?", (_utc(tomorrow).isoformat(), item_id))
            return self._get_card(db, user, item_id)

    @_guarded
    def unbury(self, user: str, item_id: int) -> CardInfo:
        with self._tx() as db:
            self._get_card(db, user, item_id)
            db.execute("UPDATE cards SET buried_until = NULL WHERE item_id = ?", (item_id,))
            return self._get_card(db, user, item_id)

    @_guarded
    def delete_card(self, user: str, item_id: int, now: datetime | None = None) -> CardInfo:
        """Delete a card with its review history (gone from review, progress and the optimiser); its question
        is remembered so a quiz never asks it again. Returns the card as it was."""
        with self._tx() as db:
            info = self._get_card(db, user, item_id)
            db.execute("DELETE FROM items WHERE id = ? AND user = ?", (item_id, user))  # cascades: card, reviews
            db.execute("INSERT OR REPLACE INTO deleted_questions (user, question, deleted) VALUES (?, ?, ?)",
                       (user, info.item.question, _utc(now or now_utc()).isoformat()))
            return info

    # -- the Progress tab: calendar, true retention, forecast -------------------------------------------------
    @_guarded
    def review_calendar(self, user: str, months: int = 12, now: datetime | None = None,
                        tz: tzinfo | None = None) -> dict[str, Any]:
        """Reviews per local day (``tz``: the student's time zone, None: this machine's) over the last
        ``months`` months, for a heatmap: ``days`` (every day from the same date ``months`` months ago, the day
        after it, to today, zeros included: ``{"day", "count"}``), ``total``, ``days_studied``,
        ``daily_average`` (over the days shown), ``current_streak`` (days in a row with reviews up to today, or
        up to yesterday while today has none) and ``longest_streak``."""
        today = _local(now or now_utc(), tz).date()
        month = today.year * 12 + today.month - 1 - max(months, 0)
        first_of = date(month // 12, month % 12 + 1, 1)
        last_day = (date(first_of.year + first_of.month // 12, first_of.month % 12 + 1, 1) - timedelta(days=1)).day
        start = first_of.replace(day=min(today.day, last_day)) + timedelta(days=1)
        counts = {start + timedelta(days=d): 0 for d in range((today - start).days + 1)}
        for r in self._db().execute("SELECT reviewed_at FROM reviews WHERE user = ?", (user,)):
            day = _local(datetime.fromisoformat(r["reviewed_at"]), tz).date()
            if day in counts:
                counts[day] += 1
        days = [{"day": d.isoformat(), "count": n} for d, n in counts.items()]
        longest = run = 0
        for n in counts.values():
            run = run + 1 if n else 0
            longest = max(longest, run)
        current = 0
        for i, n in enumerate(reversed(list(counts.values()))):
            if n:
                current += 1
            elif i:  # today without reviews yet does not break the streak
                break
        total = sum(counts.values())
        return {"days": days, "total": total, "days_studied": sum(1 for n in counts.values() if n),
                "daily_average": round(total / len(counts), 2) if counts else 0.0,
                "current_streak": current, "longest_streak": longest}

    @_guarded
    def true_retention(self, user: str, days: int | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Anki's true retention: the share of reviews of cards in FSRS's review state that were passed (any
        rating but again), for ``mature`` cards (an interval of ``study.mature_days``, 21, days or more before
        the review), ``young`` ones and in ``total``; each ``{"reviews", "passed", "retention"}`` (retention None
        without reviews). ``days``: only the last so many days (None: all). Reviews recorded before schema 2
        (no state or interval stored) count as review-state reviews when they came a day or more after the
        card's previous review, with that gap as their interval."""
        since = _utc(now or now_utc()) - timedelta(days=days) if days is not None else None
        mature_days = self.settings.mature_days
        buckets = {k: {"reviews": 0, "passed": 0} for k in ("young", "mature")}
        previous: dict[int, datetime] = {}
        rows = self._db().execute("SELECT item_id, rating, reviewed_at, state, interval_days FROM reviews"
                                  " WHERE user = ? ORDER BY reviewed_at, id", (user,)).fetchall()
        for r in rows:
            at = datetime.fromisoformat(r["reviewed_at"])
            prev = previous.get(int(r["item_id"]))
            previous[int(r["item_id"])] = at
            if r["state"] is not None:
                in_review, interval = int(r["state"]) == 2, r["interval_days"]
            else:
                gap = (at - prev).total_seconds() / 86400 if prev is not None else None
                in_review, interval = gap is not None and gap >= 1, gap
            if not in_review or interval is None or (since is not None and at < since):
                continue
            b = buckets["mature" if interval >= mature_days else "young"]
            b["reviews"] += 1
            b["passed"] += int(r["rating"]) > 1
        total = {k: buckets["young"][k] + buckets["mature"][k] for k in ("reviews", "passed")}
        out: dict[str, Any] = {}
        for name, b in (*buckets.items(), ("total", total)):
            out[name] = {**b, "retention": round(b["passed"] / b["reviews"], 3) if b["reviews"] else None}
        return {**out, "mature_days": mature_days, "days": days}

    @_guarded
    def due_forecast(self, user: str, days: int = 30, now: datetime | None = None,
                     tz: tzinfo | None = None) -> list[dict[str, Any]]:
        """Cards due per local day (``tz``, None: this machine's) over the next ``days`` days, today first:
        ``{"day", "count"}``; cards already due count today, suspended ones never, a buried one on the day it
        comes back."""
        today = _local(now or now_utc(), tz).date()
        ahead = {today + timedelta(days=d): 0 for d in range(max(days, 0))}
        for when in self._due_times(user):
            day = max(_local(when, tz).date(), today)
            if day in ahead:
                ahead[day] += 1
        return [{"day": d.isoformat(), "count": n} for d, n in ahead.items()]

    # -- conversations ------------------------------------------------------------------------------------
    @_guarded
    def save_conversation(self, user: str, conv_id: str, turns: Sequence[dict[str, Any]],
                          now: datetime | None = None) -> None:
        if not turns:
            return
        now = now or now_utc()
        title = str(turns[0].get("question") or "(untitled)").strip()[:80]
        with self._tx() as db:
            db.execute(
                "INSERT INTO conversations (id, user, title, created, updated, turns) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET updated = excluded.updated, turns = excluded.turns"
                " WHERE conversations.user = excluded.user",
                (conv_id, user, title, now.isoformat(), now.isoformat(), json.dumps(list(turns), ensure_ascii=False)))

    @_guarded
    def conversations(self, user: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db().execute(
            "SELECT id, title, created, updated FROM conversations WHERE user = ? ORDER BY updated DESC", (user,))]

    @_guarded
    def conversation(self, user: str, conv_id: str) -> list[dict[str, Any]] | None:
        row = self._db().execute("SELECT turns FROM conversations WHERE user = ? AND id = ?", (user, conv_id)).fetchone()
        return None if row is None else list(json.loads(row["turns"]))

    @_guarded
    def delete_conversation(self, user: str, conv_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM conversations WHERE user = ? AND id = ?", (user, conv_id)).rowcount > 0
