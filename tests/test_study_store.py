"""The study database (rag/study/store.py) on a real SQLite file: FSRS scheduling, persistence, users, stale
cards, conversations."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rag.quiz.models import QuizItem
from rag.study.store import StudyStore, StudyStoreError
from rag.types import Citation

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def item(q: str, chunk: str = "c1", section: str = "Regularization") -> QuizItem:
    cite = Citation(n=1, chunk_id=chunk, source="doc.md", title="Doc", section=section, page=None,
                    text="L1 drives weights to zero.")
    return QuizItem(type="flashcard", question=q, answer="zero weights", explanation="", options=[], citation=cite)


def test_a_new_card_is_due_at_once_and_fsrs_moves_it_on(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    [iid] = store.add_items("ann", [item("What does L1 do?")], now=T0)
    due = store.due("ann", now=T0)
    assert [d.item_id for d in due] == [iid] and due[0].item.question == "What does L1 do?"
    nxt = store.review("ann", iid, "good", now=T0)
    assert nxt > T0 and store.due("ann", now=T0) == []
    assert [d.item_id for d in store.due("ann", now=nxt + timedelta(seconds=1))] == [iid]
    later = store.review("ann", iid, "easy", now=nxt + timedelta(seconds=1))
    assert later - nxt > nxt - T0  # a remembered card's interval grows
    again = store.review("ann", iid, "again", now=later)
    assert again - later < timedelta(hours=1)  # forgotten: back soon


def test_everything_survives_a_restart_and_users_are_apart(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite3"
    store = StudyStore(path)
    [a] = store.add_items("ann", [item("Q1?")], now=T0)
    store.add_items("bob", [item("Q2?")], now=T0)
    store.review("ann", a, 3, now=T0)
    store.save_conversation("ann", "conv1", [{"question": "What is L1?", "answer": "It zeroes weights [1]."}], now=T0)
    del store
    again = StudyStore(path)
    assert again.due("ann", now=T0) == [] and [d.item.question for d in again.due("bob", now=T0)] == ["Q2?"]
    assert again.questions("ann") == ["Q1?"] and again.questions("bob") == ["Q2?"]
    assert [c["title"] for c in again.conversations("ann")] == ["What is L1?"] and again.conversations("bob") == []
    assert again.conversation("ann", "conv1")[0]["answer"] == "It zeroes weights [1]."  # type: ignore[index]
    assert again.conversation("bob", "conv1") is None
    with pytest.raises(StudyStoreError):
        again.review("bob", a, "good", now=T0)  # not bob's card
    assert again.delete_conversation("ann", "conv1") and again.conversations("ann") == []


def test_a_reingest_that_changes_or_removes_a_chunk_marks_its_cards_stale(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    store.add_items("ann", [item("Q1?", "c1"), item("Q2?", "c2"), item("Q3?", "c3")],
                    content_hashes={"c1": "h1", "c2": "h2", "c3": "h3"}, now=T0)
    assert store.mark_stale({"c1": "h1", "c2": "CHANGED"}) == 2
    stale = {d.item.question: d.stale for d in store.due("ann", now=T0)}
    assert stale == {"Q1?": False, "Q2?": True, "Q3?": True}  # shown as stale, never dropped


def test_the_same_question_is_recorded_once_and_bad_ratings_are_refused(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    first = store.add_items("ann", [item("Q1?")], now=T0)
    assert store.add_items("ann", [item("Q1?")], now=T0) == first
    with pytest.raises(StudyStoreError, match="again, hard, good or easy"):
        store.review("ann", first[0], "meh", now=T0)


def test_threads_write_at_once_without_losing_a_review(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    ids = store.add_items("ann", [item(f"Q{i}?") for i in range(8)], now=T0)

    def grade(i: int) -> None:
        store.review("ann", ids[i], "good", now=T0)

    threads = [threading.Thread(target=grade, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(m["reviews"] for m in store.mastery("ann")) == 8


def test_a_database_from_a_newer_version_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite3"
    StudyStore(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StudyStoreError, match="newer studybot"):
        StudyStore(path)


def test_cli_quiz_user_records_cards_that_review_and_progress_report(corpus_settings, embedder, capsys) -> None:  # type: ignore[no-untyped-def]
    """The CLI contract: `quiz --user U` records the items, `review --user U --json` lists them due now,
    grading one moves it on, `progress --user U --json` reports its section; another user sees nothing."""
    import json

    from tests.fakes import PassageLLM, good
    from ui.cli import main
    from ui.service import StudyService

    # a private copy of the ingested corpus: the study database is written into its home
    svc = StudyService(corpus_settings, embedder=embedder, llm=PassageLLM([good("flashcard") for _ in range(6)]))
    assert main(["quiz", "-n", "2", "--type", "flashcard", "--user", "ann", "--json"], service=svc) == 0
    made = json.loads(capsys.readouterr().out)["items"]
    assert main(["review", "--user", "ann", "--json"], service=svc) == 0
    due = json.loads(capsys.readouterr().out)["due"]
    assert sorted(d["question"] for d in due) == sorted(i["question"] for i in made) and len(due) == 2
    assert all((d["section"] or d["source"]) and d["due"] for d in due)  # a passage may precede any heading
    assert main(["review", "--user", "bob", "--json"], service=svc) == 0
    assert json.loads(capsys.readouterr().out) == {"due": []}
    svc.study.review("ann", due[0]["item_id"], "good")
    # a restarted service (a new process) sees the same state on the same SQLite file
    again = StudyService(svc.settings, embedder=svc.embedder, index=svc.index, retriever=svc.retriever)
    assert main(["review", "--user", "ann", "--json"], service=again) == 0
    assert [d["item_id"] for d in json.loads(capsys.readouterr().out)["due"]] == [due[1]["item_id"]]
    assert main(["progress", "--user", "ann", "--json"], service=again) == 0
    sections = json.loads(capsys.readouterr().out)["sections"]
    assert {"section", "mastery", "reviews"} <= set(sections[0])
    assert sum(s["reviews"] for s in sections) == 1
    assert max(s["mastery"] for s in sections) == 1.0  # its one review was "good"


def test_a_real_reingest_marks_the_cards_of_a_changed_document_stale(tmp_path: Path) -> None:
    from rag.settings import Settings
    from tests.fakes import HashEmbedder
    from ui.service import StudyService

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# Regularization\n\nL1 regularization drives some weights to exactly zero, "
                                 "which makes the model sparse and easier to read.\n", encoding="utf-8")
    (corpus / "b.md").write_text("# Dropout\n\nDropout randomly disables units during training so the network "
                                 "cannot rely on any single unit.\n", encoding="utf-8")
    settings = Settings(storage={"home": tmp_path / "home", "corpus_dir": corpus})
    svc = StudyService(settings, embedder=HashEmbedder())
    assert svc.ingest().ok
    chunks = {c.source: c for c in svc.retriever.chunks.values()}
    made = [QuizItem(type="flashcard", question=f"About {src}?", answer="x", explanation="", options=[],
                     citation=Citation.of(1, chunk)) for src, chunk in sorted(chunks.items())]
    svc.record_quiz("ann", made)
    (corpus / "a.md").write_text("# Regularization\n\nL1 regularization adds the absolute weights to the loss; "
                                 "it can zero some of them out.\n", encoding="utf-8")
    assert svc.ingest().ok
    stale = {d.item.question: d.stale for d in svc.study.due("ann")}
    assert stale == {"About a.md?": True, "About b.md?": False}
