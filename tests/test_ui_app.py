"""The Gradio app around a real service (ingested corpus, scripted LLM): /ask via gradio_client, uploads,
the serve command's bind checks, and the rule that ui/ never touches Chroma or llama.cpp directly."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.errors import IngestError, StudybotError
from rag.settings import Settings
from tests.fakes import ScriptedLLM, reader
from tests.helpers import free_port, served_app

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ROOT = UI_DIR.parent
QUESTION = "Which matrix decomposition is used for noise reduction, and what pieces does it split a matrix into?"


@pytest.fixture
def served(corpus_settings: Settings, embedder: Any) -> Iterator[dict[str, Any]]:
    """The app on a free loopback port around a service with a ScriptedLLM; yields service, llm, url, client."""
    from ui.service import StudyService

    llm = ScriptedLLM(judge=reader(("Factorizes a matrix",)))
    svc = StudyService(corpus_settings.updated(ingest={"max_file_mb": 1}), llm=llm, embedder=embedder)
    with served_app(svc) as served:
        yield {**served, "llm": llm}


# --- the /ask API --------------------------------------------------------------------------------------
def test_ask_endpoint_returns_answer_and_citations(served: dict[str, Any]) -> None:
    served["llm"].queue("Singular Value Decomposition factorizes a matrix into U, Σ and V^T [1].")
    result = served["client"].predict(QUESTION, api_name="/ask")
    assert isinstance(result, dict)
    assert set(result) >= {"answer", "refused", "refusal_reason", "citations", "quotes", "timings"}
    assert not result["refused"] and result["answer"].startswith("> ")
    # the handbook's own words first: the quotes, each cited, then the explanation
    quote = result["quotes"][0]
    assert "Factorizes a matrix" in quote["text"] and quote["citation"]["chunk_id"]
    assert result["answer"].endswith("Singular Value Decomposition factorizes a matrix into U, Σ and V^T "
                                     f"[{quote['citation']['n']}].")
    cite = result["citations"][0]
    assert cite["n"] >= 1 and cite["source"] and cite["text"] and cite["chunk_id"]
    assert result["timings"]["quotes_s"] is not None
    # same data as `studybot ask --json` (the service's Answer.to_json)
    served["llm"].queue("Singular Value Decomposition factorizes a matrix into U, Σ and V^T [1].")
    direct = served["service"].ask(QUESTION).to_json()
    assert direct["answer"] == result["answer"] and direct["citations"] == result["citations"]
    assert direct["quotes"] == result["quotes"]


def test_ask_stream_endpoint_streams_events_in_order_and_ends_with_the_ask_json(served: dict[str, Any]) -> None:
    served["llm"].queue("Singular Value Decomposition factorizes a matrix into U, Σ and V^T [1].")
    job = served["client"].submit(QUESTION, api_name="/ask_stream")
    job.result(timeout=120)
    events = job.outputs()
    kinds = [e["event"] for e in events]
    # retrieving -> passages -> ranking -> quotes -> explaining/checking -> one delta per sentence -> finished
    assert kinds[0] == "stage" and kinds[-1] == "finished", kinds
    assert kinds.index("passages") < kinds.index("quotes") < kinds.index("delta") < kinds.index("finished"), kinds
    passages = events[kinds.index("passages")]["passages"]
    quotes = events[kinds.index("quotes")]["quotes"]
    assert passages and passages[0]["chunk_id"] and "Factorizes a matrix" in quotes[0]["text"]
    final = events[-1]
    assert not final["refused"] and final["quotes"] == quotes
    assert final["explanation"].startswith(events[kinds.index("delta")]["text"].strip())
    served["llm"].queue("Singular Value Decomposition factorizes a matrix into U, Σ and V^T [1].")
    direct = served["service"].ask(QUESTION).to_json()
    assert {k: v for k, v in final.items() if k not in ("event", "timings")} == \
        {k: v for k, v in direct.items() if k != "timings"}


def test_ask_endpoint_reports_bad_question(served: dict[str, Any]) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        served["client"].predict("   ", api_name="/ask")
    assert str(info.value).strip()


def test_api_lists_named_endpoints(served: dict[str, Any]) -> None:
    api = served["client"].view_api(print_info=False, return_format="dict")
    assert {"/ask", "/ask_stream", "/upload"} <= set(api["named_endpoints"])


# --- uploads ---------------------------------------------------------------------------------------------
def test_upload_via_client_adds_a_sanitised_document(served: dict[str, Any], tmp_path: Path) -> None:
    from gradio_client import handle_file

    src = tmp_path / "My Notes (v2)!.md"
    src.write_text("# Zebra boosting\n\nZebra boosting trains striped weak learners in alternating order.\n")
    status, table, *_ = served["client"].predict([handle_file(str(src))], api_name="/upload")
    svc = served["service"]
    docs = {d.source: d for d in svc.documents()}
    name = "My Notes _v2.md"
    assert f"uploads/{name}" in docs, (status, sorted(docs))
    assert (Path(svc.settings.storage.uploads_dir) / name).is_file()
    assert "added" in status
    assert any(row[1] == f"uploads/{name}" for row in table["data"])
    assert svc.retrieve("zebra boosting striped weak learners")[0].chunk.source == f"uploads/{name}"


def test_upload_via_client_rejects_exe(served: dict[str, Any], tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ\x90\x00" + b"\x00" * 64)
    before = {d.source for d in served["service"].documents()}
    try:
        status, *_ = served["client"].predict([handle_file(str(exe))], api_name="/upload")
    except AppError as exc:  # Gradio's own file-type check may refuse it first
        status = str(exc)
    assert ".exe" in status
    assert {d.source for d in served["service"].documents()} == before
    assert not any(Path(served["service"].settings.storage.uploads_dir).glob("*.exe"))


def test_upload_rejects_exe_and_oversize(corpus_settings: Settings, embedder: Any, tmp_path: Path) -> None:
    from ui.service import StudyService
    from ui.tab_library import upload_files

    svc = StudyService(corpus_settings.updated(ingest={"max_file_mb": 1}), llm=ScriptedLLM(), embedder=embedder)
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ" + b"\x00" * 100)
    big = tmp_path / "big.md"
    big.write_text("# Big\n\n" + "word " * 300_000)  # 1.5 MB
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "fake.md"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    good = tmp_path / "ok.txt"
    good.write_text("Quokka regression fits smiling marsupials to tabular data.\n")
    results = upload_files(svc, [exe, big, empty, binary, good])
    by_name = {r.name: r for r in results}
    assert not by_name["setup.exe"].ok and "unsupported file type '.exe'" in by_name["setup.exe"].message
    assert not by_name["big.md"].ok and "over the 1 MB file limit" in by_name["big.md"].message
    assert not by_name["empty.txt"].ok and "empty" in by_name["empty.txt"].message
    assert not by_name["fake.md"].ok and "binary" in by_name["fake.md"].message
    assert by_name["ok.txt"].ok
    for r in results:
        assert "\n" not in r.message
    uploads = Path(svc.settings.storage.uploads_dir)
    assert sorted(p.name for p in uploads.iterdir() if p.is_file()) == ["ok.txt"]
    assert not any((uploads / ".incoming").iterdir())
    assert "uploads/ok.txt" in {d.source for d in svc.documents()}


def test_delete_and_reindex(corpus_settings: Settings, embedder: Any, tmp_path: Path) -> None:
    from ui.service import StudyService
    from ui.tab_library import delete_document, reindex, upload_files

    svc = StudyService(corpus_settings, llm=ScriptedLLM(), embedder=embedder)
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nA note about gradient clipping for exploding gradients.\n")
    assert upload_files(svc, [note])[0].ok
    n_docs = len(svc.documents())
    lines = reindex(svc)  # nothing changed on disk: nothing re-embedded, uploads kept
    assert len(svc.documents()) == n_docs and any("0 embedded" in ln for ln in lines)
    assert delete_document(svc, "uploads/note.md") == "removed uploads/note.md"
    assert "uploads/note.md" not in {d.source for d in svc.documents()}
    assert not (Path(svc.settings.storage.uploads_dir) / "note.md").exists()
    with pytest.raises(IngestError):
        delete_document(svc, "uploads/note.md")


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("notes.md", "notes.md"),
        ("../../etc/passwd.md", "passwd.md"),
        ("..\\..\\windows\\evil.TXT", "evil.txt"),
        (".bashrc.md", "bashrc.md"),
        ("...hidden.pdf", "hidden.pdf"),
        ("a<b>|c?:*.md", "a_b_c.md"),
        ("résumé notes.md", "resume notes.md"),
        ("CON.txt", "CON_file.txt"),
        ("x" * 300 + ".md", "x" * 117 + ".md"),
        ("a\x00b.md", "a_b.md"),
    ],
)
def test_sanitize_filename(raw: str, safe: str) -> None:
    from ingest.library import sanitize_filename

    assert sanitize_filename(raw) == safe


@pytest.mark.parametrize("raw", ["tool.exe", "archive.md.exe", "noext", "..", ".md", "/", "", "....pdf"])
def test_sanitize_filename_rejects(raw: str) -> None:
    from ingest.library import sanitize_filename

    with pytest.raises(IngestError):
        sanitize_filename(raw)


# --- serve: binding rules ---------------------------------------------------------------------------------
def test_serve_bind_rules() -> None:
    from ui.cli_serve import check_bind, is_loopback, parse_auth

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    check_bind("127.0.0.1", None, False)
    check_bind("0.0.0.0", ("u", "p"), False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(StudybotError, match="--auth"):
        check_bind("0.0.0.0", None, False)
    assert parse_auth("me:se:cret") == ("me", "se:cret")
    for bad in ("me", ":x", "me:"):
        with pytest.raises(StudybotError):
            parse_auth(bad)


def test_serve_refuses_public_bind_without_auth(capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "--auth user:password" in err and "--no-auth" in err and "Traceback" not in err
    assert "STUDYBOT_AUTH=user:password" in err  # what the Docker image's user sets
    assert len(err.strip().splitlines()) == 1


def test_serve_takes_the_login_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.cli_serve import check_bind, login

    monkeypatch.setenv("STUDYBOT_AUTH", "ada:lovelace")
    auth, no_auth = login(None, False, Settings())
    assert auth == ("ada", "lovelace") and not no_auth
    check_bind("0.0.0.0", auth, no_auth)
    assert login("bob:pw", False, Settings())[0] == ("bob", "pw")  # the flag wins
    monkeypatch.delenv("STUDYBOT_AUTH")
    assert login(None, False, Settings()) == (None, False)
    with pytest.raises(StudybotError, match="STUDYBOT_AUTH"):
        check_bind("0.0.0.0", *login(None, False, Settings()))
    monkeypatch.setenv("STUDYBOT_ALLOW_NO_AUTH", "true")
    assert login(None, False, Settings()) == (None, True)
    check_bind("0.0.0.0", *login(None, False, Settings()))


def test_app_queue_limit_is_settings_concurrency(corpus_service: Any) -> None:
    from ui.app import build_app

    app = build_app(corpus_service)
    assert app._queue.default_concurrency_limit == corpus_service.settings.ui.concurrency
    ask = [fn for fn in app.fns.values() if fn.api_name == "ask"]
    assert ask and ask[0].concurrency_id == "llm"


# --- layering (the package graph and the backends: tests/test_architecture.py) --------------------------------
def test_the_tabs_and_commands_never_run_retrieval_themselves() -> None:
    """Only the composition root (ui/service.py) builds the retriever; the rest of the UI asks the service."""
    offenders = [p.name for p in sorted(UI_DIR.glob("*.py")) if p.name != "service.py"
                 and re.search(r"\bHybridRetriever\b|\.retriever\.retrieve\(|from rag\.retrieval", p.read_text())]
    assert offenders == []


def test_python_dash_m_ui_cli_runs_a_command(tmp_path: Path) -> None:
    """`python -m ui.cli` runs ui.cli as __main__: the commands must still find their registry."""
    import subprocess
    import sys

    env = {**os.environ, "STUDYBOT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", "retrieve", "what is PCA?", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "KeyError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and proc.stderr.startswith("error: The index is empty"), proc.stderr


# --- the Library tab: delete only uploads (the confirm step: tests/test_browser_library.py), totals, preview ----
def test_library_deletes_uploads_only_counts_and_previews(corpus_settings: Settings, embedder: Any,
                                                          tmp_path: Path) -> None:
    from ui.render import esc
    from ui.service import StudyService
    from ui.tab_library import delete_document, preview_html, table_rows, totals_markdown, upload_files

    svc = StudyService(corpus_settings, llm=ScriptedLLM(), embedder=embedder)
    note = tmp_path / "xss-note.md"
    note.write_text("# Note <b>bold</b>\n\nGradient clipping <img src=x onerror=alert(1)> caps the norm.\n")
    assert upload_files(svc, [note])[0].ok
    docs = svc.documents()
    handbooks = [d for d in docs if not d.source.startswith("uploads/")]
    assert handbooks and len(handbooks) == len(docs) - 1
    # A handbook is refused, in one sentence, and stays indexed.
    with pytest.raises(IngestError, match="one of the handbooks") as err:
        delete_document(svc, handbooks[0].source)
    assert "\n" not in str(err.value)
    assert [d.source for d in svc.documents()] == [d.source for d in docs]
    # The totals line and the table's "from" column.
    chunks = sum(d.chunks for d in docs)
    assert totals_markdown(docs) == (f"**{len(docs)} documents** ({len(handbooks)} handbooks, 1 upload of yours) · "
                                     f"**{chunks:,} passages** in the index")
    assert totals_markdown([]).startswith("**The index is empty:**")
    rows = table_rows(docs)
    assert [r[2] for r in rows] == ["handbook" if d in handbooks else "your upload" for d in docs]
    assert all(r[1] == d.source for r, d in zip(rows, docs, strict=True))
    # The preview: a handbook's first passages in document order, their Markdown rendered.
    book = max(handbooks, key=lambda d: d.chunks)
    first = svc.preview(book.source, 3)
    assert [c.ordinal for c in first] == [0, 1, 2] and all(c.source == book.source for c in first)
    html = preview_html(book, first)
    assert esc(book.title) in html and f"{book.chunks} passages; the first 3 below" in html
    assert html.count('class="sb-passage sb-md"') == 3
    # An upload's text is escaped: no tag of it reaches the page.
    up = next(d for d in svc.documents() if d.source == "uploads/xss-note.md")
    html = preview_html(up, svc.preview("xss-note.md"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html and "<b>" not in html
    assert "your upload" in html
    with pytest.raises(IngestError):
        svc.preview("no-such-file.md")
    # An upload is deleted (the confirmed step calls this).
    assert delete_document(svc, "uploads/xss-note.md") == "removed uploads/xss-note.md"
    with pytest.raises(IngestError, match="choose one of your uploads"):
        delete_document(svc, "")


# --- serve: the ready line --------------------------------------------------------------------------------
def test_ready_line_names_the_url_and_the_login_but_never_the_password() -> None:
    from ui.cli_serve import browse_url, ready_line

    assert ready_line("127.0.0.1", 7860, None) == "studybot is ready: open http://127.0.0.1:7860; Ctrl+C stops it"
    line = ready_line("0.0.0.0", 8080, ("ada", "s3cret"))
    assert line.startswith("studybot is ready: open http://127.0.0.1:8080 (from another machine: this machine's "
                           "address, port 8080); sign in as ada")
    assert "s3cret" not in line
    assert browse_url("::1", 7860) == "http://[::1]:7860" and browse_url("localhost", 1) == "http://localhost:1"


def test_serve_prints_the_ready_line_with_the_url_once_it_accepts_connections(studybot_home: Path) -> None:
    """`make run` runs `studybot serve`: a newcomer sees one line with the URL to open, once it answers (the real
    runtime check and the real model loading beside it, which silences stdout for a while)."""
    import queue
    import subprocess
    import sys
    import threading
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    def pump() -> None:
        for ln in proc.stdout or []:
            lines.put(ln)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        while not any(ln.startswith("studybot is ready") for ln in seen):
            try:
                seen.append(lines.get(timeout=600).rstrip("\n"))
            except queue.Empty:
                pytest.fail(f"no ready line in 600 s; stdout so far: {seen}")
        ready = next(ln for ln in seen if ln.startswith("studybot is ready"))
        assert ready == f"studybot is ready: open http://127.0.0.1:{port}; Ctrl+C stops it", seen
        url = re.search(r"open (\S+?);", ready)
        assert url is not None
        with urllib.request.urlopen(url.group(1), timeout=30) as resp:  # noqa: S310 - a loopback URL
            assert resp.status == 200 and b"gradio" in resp.read().lower()
        assert not any("Running on local URL" in ln or "share=True" in ln for ln in seen), seen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the Evals tab: what it tells a student; "Stop watching" says the truth --------------------------------
def test_stop_watching_leaves_the_run_going_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from ui import tab_evals

    assert "goes on" in tab_evals.STOP_LABEL and "What this tells you" in tab_evals.PURPOSE
    monkeypatch.setitem(tab_evals._ACTIVE, "run", None)
    assert tab_evals.stop_watching() == "No eval run is going on."
    release = threading.Event()
    run = threading.Thread(target=release.wait, daemon=True)
    run.start()
    state = {"thread": run, "run_dir": tmp_path / "20260101-000000", "done": 1, "total": 3, "msg": "answering",
             "logs": [], "started": time.monotonic(), "head": "Run", "error": None, "result": None}
    monkeypatch.setitem(tab_evals._ACTIVE, "run", state)
    try:
        watch = tab_evals.run_eval(None, 3, "none", poll=0.01)  # a run is going on: this watches it
        status, md, charts = next(watch)
        assert "**1/3**" in status and md is None
        watch.close()  # what "Stop watching" does to the tab's generator (Gradio cancels the event)
        assert run.is_alive()
        said = tab_evals.stop_watching()
        assert said.startswith("Stopped watching `20260101-000000` (1/3 done): the run goes on in the background")
        assert "Run eval" in said
    finally:
        release.set()
        run.join(5)
    assert tab_evals.stop_watching() == "No eval run is going on."


def test_the_first_question_and_the_first_page_load_open_one_index_together(corpus_settings: Settings,
                                                                             embedder: Any) -> None:
    """Two threads reaching a fresh service at once (a question while the page loads the library) share one
    index; before the service's parts were built under its lock, one of them failed inside Chroma."""
    import threading

    from ui.service import StudyService

    svc = StudyService(corpus_settings, llm=ScriptedLLM(), embedder=embedder)
    barrier = threading.Barrier(4)
    seen: list[Any] = []
    errors: list[BaseException] = []

    def first_use(i: int) -> None:
        barrier.wait()
        try:
            seen.append(svc.retrieve("What does PCA do?") if i % 2 else svc.documents())
            seen.append(svc.index)
        except BaseException as exc:  # noqa: BLE001 - the failure is the result
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    indexes = {id(x) for x in seen if type(x).__name__ == "Index"}
    assert len(indexes) == 1
