"""Backups of the study database: what a student cannot re-create (every review, every card's schedule, the
saved conversations) survives a damaged file.

* A backup is a copy made with SQLite's online backup API (a consistent snapshot, even while another
  connection writes) into ``backups/study-<UTC time>.sqlite3`` beside the database (``<home>/backups``; the
  names sort by time, and start with the database's own name). It is kept
  only when ``PRAGMA quick_check`` on the copy says ok, so a damaged database is never backed up, and older
  backups are removed only after a good new one is in place: the newest ``storage.study_backups`` stay.
* :class:`rag.study.store.StudyStore` takes one when a process first opens the database (when it has rows and
  changed since the newest backup) and after a day's first write.
* :func:`restore` (``studybot doctor --fix``) moves a damaged database aside
  (``study.sqlite3.damaged-<UTC time>``, kept) and copies the newest good backup in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rag.errors import StudyDatabaseError

log = logging.getLogger(__name__)

STAMP = "%Y%m%dT%H%M%S%fZ"  # UTC, to the microsecond: names sort by time
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_ACCESS = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")


@dataclass(frozen=True)
class BackupPolicy:
    """Where a study database's backups go and how many are kept."""

    folder: Path
    keep: int


@dataclass(frozen=True)
class Backup:
    path: Path
    taken: datetime  # UTC, from its name

    @property
    def when(self) -> str:
        return f"{self.taken:%Y-%m-%d %H:%M} UTC"


def stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime(STAMP)


