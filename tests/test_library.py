"""The library (corpus folder + uploads) through the real CLI, Chroma and embedder: uploads survive a plain
`studybot ingest`, a corrupt index is rebuilt by the advised command, big files are refused (and progress is
printed without a TTY), links out of the corpus folder are skipped, identical files are indexed once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rag.settings import Settings
from tests.fakes import HashEmbedder
from ui.cli import main
from ui.service import StudyService

ALPHA = "# Alpha notes\n\n## Kernels\n\nThe RBF kernel maps inputs into an infinite-dimensional feature space.\n"
BETA = "# Beta notes\n\n## Optimizers\n\nThe Adam optimizer keeps running estimates of the first two moments.\n"
ZORB = ("# Course notes\n\n## Zorblax scaling\n\nZorblax scaling divides every feature by its running "
        "quartile spread before the first layer; it was invented for this test.\n")


@pytest.fixture
def small_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "alpha.md").write_text(ALPHA)
    (corpus / "beta.md").write_text(BETA)
    monkeypatch.setenv("STUDYBOT_CORPUS_DIR", str(corpus))
    return corpus


HASH = HashEmbedder()  # these tests are about the library's rules, not about what the embedder knows


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """One CLI command on a freshly built service, as a new `studybot` process would (a restart each time)."""
    code = main(list(argv), service=StudyService(Settings(), embedder=HASH))
    out, err = capsys.readouterr()
    return code, out, err


def _sources(capsys: pytest.CaptureFixture[str], question: str, k: int = 3) -> list[str]:
    code, out, _ = _run(capsys, "retrieve", question, "-k", str(k), "--json")
    assert code == 0, out
    return [p["source"] for p in json.loads(out)]


def test_an_added_file_survives_a_plain_ingest(small_corpus: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "ingest")[0] == 0
    notes = tmp_path / "elsewhere" / "My Notes!.md"
    notes.parent.mkdir()
    notes.write_text(ZORB)
    code, out, _ = _run(capsys, "add", str(notes))
    assert code == 0 and "My Notes.md: added" in out
    uploads = Path(os.environ["STUDYBOT_HOME"]) / "uploads"
    assert (uploads / "My Notes.md").read_text() == ZORB  # saved into the uploads folder, name sanitised
    notes.unlink()  # the original may go away: the library keeps its own copy

    code, out, _ = _run(capsys, "ingest")  # what `make run` and the Docker image run on every start
    assert code == 0 and "removed 0" in out, out
    assert _sources(capsys, "what does zorblax scaling divide each feature by?", 1) == ["uploads/My Notes.md"]

    code, out, _ = _run(capsys, "remove", "My Notes.md")
    assert code == 0 and out.strip() == "removed uploads/My Notes.md"
    assert not (uploads / "My Notes.md").exists()
    assert "uploads/My Notes.md" not in _sources(capsys, "what does zorblax scaling divide each feature by?")
    code, _, err = _run(capsys, "remove", "My Notes.md")
    assert code == 1 and "not in the library" in err


def test_add_refuses_bad_files_with_a_reason_and_keeps_going(small_corpus: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ\x90\x00")
    big = tmp_path / "big.txt"
    big.write_text("word " * 300_000)  # 1.5 MB
    good = tmp_path / "good.md"
    good.write_text(ZORB)
    code, out, _ = _run(capsys, "add", str(exe), str(big), str(good), "--max-file-mb", "1")
    assert code == 1
    assert "tool.exe: unsupported file type '.exe'" in out
    assert "big.txt: 1.4 MB is over the 1 MB file limit" in out
    assert "good.md: added" in out


def test_a_corrupt_index_is_rebuilt_by_the_advised_command(small_corpus: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "ingest")[0] == 0
    home = Path(os.environ["STUDYBOT_HOME"])
    sqlite = home / "index" / "chroma" / "chroma.sqlite3"
    with sqlite.open("r+b") as fh:
        fh.write(os.urandom(8192))

    code, out, _ = _run(capsys, "doctor", "--no-runtime")
    index_row = next(line for line in out.splitlines() if " index " in line)
    assert code == 1 and index_row.startswith("FIX")
    assert f"`studybot ingest --rebuild` to rebuild it from {small_corpus}" in index_row  # no relative path
    monkeypatch.chdir(tmp_path)  # the advice works from any folder

    code, out, err = _run(capsys, "ingest", "--rebuild")
    assert code == 0, err
    assert "the old index was unreadable; it is kept aside at" in out
    aside = list((home / "index").glob("broken-*"))
    assert len(aside) == 1 and (aside[0] / "chroma.sqlite3").exists()
    assert _sources(capsys, "which optimizer keeps moment estimates?", 1) == ["beta.md"]
    code, out, _ = _run(capsys, "doctor", "--no-runtime")
    assert next(line for line in out.splitlines() if " index " in line).startswith("ok")


def test_big_files_are_refused_and_progress_is_printed_without_a_tty(small_corpus: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"Paragraph {i}: gradient noise scale {i} relates batch size to the learning rate schedule."
             for i in range(1300)]
    (small_corpus / "huge.txt").write_text("\n\n".join(lines))  # about 120 KB
    code, out, err = _run(capsys, "ingest", "--max-file-mb", "0.05")
    assert code == 1
    assert "huge.txt: 0.1 MB is over the 0.05 MB file limit; split it, or raise the limit with --max-file-mb 1" in out
    assert "alpha.md:" not in out and "added 2" in out  # the other files went in

    code, out, err = _run(capsys, "ingest", "--max-file-mb", "1")  # stderr is not a TTY under capsys
    assert code == 0, out + err
    assert re.search(r"^  huge\.txt: [\d,]+ chunks$", err, re.M), err  # up front, per file
    plan = [line for line in err.splitlines() if line.startswith("embedding ")]
    # the ETA comes from the rate the first ingest measured on this machine
    assert plan and re.search(r"embedding [\d,]+ chunks \(\+[\d,]+ sentence windows\) from 1 files: about \d+", plan[0])
    steps = [line for line in err.splitlines() if re.match(r"embedding: [\d,]+/[\d,]+ chunks \(\d+%\)", line)]
    assert len(steps) >= 2 and "(100%)" in steps[-1] and "chunks/s" in steps[0]


def test_links_out_of_the_corpus_folder_are_skipped(small_corpus: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(ZORB)
    (small_corpus / "linked.md").symlink_to(outside / "secret.md")
    (small_corpus / "linked-dir").symlink_to(outside, target_is_directory=True)
    (small_corpus / "alias.md").symlink_to(small_corpus / "alpha.md")  # inside: fine (and a duplicate)
    code, out, _ = _run(capsys, "ingest")
    assert code == 0, out  # a skip is not a failure: said, and counted as skipped
    assert "failed 0, skipped 2 files" in out
    assert "linked.md: a symbolic link to a file outside the corpus folder" in out
    assert "linked-dir: a symbolic link to a folder outside the corpus folder" in out
    assert "STUDYBOT_INGEST_FOLLOW_SYMLINKS=true" in out
    assert not any(s.startswith("linked") for s in _sources(capsys, "zorblax scaling quartile spread", 5))

    monkeypatch.setenv("STUDYBOT_INGEST_FOLLOW_SYMLINKS", "true")
    code, out, _ = _run(capsys, "ingest")
    assert code == 0, out
    top = _sources(capsys, "zorblax scaling quartile spread", 2)
    assert top[0] in ("linked.md", "linked-dir/secret.md")
    assert not {"linked.md", "linked-dir/secret.md"} <= set(top)  # same bytes: indexed once


def test_identical_files_are_indexed_once(small_corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (small_corpus / "copy-of-beta.md").write_text(BETA)
    code, out, _ = _run(capsys, "ingest")
    assert code == 0
    assert "duplicate copy-of-beta.md: same content as beta.md; indexed once, as beta.md" in out
    top = _sources(capsys, "which optimizer keeps moment estimates?", 3)
    assert top.count("beta.md") == 1 and "copy-of-beta.md" not in top
    code, out, _ = _run(capsys, "ingest")  # stable: nothing to do the second time
    assert "added 0, updated 0, removed 0" in out and "0 embedded" in out

    (small_corpus / "beta.md").unlink()  # the copy now holds the content
    code, out, _ = _run(capsys, "ingest")
    assert code == 0 and "added 1, updated 0, removed 1" in out and "duplicate" not in out
    assert _sources(capsys, "which optimizer keeps moment estimates?", 1) == ["copy-of-beta.md"]


def test_an_upload_identical_to_a_corpus_file_is_noted(small_corpus: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "ingest")[0] == 0
    twin = tmp_path / "alpha-again.md"
    twin.write_text(ALPHA)
    code, out, _ = _run(capsys, "add", str(twin))
    assert code == 0 and "alpha-again.md: same content as alpha.md; indexed once" in out
    code, out, _ = _run(capsys, "ingest")
    assert code == 0 and "added 0, updated 0, removed 0" in out



def test_doctor_fix_builds_an_empty_index_and_rebuilds_a_broken_one(small_corpus: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """What `make run` (serve --prepare) and the Docker image do on every start."""
    code, out, err = _run(capsys, "doctor", "--fix", "--no-runtime")
    assert code == 0, out + err
    assert "added 2" in err and next(ln for ln in out.splitlines() if " index " in ln).startswith("ok")
    sqlite = Path(os.environ["STUDYBOT_HOME"]) / "index" / "chroma" / "chroma.sqlite3"
    with sqlite.open("r+b") as fh:
        fh.write(os.urandom(8192))
    code, out, err = _run(capsys, "doctor", "--fix", "--no-runtime")
    assert code == 0, out + err
    assert "rebuilding the index" in err and "kept aside" in err
    assert _sources(capsys, "which optimizer keeps moment estimates?", 1) == ["beta.md"]
