"""The question bank: quiz items made before a student asks for them, so a quiz starts in a second.

* :class:`QuestionBank` - the items (glossary MCQs, short answers, flashcards), one SQLite file beside the study
  database (``<home>/bank.sqlite3``, :attr:`rag.settings.StorageSettings.bank_path`). Each item is keyed to the
  content hash of the chunk it was written from (``ingest.chunking``: title, section path and text), so a
  re-ingest drops only the items of chunks whose text changed or went (:meth:`QuestionBank.sync`); a chunk that
  only moved keeps its items (the citation is rebuilt from the current chunk when an item is served).
* :func:`draw` - a quiz's items from the bank: those of the passages the quiz would use (the same retrieval),
  never a question the student already has (their cards) or one the session asked, one per passage.
* :class:`QuizStream` - a quiz whose items come as they are ready: the bank's at once, then the ones the model
  makes (in a thread, so it writes the next while the student answers).
* :class:`BankFiller` / :class:`BankWorker` - filling the bank: one item per passage and type, the quickest
  types first, from `studybot bank` or from a thread of the web app that uses the model only while the app is
  idle (:mod:`rag.quiz.gate`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.quiz.gate import Preempted
from rag.quiz.generation import QuizRun, no_items
from rag.quiz.mcq import asked_terms
from rag.quiz.models import QuizItem, QuizResult, QuizSession, quizzable, section_key
from rag.quiz.text import cos
from rag.quiz.types import BANK_TYPES, type_of
from rag.quiz.types import FAST_FIRST as FAST_FIRST  # ui.service reads it from here
from rag.types import Chunk, Citation, Progress

if TYPE_CHECKING:
    from rag.backends.embeddings import TextEmbedder
    from rag.backends.store import Index
    from rag.quiz.generation import QuizMaker
    from rag.settings import QuizSettings, Settings

log = logging.getLogger(__name__)

# BANK_TYPES: the types the bank fills, in the order it fills them: the quickest items first (a flashcard took
# 6.2 s, a short answer 8.8 s and a valid glossary MCQ 32.6 s on 2 cores: bench/quiz.py), so every passage soon
# has something to ask (QuizType.bank_rank). FAST_FIRST: a quiz of such a type whose bank has nothing ready
# starts with an item of the other (an MCQ quiz with a flashcard: the first question in seconds instead of half
# a minute); the rest are of the type asked for (QuizType.fast_first). Both are views of rag.quiz.types.
# `studybot bank --topic T` banks the passages a quiz of this many questions on T would use: 10, set by hand with
# the bank (2026-12-05), not tuned; the Quiz tab's largest quiz (ui.quiz_state.MAX_COUNT) is as long.
BANK_TOPIC_ITEMS = 10

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    source TEXT NOT NULL,
    section TEXT NOT NULL,
    type TEXT NOT NULL,
    question TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    served INTEGER NOT NULL DEFAULT 0,
    UNIQUE (content_hash, type, question)
);
CREATE INDEX IF NOT EXISTS items_hash ON items (content_hash, type);
CREATE TABLE IF NOT EXISTS tries (
    content_hash TEXT NOT NULL,
    type TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    made INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (content_hash, type)
);
"""
_BATCH = 500  # hashes per IN (...) query: set by hand under SQLite's old 999-parameter limit (before 3.32)