def database_error(path: Path, exc: BaseException) -> StudyDatabaseError:
    """A SQLite error from the study database as one sentence that names the file and the fix."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    if name.startswith(_BUSY):
        return StudyDatabaseError(f"The study database {path} is busy ({exc}): another studybot process is writing "
                                  "to it; try again in a moment.")
    if name.startswith("SQLITE_FULL"):
        return StudyDatabaseError(f"The study database {path} cannot be written ({exc}): free some disk space, "
                                  "then try again.")
    if name.startswith(_ACCESS):
        return StudyDatabaseError(f"The study database {path} cannot be opened or written ({exc}): check that you "
                                  "may write to it and to its folder.")
    return damaged_error(path, str(exc))


def damaged_error(path: Path, problem: str) -> StudyDatabaseError:
    return StudyDatabaseError(f"The study database {path} is damaged ({problem}): run `studybot doctor --fix` to "
                              "restore its newest good backup.")


def _connect(path: Path) -> sqlite3.Connection:
    """An existing database file, never created here."""
    return sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True, timeout=30)


def quick_check(path: Path) -> str | None:
    """None when ``PRAGMA quick_check`` says ok; else its first complaint (or why the file cannot be read)."""
    try:
        with contextlib.closing(_connect(path)) as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return str(exc)
    if rows == ["ok"]:
        return None
    lines = [ln.strip() for r in rows for ln in r.splitlines() if ln.strip() and not ln.startswith("***")]
    if not lines:
        return "quick_check did not say ok"
    more = f", and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''}" if len(lines) > 1 else ""
    return f"quick_check: {lines[0]}{more}"


def count_reviews(path: Path) -> int | None:
    """How many reviews ``path`` holds (every user); None when they cannot be read."""
    try:
        with contextlib.closing(_connect(path)) as db:
            return int(db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0])
    except sqlite3.Error:
        return None


def backups(folder: Path, stem: str = "study") -> list[Backup]:
    """The backups in ``folder`` of the database whose file name (less its suffix) is ``stem``, oldest first."""
    name = re.compile(rf"^{re.escape(stem)}-(\d{{8}}T\d{{12}}Z)\.sqlite3$")
    found: list[Backup] = []
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            m = name.match(p.name)
            if m and p.is_file():
                found.append(Backup(p, datetime.strptime(m.group(1), STAMP).replace(tzinfo=UTC)))
    return sorted(found, key=lambda b: b.path.name)


def changed_since(db_path: Path, backup: Backup) -> bool:
    """Whether ``db_path`` (or its write-ahead log) was written since ``backup`` was started (its mtime is set
    to that moment). Errs on the side of True."""
    try:
        since = backup.path.stat().st_mtime_ns
        if db_path.stat().st_mtime_ns >= since:
            return True
        wal = Path(f"{db_path}-wal")
        if wal.exists():
            st = wal.stat()
            return st.st_size > 0 and st.st_mtime_ns >= since
        return False
    except OSError:
        return True


def take(db_path: Path, policy: BackupPolicy, now: datetime) -> Backup | None:
    """Back ``db_path`` up into ``policy.folder`` and keep the newest ``policy.keep`` backups. Raises
    :class:`StudyDatabaseError` when the database is damaged (its copy fails ``quick_check``; nothing is kept
    and no older backup is removed); returns None (and logs why) when the copy cannot be written."""
    folder = policy.folder
    final = folder / f"{db_path.stem}-{stamp(now)}.sqlite3"
    partial = folder / f".{final.name}.partial"
    started = time.time_ns()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        try:
            with contextlib.closing(_connect(db_path)) as src, contextlib.closing(sqlite3.connect(partial)) as dst:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # a plain file: no -wal/-shm beside the backups
        except sqlite3.Error as exc:
            problem = quick_check(db_path)
            if problem is not None:
                raise damaged_error(db_path, problem) from exc
            log.warning("studybot: could not back up the study database %s into %s: %s", db_path, folder, exc)
            return None
        problem = quick_check(partial)
        if problem is not None:
            raise damaged_error(db_path, problem)
        os.utime(partial, ns=(started, started))  # changed_since() compares with the moment the copy began
        os.replace(partial, final)
    except OSError as exc:
        log.warning("studybot: could not back up the study database %s into %s: %s", db_path, folder, exc)
        return None
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    for old in backups(folder, db_path.stem)[: -policy.keep]:
        with contextlib.suppress(OSError):
            old.path.unlink()
    return Backup(final, datetime.strptime(stamp(now), STAMP).replace(tzinfo=UTC))


@dataclass(frozen=True)
class Restored:
    backup: Backup
    aside: Path  # where the damaged database was moved
    damaged_reviews: int | None  # None: they could not be counted
    backup_reviews: int

    def sentence(self) -> str:
        head = (f"Restored the study database from its backup of {self.backup.when} (the damaged file is kept as "
                f"{self.aside})")
        if self.damaged_reviews is None:
            return f"{head}; any reviews made after {self.backup.when} are lost (the damaged file could not be counted)."
        lost = max(self.damaged_reviews - self.backup_reviews, 0)
        if lost == 0:
            return f"{head}; no review is lost."
        return f"{head}; {lost} review{'s' if lost != 1 else ''} made after {self.backup.when} {'are' if lost != 1 else 'is'} lost."


def newest_good(folder: Path, stem: str = "study") -> Backup | None:
    """The newest backup that passes ``quick_check`` now."""
    return next((b for b in reversed(backups(folder, stem)) if quick_check(b.path) is None), None)


def restore(db_path: Path, folder: Path, now: datetime) -> Restored:
    """Move the (damaged) database at ``db_path`` aside, with its write-ahead log, and copy the newest good
    backup in. Raises :class:`StudyDatabaseError` when there is no good backup (nothing is moved). Run it
    while no other studybot process has the database open."""
    good = newest_good(folder, db_path.stem)
    if good is None:
        raise StudyDatabaseError(
            f"The study database {db_path} is damaged and {folder} holds no good backup of it: move it aside "
            "(your reviews, card schedules and saved conversations start afresh) or copy back a copy you keep.")
    damaged = count_reviews(db_path)
    backup_reviews = count_reviews(good.path) or 0
    aside = db_path.with_name(f"{db_path.name}.damaged-{stamp(now)}")
    try:
        os.replace(db_path, aside)
        wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
        if wal.exists():  # its committed transactions belong to the damaged file, not to the restored one
            os.replace(wal, Path(f"{aside}-wal"))
        shm.unlink(missing_ok=True)
        partial = db_path.with_name(f".{db_path.name}.restoring")
        shutil.copyfile(good.path, partial)
        os.replace(partial, db_path)
    except OSError as exc:
        raise StudyDatabaseError(f"The study database {db_path} could not be restored from {good.path} ({exc}): "
                                 "check that you may write to its folder.") from exc
    return Restored(good, aside, damaged, backup_reviews)


def study_check(path: Path, folder: Path) -> tuple[bool, str]:
    """`studybot doctor`'s "study database" line for the database at ``path`` with its backups in ``folder``:
    (ok, what was found or the fix). It passes ``PRAGMA quick_check``; how many backups there are and the newest
    one's time."""
    found = backups(folder, path.stem)
    kept = (f"{len(found)} backup{'s' if len(found) != 1 else ''} in {folder}, newest {found[-1].when}" if found
            else f"no backup in {folder} yet")
    if not path.exists():
        return True, f"none yet at {path} ({kept})"
    problem = quick_check(path)
    if problem is None:
        return True, f"{path} (quick_check ok; {kept})"
    fix = ("run `studybot doctor --fix` to restore the newest good backup" if found else
           "there is no backup to restore: move it aside to start afresh, or copy back a copy you keep")
    return False, f"{path} is damaged ({problem}; {kept}): {fix}"
