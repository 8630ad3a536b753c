"""The study database survives damage (issue 27): backups with SQLite's online backup API (on a process's first
open and after a day's first write, the last N kept, a damaged database never backed up), `studybot doctor`'s
study database check, `doctor --fix` restoring the newest good backup, and one sentence instead of a traceback
from the CLI and the Progress and Review tabs. Real SQLite files under the test's STUDYBOT_HOME; a damaged
database is a real one with 8 KiB overwritten in the middle."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rag.errors import StudyDatabaseError
from rag.quiz.models import QuizItem
from rag.settings import Settings
from rag.study.backup import BackupPolicy, backups, count_reviews, quick_check, restore
from rag.study.store import LOCAL_USER, StudyStore
from rag.types import Citation
from ui import tab_review
from ui.cli import main
from ui.service import StudyService
from ui.tab_progress import progress_outputs

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # midday UTC: the same calendar day in any time zone within ±11 h
N_ITEMS, N_ROUNDS, N_CONVERSATIONS = 300, 4, 20
N_REVIEWS = N_ITEMS * N_ROUNDS


def item(i: int) -> QuizItem:
    cite = Citation(n=1, chunk_id=f"c{i}", source="handbook.md", title="Handbook", section=f"Section {i % 7} > Part",
                    page=None, text="Bagging averages models trained on bootstrap samples. " * 4)
    return QuizItem(type="flashcard", question=f"Question {i}: what does bagging reduce?",
                    answer="variance " * 10, explanation="It averages many high-variance models. " * 4, options=[],
                    citation=cite)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed study database with 300 cards, 1,200 reviews and 20 saved conversations (about 600 KB, so 8 KiB
    in its middle are table pages); each test copies it."""
    path = tmp_path_factory.mktemp("seed") / "study.sqlite3"
    store = StudyStore(path)
    ids = store.add_items(LOCAL_USER, [item(i) for i in range(N_ITEMS)], now=T0)
    for r in range(N_ROUNDS):
        for i in ids:
            store.review(LOCAL_USER, i, "again" if i % 3 == 0 else "good", answer="reduces variance " * 4,
                         now=T0 + timedelta(days=r, minutes=i))
    for k in range(N_CONVERSATIONS):
        store.save_conversation(LOCAL_USER, f"conv{k}", [{"question": f"What is bagging ({k})?",
                                                          "answer": "It averages bootstrap models. " * 10}], now=T0)
    store.close()  # the last connection folds the write-ahead log into the file
    assert not Path(f"{path}-wal").exists() and path.stat().st_size > 400_000
    return path


@pytest.fixture
def home_db(seeded_db: Path, studybot_home: Path) -> Path:
    """The seeded database at <STUDYBOT_HOME>/study.sqlite3, where `studybot` finds it."""
    studybot_home.mkdir(parents=True, exist_ok=True)
    path = studybot_home / "study.sqlite3"
    shutil.copyfile(seeded_db, path)
    return path


def damage(path: Path) -> None:
    """Overwrite 8 KiB in the middle of the file (a closed database: nothing in a write-ahead log)."""
    assert not Path(f"{path}-wal").exists()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2 - 4096)
        f.write(random.Random(27).randbytes(8192))
    assert quick_check(path) is not None