class BankError(StudybotError):
    """The question bank cannot be used; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class BankedItem:
    id: int
    content_hash: str
    item: QuizItem
    served: int


@dataclass
class SectionCount:
    source: str
    section: str
    items: int = 0
    chunks_covered: int = 0  # passages with at least one item
    chunks: int = 0  # quizzable passages

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "section": self.section, "items": self.items,
                "chunks_covered": self.chunks_covered, "chunks": self.chunks}


@dataclass
class BankStats:
    """What the bank holds for the current index."""

    items: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    chunks_covered: int = 0  # quizzable passages with at least one item
    chunks_total: int = 0  # quizzable passages
    chunks_done: int = 0  # quizzable passages tried for every type (made or given up on)
    sections: list[SectionCount] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.chunks_covered / self.chunks_total if self.chunks_total else 0.0

    def line(self) -> str:
        """"42 items (flashcard 20, short 14, mcq 8); 25 of 180 passages covered (14%)"."""
        types = ", ".join(f"{t} {self.by_type.get(t, 0)}" for t in BANK_TYPES)
        return (f"{self.items} item{'s' if self.items != 1 else ''} ({types}); {self.chunks_covered} of "
                f"{self.chunks_total} passages covered ({100 * self.coverage:.0f}%)")

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "by_type": {t: self.by_type.get(t, 0) for t in BANK_TYPES},
                "chunks_covered": self.chunks_covered, "chunks_total": self.chunks_total,
                "chunks_done": self.chunks_done, "coverage": round(self.coverage, 4),
                "sections": [s.to_json() for s in self.sections]}


class QuestionBank:
    """The bank's SQLite file (a connection per call: the worker thread and the app's threads share it). A
    bank that does not exist yet is read as empty and created on the first write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.is_file()

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection | None]:
        if not write and not self.exists():
            yield None
            return
        db = None
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            if write:
                with self._lock:
                    db.executescript(_SCHEMA)
            with db:
                yield db
        except (sqlite3.Error, OSError) as exc:
            raise BankError(f"The question bank {self.path} cannot be used ({exc}): delete the file, "
                            "`studybot bank` makes a new one.") from exc
        finally:
            if db is not None:
                db.close()

    # -- keeping it in line with the index -------------------------------------------------------------------
    def sync(self, current: Iterable[str]) -> int:
        """Drop the items (and tries) of chunks no longer in the index (``current``: the content hashes it
        holds); returns how many items were dropped."""
        if not self.exists():
            return 0
        with self._db(write=True) as db:
            assert db is not None
            db.execute("CREATE TEMP TABLE cur (h TEXT PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO cur VALUES (?)", ((h,) for h in current))
            dropped = db.execute("DELETE FROM items WHERE content_hash NOT IN (SELECT h FROM cur)").rowcount
            db.execute("DELETE FROM tries WHERE content_hash NOT IN (SELECT h FROM cur)")
            db.execute("DROP TABLE cur")
        return int(dropped or 0)

    # -- writing ---------------------------------------------------------------------------------------------
    def record(self, chunk: Chunk, qtype: str, item: QuizItem | None) -> None:
        """One try at an item of ``qtype`` from ``chunk``: the item when it passed validation (None when not)."""
        now = time.time()
        with self._db(write=True) as db:
            assert db is not None
            if item is not None:
                db.execute(
                    "INSERT OR IGNORE INTO items (content_hash, chunk_id, source, section, type, question, payload,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (chunk.content_hash, chunk.id, chunk.source, section_key(chunk), item.type, item.question,
                     json.dumps(item.to_json(), ensure_ascii=False), now))
            db.execute(
                "INSERT INTO tries (content_hash, type, attempts, made, at) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (content_hash, type) DO UPDATE SET attempts = attempts + 1, made = made + excluded.made,"
                " at = excluded.at", (chunk.content_hash, qtype, int(item is not None), now))

    def mark_served(self, ids: Collection[int]) -> None:
        if ids:
            with self._db(write=True) as db:
                assert db is not None
                db.executemany("UPDATE items SET served = served + 1 WHERE id = ?", ((i,) for i in ids))

    # -- reading ---------------------------------------------------------------------------------------------
    def tries(self) -> dict[tuple[str, str], tuple[int, int]]:
        """{(content hash, type): (tries, items made)}."""
        with self._db() as db:
            if db is None:
                return {}
            return {(r["content_hash"], r["type"]): (int(r["attempts"]), int(r["made"]))
                    for r in db.execute("SELECT content_hash, type, attempts, made FROM tries")}

    def items(self, hashes: Iterable[str], qtype: str | None = None) -> list[BankedItem]:
        """The items of these chunks (of ``qtype``, or all), least served first."""
        wanted = list(dict.fromkeys(hashes))
        out: list[BankedItem] = []
        with self._db() as db:
            if db is None:
                return []
            for i in range(0, len(wanted), _BATCH):
                part = wanted[i : i + _BATCH]
                sql = (f"SELECT id, content_hash, payload, served FROM items WHERE content_hash IN "
                       f"({','.join('?' * len(part))})" + (" AND type = ?" if qtype else "") + " ORDER BY served, id")
                for r in db.execute(sql, [*part, *([qtype] if qtype else [])]):
                    out.append(BankedItem(int(r["id"]), r["content_hash"], QuizItem.from_json(json.loads(r["payload"])),
                                          int(r["served"])))
        out.sort(key=lambda b: (b.served, b.id))
        return out

    def counts(self) -> list[tuple[str, str, str]]:
        """(content hash, type, section key) of every item."""
        with self._db() as db:
            if db is None:
                return []
            return [(r["content_hash"], r["type"], r["section"])
                    for r in db.execute("SELECT content_hash, type, section FROM items")]

    def stats(self, chunks: Iterable[Chunk], attempts: int = 2) -> BankStats:
        """Items per type and section, and the share of quizzable passages with an item (``chunks``: the
        index's; ``attempts``: tries after which a passage counts as done for a type)."""
        quiz = [c for c in chunks if quizzable(c)]
        by_hash: dict[str, Chunk] = {}
        for c in quiz:
            by_hash.setdefault(c.content_hash, c)
        sections: dict[str, SectionCount] = {}
        for c in by_hash.values():
            key = section_key(c)
            sec = sections.setdefault(key, SectionCount(c.source, key.split("::", 1)[1]))
            sec.chunks += 1
        stats = BankStats(chunks_total=len(by_hash))
        covered: set[str] = set()
        for h, qtype, _ in self.counts():
            chunk = by_hash.get(h)
            if chunk is None:
                continue
            stats.items += 1
            stats.by_type[qtype] = stats.by_type.get(qtype, 0) + 1
            sections[section_key(chunk)].items += 1
            if h not in covered:
                covered.add(h)
                sections[section_key(chunk)].chunks_covered += 1
        stats.chunks_covered = len(covered)
        tries = self.tries()
        stats.chunks_done = sum(all(done(tries.get((h, t)), attempts) for t in BANK_TYPES) for h in by_hash)
        stats.sections = sorted(sections.values(), key=lambda s: (s.source, s.section))
        return stats


