"""Uploads through the served app with raw HTTP (httpx, not gradio_client, which uploads local paths itself):
Gradio's upload cache lives in the studybot home and an upload's cached copy is deleted once it is handled; the
`/upload` endpoint refuses a FileData path that Gradio did not receive as an upload (and `/file=` does not serve
it); an upload with the name of a different document is kept beside it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.settings import Settings
from tests.fakes import ScriptedLLM
from tests.helpers import MODELS_CACHE, free_port

SECRET = "Platypus secret: this text must never reach the index."
NOTE_A = "# Notes\n\n## Kernels\n\nA wombat kernel maps burrows into an infinite-dimensional feature space.\n"
NOTE_B = "# Notes\n\n## Optimizers\n\nThe quokka optimizer keeps a smiling estimate of every gradient.\n"


@pytest.fixture
def served(studybot_home: Path, tmp_path: Path, embedder: Any) -> Iterator[dict[str, Any]]:
    """The app on a free loopback port around a service on an empty home; yields service, url, http, cache."""
    from ui.app import launch
    from ui.service import StudyService

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    settings = Settings(storage={"home": studybot_home, "models_cache": MODELS_CACHE, "corpus_dir": corpus})
    svc = StudyService(settings, llm=ScriptedLLM(), embedder=embedder)
    app, url = launch(svc, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            yield {"service": svc, "url": url, "http": http, "cache": studybot_home / "upload-cache"}
    finally:
        app.close()


def _upload_bytes(http: httpx.Client, name: str, data: bytes) -> str:
    """What a browser does first: send the bytes to Gradio's upload route; returns the cached path."""
    r = http.post("/gradio_api/upload", files=[("files", (name, data, "application/octet-stream"))])
    r.raise_for_status()
    return str(r.json()[0])


def _call(http: httpx.Client, api: str, data: list[Any]) -> tuple[str, Any, str]:
    """POST /gradio_api/call/<api>, then read its event stream: (last event, its data, the whole stream)."""
    r = http.post(f"/gradio_api/call/{api}", json={"data": data})
    if r.status_code != 200:
        return "http-error", r.status_code, r.text
    stream = http.get(f"/gradio_api/call/{api}/{r.json()['event_id']}").text
    event, payload = "", None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = json.loads(line.split(":", 1)[1])
    return event, payload, stream


def _file_data(path: str | Path) -> dict[str, Any]:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def test_uploads_are_cached_in_the_home_and_deleted_once_handled(served: dict[str, Any]) -> None:
    http, cache, svc = served["http"], served["cache"].resolve(), served["service"]
    assert Path(os.environ["GRADIO_TEMP_DIR"]) == cache
    note = _upload_bytes(http, "notes.md", NOTE_A.encode())
    exe = _upload_bytes(http, "tool.exe", b"MZ\x90\x00" + b"\x00" * 64)
    for cached in (note, exe):
        assert cache in Path(cached).parents and Path(cached).is_file()  # not /tmp/gradio
    event, payload, stream = _call(http, "upload", [[_file_data(note), _file_data(exe)]])
    assert event == "complete", stream
    assert "notes.md: added" in payload[0] and ".exe" in payload[0]
    assert (Path(svc.settings.storage.uploads_dir) / "notes.md").read_text() == NOTE_A
    assert not Path(note).exists() and not Path(exe).exists()  # indexed or refused: no copy stays behind
    assert not [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 0]


@pytest.mark.parametrize("where", ["system", "elsewhere", "home", "traversal"])
def test_the_upload_api_refuses_a_path_it_did_not_receive(served: dict[str, Any], tmp_path: Path,
                                                          where: str) -> None:
    http, cache, svc = served["http"], served["cache"], served["service"]
    home = Path(svc.settings.storage.home)
    secret = {"system": Path("/etc/passwd"), "elsewhere": tmp_path / "secret.md",
              "home": home / "private.md", "traversal": cache / ".." / "private.md"}[where]
    home.mkdir(parents=True, exist_ok=True)
    for path in (tmp_path / "secret.md", home / "private.md"):
        path.write_text(f"# Secret\n\n{SECRET}\n")
    _upload_bytes(http, "warm-up.md", b"# Warm up\n\nmakes the cache folder exist.\n")
    event, payload, stream = _call(http, "upload", [[_file_data(secret)]])
    assert event == "error", stream
    assert SECRET not in stream and "root:" not in stream
    assert svc.documents() == []
    uploads = Path(svc.settings.storage.uploads_dir)
    assert not uploads.exists() or not [p for p in uploads.iterdir() if p.is_file()]
    # nor does Gradio's file route serve it
    r = http.get(f"/gradio_api/file={secret}")
    assert r.status_code in (403, 404), (r.status_code, r.text[:200])
    assert SECRET not in r.text and "root:" not in r.text


def test_an_upload_named_like_a_different_document_is_kept_beside_it(served: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    from ui.tab_library import upload_files

    svc = served["service"]
    first, second = tmp_path / "a" / "notes.md", tmp_path / "b" / "notes.md"
    for path, text in ((first, NOTE_A), (second, NOTE_B)):
        path.parent.mkdir()
        path.write_text(text)
    assert upload_files(svc, [first])[0].message == "notes.md: added (1 chunks)"
    other = upload_files(svc, [second])[0]
    assert other.ok and other.name == "notes (2).md" and other.source == "uploads/notes (2).md"
    assert other.message == ("notes (2).md: added (1 chunks); named notes (2).md because another document is "
                             "already called notes.md (both are kept)")
    uploads = Path(svc.settings.storage.uploads_dir)
    assert (uploads / "notes.md").read_text() == NOTE_A and (uploads / "notes (2).md").read_text() == NOTE_B
    assert {d.source for d in svc.documents()} == {"uploads/notes.md", "uploads/notes (2).md"}
    assert svc.retrieve("wombat kernel burrows")[0].chunk.source == "uploads/notes.md"
    assert svc.retrieve("quokka optimizer smiling estimate")[0].chunk.source == "uploads/notes (2).md"
    # the same file again changes nothing, under whichever name holds those bytes
    again = upload_files(svc, [second, first])
    assert [r.message for r in again] == [other.message.replace("added", "unchanged"), "notes.md: unchanged (1 chunks)"]
    assert sorted(p.name for p in uploads.iterdir() if p.is_file()) == ["notes (2).md", "notes.md"]
