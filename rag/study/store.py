"""Study state, persisted: the quiz items each user was asked, every answer and grade, FSRS review cards and
saved conversations, in one SQLite file under ``STUDYBOT_HOME`` (``study.sqlite3``).

The schema is versioned (``PRAGMA user_version``, upgraded in order by :data:`MIGRATIONS`); every write is
one transaction; the database runs in WAL mode with a busy timeout, so several web UI users (threads) and a
CLI process can use it at once. Scheduling is the ``fsrs`` package's :class:`fsrs.Scheduler`; a card's FSRS
state is stored as its ``to_dict()`` JSON.

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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from rag.errors import StudybotError, StudyDatabaseError
from rag.quiz.models import QuizItem
from rag.study import backup
from rag.study.backup import BackupPolicy

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

RATINGS = {"again": 1, "hard": 2, "good": 3, "easy": 4}
# The quiz grader's verdict as an FSRS rating when a quiz answer is a card's review ("revealed": a flashcard
# turned over without an answer is not a review; the card stays due).
VERDICT_RATING = {"correct": "good", "partial": "hard", "incorrect": "again"}
LOCAL_USER = "local"  # the one user of the CLI without --user and of the web UI without --auth
MASTERY_HALF_LIFE_DAYS = 14  # the Progress charts' window: a review two weeks old counts half
# A section is weak below FSRS's default desired retention (fsrs.Scheduler(desired_retention=0.9)): its
# cards are, on average, less likely to be recalled than the scheduler aims for.
WEAK_MASTERY = 0.9

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


class StudyStore:
    """One SQLite file; safe to share between threads (one connection per thread).

    ``backups``: where to back it up and how many backups to keep (None: no backups); ``clock``: the time a
    backup is stamped with and whose calendar day (local time) decides a day's first write."""

    @_guarded
    def __init__(self, path: Path, backups: BackupPolicy | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.path = Path(path)
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
        """Every question ``user`` already has (a new quiz never repeats one)."""
        return [r["question"] for r in self._db().execute("SELECT question FROM items WHERE user = ?", (user,))]

    @_guarded
    def chunk_ids(self, user: str) -> set[str]:
        """The passages ``user``'s cards were written from."""
        return {r["chunk_id"] for r in self._db().execute("SELECT chunk_id FROM items WHERE user = ?", (user,))}

    @_guarded
    def due(self, user: str, now: datetime | None = None, limit: int = 100) -> list[DueCard]:
        now = now or now_utc()
        rows = self._db().execute(
            "SELECT items.id, payload, section, source, stale, cards.due FROM cards JOIN items ON items.id = cards.item_id"
            " WHERE cards.user = ? AND cards.due <= ? ORDER BY cards.due LIMIT ?",
            (user, now.isoformat(), limit)).fetchall()
        return [DueCard(int(r["id"]), QuizItem.from_json(json.loads(r["payload"])), r["section"], r["source"],
                        datetime.fromisoformat(r["due"]), bool(r["stale"])) for r in rows]

    @_guarded
    def review(self, user: str, item_id: int, rating: int | str, *, answer: str = "", correct: bool | None = None,
               now: datetime | None = None) -> datetime:
        """Grade one card (1-4 or again/hard/good/easy) with FSRS; returns its next due time."""
        from fsrs import Card, Rating, Scheduler

        value = RATINGS.get(str(rating).lower(), rating) if isinstance(rating, str) else rating
        if value not in (1, 2, 3, 4):
            raise StudyStoreError(f"Unknown rating {rating!r}: use again, hard, good or easy.")
        now = now or now_utc()
        with self._tx() as db:
            row = db.execute("SELECT fsrs FROM cards WHERE item_id = ? AND user = ?", (item_id, user)).fetchone()
            if row is None:
                raise StudyStoreError(f"There is no card {item_id} for {user}.")
            card = Card.from_dict(json.loads(row["fsrs"]))
            card, _log = Scheduler(enable_fuzzing=False).review_card(card, Rating(int(value)), review_datetime=now)
            db.execute("UPDATE cards SET due = ?, fsrs = ? WHERE item_id = ?",
                       (card.due.isoformat(), json.dumps(card.to_dict()), item_id))
            db.execute("INSERT INTO reviews (user, item_id, rating, correct, answer, reviewed_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (user, item_id, int(value), None if correct is None else int(correct), answer, now.isoformat()))
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
        from fsrs import Card, Scheduler

        now = now or now_utc()
        scheduler = Scheduler(enable_fuzzing=False)
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
        """The (at most ``k``) sections the user does worst on: reviewed at least once and below
        :data:`WEAK_MASTERY`, lowest mastery first, then lowest retrievability. Sections never reviewed are
        not weak spots (they are due in Review)."""
        rows = [m for m in self.mastery(user, now) if m["reviews"] and m["mastery"] < WEAK_MASTERY]
        rows.sort(key=lambda m: (m["mastery"], m["retrievability"] or 0.0, m["section"]))
        return rows[:k]

    @_guarded
    def activity(self, user: str, now: datetime | None = None, days: int = 14) -> dict[str, list[dict[str, Any]]]:
        """For the Progress charts: reviews per day over the last ``days`` days and cards due per day over
        the next ``days`` (everything already due counts today), dates in UTC."""
        now = now or now_utc()
        today = now.date()
        past = {(today - timedelta(days=d)).isoformat(): 0 for d in range(days - 1, -1, -1)}
        for r in self._db().execute("SELECT reviewed_at FROM reviews WHERE user = ?", (user,)):
            day = datetime.fromisoformat(r["reviewed_at"]).date().isoformat()
            if day in past:
                past[day] += 1
        ahead = {(today + timedelta(days=d)).isoformat(): 0 for d in range(days)}
        for r in self._db().execute("SELECT due FROM cards WHERE user = ?", (user,)):
            day = max(datetime.fromisoformat(r["due"]).date(), today).isoformat()
            if day in ahead:
                ahead[day] += 1
        return {"reviews": [{"day": d, "count": n} for d, n in past.items()],
                "due": [{"day": d, "count": n} for d, n in ahead.items()]}

    @_guarded
    def next_due(self, user: str) -> datetime | None:
        row = self._db().execute("SELECT MIN(due) AS d FROM cards WHERE user = ?", (user,)).fetchone()
        return datetime.fromisoformat(row["d"]) if row and row["d"] else None

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