def done(tried: tuple[int, int] | None, attempts: int) -> bool:
    """Whether a passage needs no more tries for a type: an item was made, or it was tried ``attempts`` times."""
    return tried is not None and (tried[1] > 0 or tried[0] >= attempts)


def bank_check(settings: Settings, index: Index) -> tuple[bool, str]:
    """`studybot doctor`'s "question bank" line: (ok, what it holds for the current index); not ok only when
    the bank's file cannot be read."""
    bank = QuestionBank(settings.storage.bank_path)
    if not bank.exists():
        return True, f"empty ({bank.path}): `studybot bank` fills it, and the web app while it is idle"
    try:
        chunks = index.all_chunks() if index.manifest().collection else []
    except StudybotError:
        chunks = []  # the index line says what is wrong with it
    try:
        return True, f"{bank.stats(chunks, settings.quiz.bank_attempts).line()} at {bank.path}"
    except BankError as exc:
        return False, str(exc)


# --- a quiz from the bank -------------------------------------------------------------------------------------
def draw(bank: QuestionBank, pool: Sequence[Chunk], qtype: str | Collection[str], n: int, session: QuizSession,
         embedder: TextEmbedder, settings: QuizSettings, *, exclude: Collection[str] = (), spread: bool = False
         ) -> list[QuizItem]:
    """Up to ``n`` banked items of ``qtype`` (a type or several) from the passages of ``pool`` (best first; with
    ``spread``, taken across their sections like a quiz without a topic), recorded in ``session``. Never a
    question in ``exclude`` (the student's cards) or one the session asked (for an MCQ: its term, or a term
    nested with it), nor a near-duplicate of one; one item per passage, none from a passage the session used."""
    if n <= 0 or not pool:
        return []
    types = {qtype} if isinstance(qtype, str) else set(qtype)
    current: dict[str, Chunk] = {}
    for c in pool:
        current.setdefault(c.content_hash, c)
    rank = {h: i for i, h in enumerate(current)}
    rows = [b for b in bank.items(current) if b.item.type in types]
    if not rows:
        return []
    rows.sort(key=lambda b: (rank[b.content_hash], b.served, b.id))
    if spread:
        rows = _spread(rows, current, session)
    known = set(exclude) | set(session.questions)
    asked = asked_terms([*exclude, *session.questions])
    picked: list[tuple[BankedItem, QuizItem, Chunk]] = []
    vectors: dict[int, list[float]] = {}
    for start in range(0, len(rows), 4 * n):
        batch = rows[start : start + 4 * n]
        vecs = embedder.embed([b.item.question for b in batch])
        for b, v in zip(batch, vecs, strict=True):
            vectors[b.id] = v
        for b in batch:
            chunk = current[b.content_hash]
            if len(picked) == n:
                break
            q = b.item.question
            if q in known or chunk.id in session.used_chunks:
                continue
            words = asked_terms([q])
            if words and any(words[0] <= a or a <= words[0] for a in asked if a):
                continue
            if type_of(b.item).dedupe_by_question and any(cos(vectors[b.id], v) > settings.duplicate_similarity
                                            for v in session.question_vectors):
                continue
            item = _served(b.item, chunk, session)
            session.record(item, chunk, vectors[b.id])
            known.add(q)
            asked += words
            picked.append((b, item, chunk))
        if len(picked) == n:
            break
    with contextlib.suppress(BankError):
        bank.mark_served([b.id for b, _, _ in picked])
    return [item for _, item, _ in picked]


