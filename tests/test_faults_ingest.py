"""Ingest and index faults through the real CLI, Chroma and embedder: a home the user cannot write is named as
a permissions problem (never "rebuild", which cannot help), hidden files and links are skipped with a line each
and are not failures, and the segment folders Chroma leaves behind (dropped collections, killed ingests) are
removed by the next ingest.

The permission tests run studybot in a child process that cannot write the home: as root (which ignores file
modes) the child runs as root without the capabilities that override them (``setpriv --bounding-set``), so a
read-only folder is read-only to it; as any other user, the folder's mode is enough. A read-only file system is
a read-only bind mount in a mount namespace of its own (``unshare -m``)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.backends.store import Index, permission_message, running_user
from rag.settings import Settings
from ui.cli import main
from ui.service import StudyService

ROOT = Path(__file__).resolve().parent.parent
ALPHA = "# Alpha notes\n\n## Kernels\n\nThe RBF kernel maps inputs into an infinite-dimensional feature space.\n"
BETA = "# Beta notes\n\n## Optimizers\n\nThe Adam optimizer keeps running estimates of the first two moments.\n"
QUESTION = "which kernel maps inputs into an infinite-dimensional space?"


@pytest.fixture
def small_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "alpha.md").write_text(ALPHA)
    (corpus / "beta.md").write_text(BETA)
    monkeypatch.setenv("STUDYBOT_CORPUS_DIR", str(corpus))
    return corpus


def _run(capsys: pytest.CaptureFixture[str], embedder: Any, *argv: str) -> tuple[int, str, str]:
    """One CLI command on a freshly built service (the real embedder), as a new `studybot` process would."""
    code = main(list(argv), service=StudyService(Settings(), embedder=embedder))
    out, err = capsys.readouterr()
    return code, out, err


# --- a home the user cannot write --------------------------------------------------------------------------
def test_the_permission_sentence_names_the_path_the_user_and_the_fix(tmp_path: Path) -> None:
    for code in (errno.EACCES, errno.EPERM):
        msg = permission_message(tmp_path, OSError(code, os.strerror(code)))
        assert msg.startswith(f"studybot cannot write to {tmp_path} ")
        assert f"running as user {running_user()}" in msg and "STUDYBOT_HOME" in msg
        assert "rebuild" not in msg and "\n" not in msg and msg.count(". ") == 0
    ro = permission_message(tmp_path, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    assert "read-only file system" in ro and f"running as user {running_user()}" in ro and "rebuild" not in ro


def _can_write_as(prefix: list[str], folder: Path) -> bool:
    probe = subprocess.run([*prefix, "sh", "-c", f"touch '{folder}/probe'"], capture_output=True, timeout=30)
    (folder / "probe").unlink(missing_ok=True)
    return probe.returncode == 0


@pytest.fixture
def unprivileged(tmp_path: Path) -> list[str]:
    """The command prefix that runs a child which obeys file modes (see the module's docstring)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot run a child that obeys file modes")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    probe = tmp_path / "mode-probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        if _can_write_as(prefix, probe):
            pytest.skip("this machine lets the child write a read-only folder (no way to drop the override)")
    finally:
        probe.chmod(0o755)
    return prefix


def _child(prefix: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """`studybot ARGV` in a child process run through ``prefix`` (the environment's STUDYBOT_HOME, corpus and
    model cache)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
           "RAGAS_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    return subprocess.run([*prefix, sys.executable, "-m", "ui.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Every file and folder under ``paths`` without write permission, restored afterwards."""
    changed: list[tuple[Path, int]] = []
    for top in paths:
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode):
                changed.append((path, stat.S_IMODE(mode)))
                path.chmod(stat.S_IMODE(mode) & ~0o222)
    try:
        yield
    finally:
        for path, mode in reversed(changed):
            path.chmod(mode)


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_read_only_home_is_named_as_a_permissions_problem_never_a_rebuild(
        small_corpus: Path, studybot_home: Path, tmp_path: Path, embedder: Any, unprivileged: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, embedder, "ingest")[0] == 0
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nA wombat descent is a made-up optimiser.\n")
    before = _tree(studybot_home)
    sentence = f"studybot cannot write to {studybot_home} (running as user {running_user()}): "
    with read_only(studybot_home):
        # ask and ask --json load the model in a thread meanwhile (llama.cpp's loader silences fds 1 and 2
        # while it loads): the error line must still reach the student
        for argv in (["retrieve", QUESTION], ["ask", QUESTION], ["ask", "--json", QUESTION], ["ingest"],
                     ["ingest", "--rebuild"], ["add", str(note)], ["remove", "alpha.md"]):
            done = _child(unprivileged, *argv)
            assert done.returncode in (1, 2), (argv, done.stdout, done.stderr)
            assert sentence in done.stderr, (argv, done.stderr)
            assert "give that user write access to it or set STUDYBOT_HOME to a writable folder." in done.stderr
            assert "rebuild" not in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr)
    assert _tree(studybot_home) == before  # nothing written, nothing kept aside as "broken"
    code, out, _ = _run(capsys, embedder, "retrieve", QUESTION, "-k", "1")  # the index was never broken
    assert code == 0 and "alpha.md" in out