def clock_at(times: list[datetime]) -> Callable[[], datetime]:
    """A clock that reads ``times[-1]`` (append to move it on)."""
    return lambda: times[-1]


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m ui.cli` in a fresh process (what the `studybot` script runs), with this test's environment."""
    return subprocess.run([sys.executable, "-m", "ui.cli", *argv], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)


def one_sentence(text: str, path: Path) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    assert str(path) in lines[0] and "studybot doctor --fix" in lines[0]
    return lines[0]


def conversations(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])


# --- the whole story: backed up, damaged, reported, restored -------------------------------------------------
def test_a_damaged_database_is_one_sentence_and_doctor_fix_restores_its_backup(
        home_db: Path, studybot_home: Path, embedder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = studybot_home / "backups"
    svc = StudyService(Settings())
    assert len(svc.study.mastery(LOCAL_USER)) == 7  # opening it took the backup
    [good] = backups(folder)
    assert count_reviews(good.path) == N_REVIEWS and quick_check(good.path) is None
    svc.study.close()
    good_bytes = good.path.read_bytes()

    damage(home_db)
    # This process opened the database before: no backup is tried, the query meets the damage.
    assert main(["progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_sentence(captured.err, home_db).startswith(f"error: The study database {home_db} is damaged")
    # A fresh process: its backup on open finds the damage, keeps the good backup and says so.
    for argv in (["progress"], ["review", "--json"]):
        proc = run_cli(*argv)
        assert proc.returncode == 2
        one_sentence(proc.stderr, home_db)
    assert [b.path for b in backups(folder)] == [good.path] and good.path.read_bytes() == good_bytes

    # doctor: the study database check fails, with the backup it can restore
    svc = StudyService(Settings(), embedder=embedder)
    assert main(["doctor", "--no-runtime", "--json"], service=svc) == 1
    rows = {r["check"]: r for r in json.loads(capsys.readouterr().out)}
    study = rows["study database"]
    assert not study["ok"] and f"{home_db} is damaged (" in study["detail"]
    assert "1 backup in" in study["detail"] and "doctor --fix" in study["detail"]

    # doctor --fix: the damaged file is moved aside and the backup copied in (the library is a one-file corpus)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.md").write_text("# Bagging\n\nBagging averages models trained on bootstrap samples, which "
                                     "reduces variance.\n")
    monkeypatch.setenv("STUDYBOT_CORPUS_DIR", str(corpus))
    svc = StudyService(Settings(), embedder=embedder)
    main(["doctor", "--fix", "--no-runtime", "--json"], service=svc)
    captured = capsys.readouterr()
    restored = [ln for ln in captured.err.splitlines() if "study database" in ln]
    assert len(restored) == 1 and restored[0].startswith(f"Restored the study database from its backup of {good.when}")
    assert ("no review is lost" in restored[0] or f"any reviews made after {good.when} are lost" in restored[0])
    rows = {r["check"]: r for r in json.loads(captured.out)}
    assert rows["study database"]["ok"], rows["study database"]
    [aside] = studybot_home.glob("study.sqlite3.damaged-*")
    assert aside.read_bytes()[:16] == b"SQLite format 3\x00" and quick_check(aside) is not None  # kept as it was
    assert quick_check(home_db) is None and count_reviews(home_db) == N_REVIEWS
    assert conversations(home_db) == N_CONVERSATIONS

    assert main(["progress", "--json"]) == 0
    sections = json.loads(capsys.readouterr().out)["sections"]
    assert sum(s["reviews"] for s in sections) == N_REVIEWS
    store = StudyStore(home_db)
    assert store.conversation(LOCAL_USER, "conv3")[0]["question"] == "What is bagging (3)?"  # type: ignore[index]


def test_the_progress_and_review_tabs_show_the_sentence(home_db: Path) -> None:
    damage(home_db)
    svc = StudyService(Settings())
    summary, mastery, reviews, due, table = progress_outputs(svc, LOCAL_USER)
    assert "is damaged" in summary and "studybot doctor --fix" in summary and str(home_db) in summary
    assert mastery.empty and reviews.empty and due.empty and table.empty
    state = tab_review.load(svc, LOCAL_USER)
    assert state.item_id is None and "studybot doctor --fix" in state.message
    view = tab_review.view(svc, LOCAL_USER, state)
    assert "studybot doctor --fix" in view.status_html and not view.can_reveal and not view.can_rate
    from ui import tab_chat

    assert tab_chat.saved_choices(svc, LOCAL_USER) == []  # the chat still opens; its saved list is empty


def test_every_sqlite_error_of_the_store_is_one_sentence(home_db: Path) -> None:
    store = StudyStore(home_db)  # no backups: the queries themselves meet the damage
    store.close()
    damage(home_db)
    store = StudyStore(home_db)
    with pytest.raises(StudyDatabaseError) as caught:
        store.mastery(LOCAL_USER)
    message = str(caught.value)
    assert "\n" not in message and str(home_db) in message and "studybot doctor --fix" in message
    assert isinstance(caught.value.__cause__, sqlite3.Error)


# --- backups ------------------------------------------------------------------------------------------------
def test_backups_rotate_keeping_the_newest_n(home_db: Path, tmp_path: Path) -> None:
    times = [T0]
    folder = tmp_path / "backups"
    store = StudyStore(home_db, BackupPolicy(folder, keep=3), clock=clock_at(times))
    assert len(backups(folder)) == 1  # on open
    for h in range(1, 6):
        times.append(T0 + timedelta(hours=h))
        assert store.backup_now() is not None
    kept = backups(folder)
    assert [b.taken for b in kept] == [T0 + timedelta(hours=h) for h in (3, 4, 5)]
    assert [b.path.name for b in kept] == sorted(b.path.name for b in kept)  # names sort by time
    assert all(quick_check(b.path) is None and count_reviews(b.path) == N_REVIEWS for b in kept)
    assert not [p for p in folder.iterdir() if p not in {b.path for b in kept}]  # no partial or journal files


def test_a_days_first_write_is_followed_by_a_backup(home_db: Path, tmp_path: Path) -> None:
    times = [T0]
    folder = tmp_path / "backups"
    store = StudyStore(home_db, BackupPolicy(folder, keep=7), clock=clock_at(times))
    assert [b.taken for b in backups(folder)] == [T0]  # on open
    times.append(T0 + timedelta(hours=1))
    store.review(LOCAL_USER, 1, "good", now=times[-1])  # the same day: no second backup
    assert [b.taken for b in backups(folder)] == [T0]
    times.append(T0 + timedelta(days=1))
    store.review(LOCAL_USER, 2, "good", now=times[-1])  # the next day's first write
    day2 = T0 + timedelta(days=1)
    assert [b.taken for b in backups(folder)] == [T0, day2]
    assert count_reviews(backups(folder)[-1].path) == N_REVIEWS + 2  # taken after the write
    times.append(T0 + timedelta(days=1, hours=2))
    store.save_conversation(LOCAL_USER, "later", [{"question": "Q?", "answer": "A."}], now=times[-1])
    assert [b.taken for b in backups(folder)] == [T0, day2]
    # Another open in this process takes no second backup on open.
    times.append(T0 + timedelta(days=1, hours=3))
    StudyStore(home_db, BackupPolicy(folder, keep=7), clock=clock_at(times))
    assert [b.taken for b in backups(folder)] == [T0, day2]


def test_a_new_or_empty_database_is_not_backed_up_on_open(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    StudyStore(tmp_path / "new.sqlite3", BackupPolicy(folder, keep=7), clock=lambda: T0)
    StudyStore(tmp_path / "new.sqlite3", BackupPolicy(folder, keep=7), clock=lambda: T0)
    assert backups(folder) == []


def test_each_process_backs_up_on_open_only_what_changed(home_db: Path, studybot_home: Path) -> None:
    folder = studybot_home / "backups"
    assert run_cli("progress").returncode == 0
    assert len(backups(folder)) == 1
    assert run_cli("progress").returncode == 0  # unchanged since the newest backup
    assert len(backups(folder)) == 1
    store = StudyStore(home_db)  # a write from elsewhere
    store.review(LOCAL_USER, 1, "good", now=T0 + timedelta(days=9))
    store.close()
    assert run_cli("progress").returncode == 0
    found = backups(folder)
    assert len(found) == 2 and count_reviews(found[-1].path) == N_REVIEWS + 1


def test_a_damaged_database_is_never_backed_up(home_db: Path, tmp_path: Path) -> None:
    times = [T0]
    folder = tmp_path / "backups"
    store = StudyStore(home_db, BackupPolicy(folder, keep=2), clock=clock_at(times))
    times.append(T0 + timedelta(hours=1))
    store.backup_now()
    store.close()
    good = {b.path: b.path.read_bytes() for b in backups(folder)}
    assert len(good) == 2
    damage(home_db)
    times.append(T0 + timedelta(hours=2))
    with pytest.raises(StudyDatabaseError, match="is damaged"):
        store.backup_now()  # the copy fails quick_check: nothing kept, no good backup rotated out
    assert {b.path: b.path.read_bytes() for b in backups(folder)} == good
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in good)


# --- restore ------------------------------------------------------------------------------------------------
def test_restore_counts_the_reviews_made_after_the_backup(home_db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    store = StudyStore(home_db, BackupPolicy(folder, keep=7), clock=lambda: T0)
    for i in range(1, 6):
        store.review(LOCAL_USER, i, "good", now=T0 + timedelta(days=9))
    store.close()
    done = restore(home_db, folder, T0 + timedelta(days=9))
    assert done.sentence().endswith(f"5 reviews made after {done.backup.when} are lost.")
    assert count_reviews(home_db) == N_REVIEWS and count_reviews(done.aside) == N_REVIEWS + 5


def test_restore_says_when_the_damaged_file_cannot_be_counted(home_db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    StudyStore(home_db, BackupPolicy(folder, keep=7), clock=lambda: T0).close()
    with home_db.open("r+b") as f:
        f.write(bytes(8192))  # the header and the schema page: not a database any more
    done = restore(home_db, folder, T0)
    assert done.damaged_reviews is None
    assert done.sentence().endswith(f"any reviews made after {done.backup.when} are lost (the damaged file could "
                                    "not be counted).")
    assert count_reviews(home_db) == N_REVIEWS


def test_doctor_fix_without_a_good_backup_says_what_to_do(home_db: Path, studybot_home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli_library import fix_study_database

    damage(home_db)
    folder = studybot_home / "backups"
    folder.mkdir()
    (folder / "study-20261201T120000000000Z.sqlite3").write_bytes(b"not a database")  # a bad backup is skipped
    assert not fix_study_database(StudyService(Settings()))
    out = capsys.readouterr().err.strip()
    assert out.count("\n") == 0 and "holds no good backup" in out and str(home_db) in out
    assert home_db.exists() and not list(studybot_home.glob("study.sqlite3.damaged-*"))  # nothing moved