def _spread(rows: list[BankedItem], current: dict[str, Chunk], session: QuizSession) -> list[BankedItem]:
    """The rows in the order a quiz without a topic visits sections: the least used section first, never the
    same section twice in a row when another is left (as :meth:`QuizMaker.spread_chunks`)."""
    by_section: dict[str, list[BankedItem]] = {}
    for b in rows:
        by_section.setdefault(section_key(current[b.content_hash]), []).append(b)
    for items in by_section.values():
        session.rng.shuffle(items)
    used = dict(session.used_sections)
    last = session.last_section
    out: list[BankedItem] = []
    while by_section:
        keys = [k for k in by_section if k != last] or list(by_section)
        low = min(used.get(k, 0) for k in keys)
        key = session.rng.choice(sorted(k for k in keys if used.get(k, 0) == low))
        out.append(by_section[key].pop(0))
        if not by_section[key]:
            del by_section[key]
        used[key] = used.get(key, 0) + 1
        last = key
    return out


def _served(item: QuizItem, chunk: Chunk, session: QuizSession) -> QuizItem:
    """A banked item as a quiz serves it: cited from the current chunk (its id changes when it only moved) and,
    for an MCQ, its options in the session's order."""
    options = list(item.options)
    if options:
        session.rng.shuffle(options)
    return QuizItem(item.type, item.question, item.answer, item.explanation, options, Citation.of(1, chunk))


_END = object()