def test_a_read_only_index_database_is_named(small_corpus: Path, studybot_home: Path, embedder: Any,
                                             unprivileged: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, embedder, "ingest")[0] == 0
    db = studybot_home / "index" / "chroma" / "chroma.sqlite3"
    with read_only(db):
        done = _child(unprivileged, "retrieve", QUESTION)
    assert done.returncode == 2
    assert f"studybot cannot write to {db} (running as user {running_user()}): " in done.stderr, done.stderr
    assert "rebuild" not in done.stderr


def _ro_mount_prefix(folder: Path) -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is missing: cannot make a read-only mount")
    prefix = [unshare, "-m" if os.geteuid() == 0 else "-rm", "sh", "-c",
              f"mount --bind -o ro '{folder}' '{folder}' && exec \"$0\" \"$@\""]
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True, text=True, timeout=30)
    (folder / "probe").unlink(missing_ok=True)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only bind mount here ({probe.stderr.strip()[:120]})")
    return prefix


def test_a_read_only_file_system_is_named_as_such(small_corpus: Path, studybot_home: Path, embedder: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, embedder, "ingest")[0] == 0
    prefix = _ro_mount_prefix(studybot_home)
    for argv in (["retrieve", QUESTION], ["ingest", "--rebuild"]):
        done = _child(prefix, *argv)
        assert done.returncode == 2, done.stderr
        assert (f"studybot cannot write to {studybot_home}: it is on a read-only file system (running as user "
                f"{running_user()}); mount it writable or set STUDYBOT_HOME to a writable folder.") in done.stderr
        assert "rebuild" not in done.stderr