class QuizStream:
    """A quiz whose items come as they are ready: iterate it (``for item in stream``). The bank's items come at
    once; the rest are made by ``run`` (:class:`rag.quiz.generation.QuizRun`) - with ``threaded``, in a thread
    that starts now, so the model writes the next item while the student answers this one. A quiz that ends
    with no item raises :class:`QuizError` from ``next()``; so does a model failure, where it happened.
    :meth:`result` is the quiz so far (everything, once iterated to the end); :meth:`close` stops the making
    after the item in progress."""

    def __init__(self, topic: str | None, qtype: str, n: int, session: QuizSession, banked: Sequence[QuizItem],
                 run: QuizRun | None, *, threaded: bool = False, progress: Progress | None = None,
                 chunks: Callable[[], dict[str, Chunk]] | None = None) -> None:
        self.topic = topic
        self.qtype = qtype
        self.n = n
        self.session = session
        self.banked = list(banked)
        self.items: list[QuizItem] = []  # given out so far
        self._run = run
        self._progress = progress
        self._chunks = chunks
        self._start = time.perf_counter()
        self._stop = threading.Event()
        self._ended = False
        self._pending: list[QuizItem] = list(banked)
        self._queue: queue.Queue[Any] | None = None
        self._iter: Iterator[QuizItem] | None = None
        self._thread: threading.Thread | None = None
        if run is not None:
            run.stop = self._stop
            if threaded:
                self._queue = queue.Queue()
                ctx = contextvars.copy_context()  # a UI's progress reporting reads its request's context
                self._thread = threading.Thread(target=ctx.run, args=(self._produce, run), name="studybot-quiz",
                                                daemon=True)
                self._thread.start()
            else:
                self._iter = iter(run)

    def _produce(self, run: QuizRun) -> None:
        assert self._queue is not None
        try:
            for item in run:
                self._queue.put(item)
            self._queue.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._queue.put(exc)

    def __iter__(self) -> QuizStream:
        return self

    def __next__(self) -> QuizItem:
        if self._ended:
            raise StopIteration
        item = self._next()
        if item is None:
            self._ended = True
            if self._run is None and self._progress is not None:
                self._progress("done", len(self.items), self.n)
            if not self.items:
                raise no_items(self._run.generated if self._run is not None else 0)
            raise StopIteration
        self.items.append(item)
        return item

    def _next(self) -> QuizItem | None:
        if self._pending:
            return self._pending.pop(0)
        if self._queue is not None:
            got = self._queue.get()
            if isinstance(got, BaseException):
                self._ended = True
                raise got
            return None if got is _END else got
        if self._iter is not None:
            try:
                return next(self._iter)
            except StopIteration:
                return None
            except BaseException:
                self._ended = True
                raise
        return None

    def close(self, wait: bool = False) -> None:
        """Stop making items (the one in progress is finished and dropped); ``wait``: until it is."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join()

    def __enter__(self) -> QuizStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def done(self) -> bool:
        return self._ended

    @property
    def ready(self) -> bool:
        """The next item (or the end) can be had without waiting."""
        return self._ended or bool(self._pending) or (self._queue is not None and not self._queue.empty()) or (
            self._queue is None and self._iter is None)

    def result(self) -> QuizResult:
        """The quiz as given out so far (``items`` in the order they came)."""
        if self._run is not None:
            res = self._run.result(self.banked)
            res.items = list(self.items)
            return res
        chunks = self._chunks() if self._chunks is not None else {}
        return QuizResult(self.topic, self.qtype, list(self.items), 0, 0, time.perf_counter() - self._start, [],
                          self.session.coverage(chunks), banked=len(self.banked))


# --- filling the bank -----------------------------------------------------------------------------------------
@dataclass
class FillReport:
    """What one fill did."""

    made: int = 0  # items banked
    tried: int = 0  # (passage, type) tries
    calls: int = 0  # model calls
    seconds: float = 0.0
    preempted: int = 0  # tries cut off for a student's request (tried again)
    by_type: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"made": self.made, "tried": self.tried, "model_calls": self.calls,
                "seconds": round(self.seconds, 1), "preempted": self.preempted, "by_type": dict(self.by_type)}


class BankFiller:
    """Makes bank items with a quiz maker whose model is the bank's view (:class:`rag.quiz.gate.BackgroundLLM`
    in the app; any LLM from the CLI): one item per passage and type, each made on its own (a fresh session,
    no topic), validated like any quiz item."""

    def __init__(self, bank: QuestionBank, maker: QuizMaker, attempts: int) -> None:
        self.bank = bank
        self.maker = maker
        self.attempts = attempts

    def todo(self, chunks: Iterable[Chunk], types: Sequence[str] = BANK_TYPES, *, spread: bool = True
             ) -> list[tuple[Chunk, str]]:
        """The (passage, type) pairs still to try: the quickest type first, and within a type the passages
        taken across sections (one from each section in turn), so a partly filled bank covers every section;
        without ``spread``, in the order given (a topic's passages, best first)."""
        tries = self.bank.tries()
        seen: set[str] = set()
        by_section: dict[str, list[Chunk]] = {}
        order: list[Chunk] = []
        for c in chunks:
            if quizzable(c) and c.content_hash not in seen:
                seen.add(c.content_hash)
                by_section.setdefault(section_key(c), []).append(c)
                order.append(c)
        if spread:
            order = []
            lists = [v for _, v in sorted(by_section.items())]
            for i in range(max((len(v) for v in lists), default=0)):
                order += [v[i] for v in lists if i < len(v)]
        return [(c, t) for t in types for c in order if not done(tries.get((c.content_hash, t)), self.attempts)]

    def calls(self) -> int:
        llm_calls = getattr(self.maker.llm, "calls", 0)
        return int(llm_calls) if isinstance(llm_calls, int) else 0

    def make_one(self, chunk: Chunk, qtype: str) -> QuizItem | None:
        """Try once to bank an item of ``qtype`` from ``chunk`` (:class:`Preempted` when cut off: nothing is
        recorded, the try is made again later)."""
        session = QuizSession(zlib.crc32(chunk.content_hash.encode()))  # the same options' order every time
        attempts = self.maker.generate(qtype, chunk, None, session)
        item = next((a.item for a in attempts if a.ok and a.item is not None), None)
        self.bank.record(chunk, qtype, item)
        return item

    def fill(self, tasks: Sequence[tuple[Chunk, str]], *, progress: Progress | None = None,
             stop: threading.Event | None = None, limit: int | None = None) -> FillReport:
        """Try each (passage, type) in turn until ``limit`` items are banked or ``stop`` is set."""
        report = FillReport()
        start = time.perf_counter()
        calls0 = self.calls()
        total = len(tasks)
        for i, (chunk, qtype) in enumerate(tasks):
            if (stop is not None and stop.is_set()) or (limit is not None and report.made >= limit):
                break
            if progress:
                progress(f"banking ({report.made} made)", i, total)
            try:
                item = self.make_one(chunk, qtype)
            except Preempted:
                report.preempted += 1
                continue
            report.tried += 1
            if item is not None:
                report.made += 1
                report.by_type[qtype] = report.by_type.get(qtype, 0) + 1
        if progress:
            progress(f"banking ({report.made} made)", total, total)
        report.calls = self.calls() - calls0
        report.seconds = time.perf_counter() - start
        return report


class BankWorker:
    """A thread of the app that fills the bank while the app is idle: ``filler(stop)`` builds the filler (its
    model the bank's view, which waits for idle and yields to a student's request), ``chunks()`` the index's
    chunks. :meth:`wake` after an ingest (the plan is made again); :meth:`stop` at the end."""

    def __init__(self, filler: Callable[[threading.Event], BankFiller], chunks: Callable[[], Iterable[Chunk]], *,
                 retry_s: float = 60.0) -> None:
        self._make_filler = filler
        self._chunks = chunks
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.made = 0
        self.tried = 0
        self.preempted = 0
        self.left = 0  # tries left in the current plan
        self.state = "not started"  # "planning" | "filling" | "waiting" (nothing left) | "stopped"
        self.error = ""  # the last failure, one sentence

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="studybot-bank", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """The index changed: plan again (dropping nothing in flight but what the bank's sync drops)."""
        self._wake.set()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "state": self.state, "made": self.made, "tried": self.tried,
                "preempted": self.preempted, "left": self.left, "error": self.error}

    def _loop(self) -> None:
        filler = self._make_filler(self._stop)
        while not self._stop.is_set():
            self._wake.clear()
            self.state = "planning"
            try:
                chunks = list(self._chunks())
                filler.bank.sync({c.content_hash for c in chunks})
                tasks = filler.todo(chunks)
            except StudybotError as exc:
                self._failed(str(exc))
                continue
            self.left = len(tasks)
            if not tasks:
                self.state = "waiting"
                self._wake.wait()
                continue
            self.state = "filling"
            for chunk, qtype in tasks:
                if self._stop.is_set() or self._wake.is_set():
                    break
                try:
                    item = filler.make_one(chunk, qtype)
                except Preempted:
                    self.preempted += 1
                    break  # plan again (the index may have changed meanwhile); this try comes first again
                except StudybotError as exc:
                    self._failed(str(exc))
                    break
                except Exception as exc:  # a bug must not kill the app's thread silently
                    log.exception("question bank: %s", exc)
                    self._failed(f"{type(exc).__name__}: {exc}")
                    break
                self.tried += 1
                self.left -= 1
                self.made += item is not None
        self.state = "stopped"

    def _failed(self, message: str) -> None:
        self.error = message
        log.warning("question bank: %s", message)
        self._stop.wait(self.retry_s)