# --- skipped entries ---------------------------------------------------------------------------------------
def test_hidden_files_and_links_are_skipped_with_a_line_each_and_are_not_failures(
        small_corpus: Path, tmp_path: Path, embedder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (small_corpus / "..hidden..md").write_text("# Hidden\n\nA dotfile.\n")
    (small_corpus / ".git").mkdir()
    (small_corpus / ".git" / "notes.md").write_text("# In .git\n\nnot a handbook\n")
    (small_corpus / "gone.md").symlink_to(tmp_path / "missing.md")  # a broken link
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n\nsecret\n")
    (small_corpus / "out.md").symlink_to(outside)
    code, out, _ = _run(capsys, embedder, "ingest")
    assert code == 0, out  # skipping is what these entries are for: not a failure
    assert "  skipped   ..hidden..md: a hidden file (its name starts with a dot); skipped" in out
    assert "  skipped   .git: a hidden folder (its name starts with a dot); skipped" in out
    assert "  skipped   gone.md: a broken symbolic link; skipped" in out
    assert "  skipped   out.md: a symbolic link to a file outside the corpus folder" in out
    assert "added 2, updated 0, removed 0, unchanged 0, failed 0, skipped 4 files" in out
    assert ".git/notes.md" not in out
    code, out, _ = _run(capsys, embedder, "ingest", "--json")
    assert code == 0 and sorted(json.loads(out)["skipped"]) == [
        "..hidden..md", ".git", "gone.md", "out.md"]


def test_an_unreadable_file_is_still_a_failure(small_corpus: Path, embedder: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (small_corpus / "empty.md").write_text("")
    code, out, _ = _run(capsys, embedder, "ingest")
    assert code == 1 and "  failed    empty.md: the file is empty" in out and "failed 1, skipped 0 files" in out


def test_the_uploads_staging_folder_is_not_reported(small_corpus: Path, tmp_path: Path, embedder: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nA wombat descent is a made-up optimiser.\n")
    assert _run(capsys, embedder, "add", str(note))[0] == 0
    code, out, _ = _run(capsys, embedder, "ingest")
    assert code == 0 and "skipped 0 files" in out and ".incoming" not in out, out


# --- segment folders Chroma leaves behind --------------------------------------------------------------------
def _segments(chroma: Path) -> tuple[set[str], set[str]]:
    """(segment ids in chroma.sqlite3, segment-like folders on disk)."""
    con = sqlite3.connect(f"{(chroma / 'chroma.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        ids = {str(r[0]) for r in con.execute("SELECT id FROM segments")}
    finally:
        con.close()
    return ids, {p.name for p in chroma.iterdir() if p.is_dir() and len(p.name) == 36}


def test_segment_folders_of_dropped_and_killed_versions_go_at_the_next_ingest(
        small_corpus: Path, studybot_home: Path, embedder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    chroma = studybot_home / "index" / "chroma"
    assert _run(capsys, embedder, "ingest")[0] == 0
    (small_corpus / "beta.md").write_text(BETA + "\nIt also corrects their bias at the start.\n")
    assert _run(capsys, embedder, "ingest")[0] == 0  # a new version; the old one is dropped
    ids, dirs = _segments(chroma)
    assert dirs <= ids, f"orphan segment folders after a normal ingest: {sorted(dirs - ids)}"

    # What an ingest killed half-way leaves: a collection that was never switched to, its vectors on disk.
    index = Index(Settings(), embedder)
    manifest = index.manifest()
    half = index.new_collection(manifest.version + 1)
    vectors = embedder.embed([f"passage {i} about kernels" for i in range(40)])
    Index.add_raw(half, [f"x{i}" for i in range(40)], ["text"] * 40, [{"source": "x", "kind": "chunk"}] * 40,
                  [list(v) for v in vectors])
    keep_me = chroma / "00000000-0000-0000-0000-000000000000"  # named like a segment, but not Chroma's files
    keep_me.mkdir()
    (keep_me / "precious.txt").write_text("not a segment")
    (chroma / "notes").mkdir()
    del half, index
    _, dirs_before = _segments(chroma)
    assert len(dirs_before) > len(dirs)

    code, out, _ = _run(capsys, embedder, "ingest")  # nothing changed in the library
    assert code == 0 and "added 0, updated 0, removed 0" in out
    ids, dirs = _segments(chroma)
    assert dirs - ids == {keep_me.name}, sorted(dirs - ids)  # only the folder that is not Chroma's is left
    assert (keep_me / "precious.txt").is_file() and (chroma / "notes").is_dir()
    index = Index(Settings(), embedder)
    assert {c.name for c in index.client.list_collections()} == {index.manifest().collection, f"{index.name}__meta"}
    code, out, _ = _run(capsys, embedder, "retrieve", QUESTION, "-k", "1")
    assert code == 0 and "alpha.md" in out
