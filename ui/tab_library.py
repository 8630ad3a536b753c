"""The Library tab: what is indexed, upload (.md/.txt/.pdf) with incremental ingest, delete, re-index.

Uploads are validated here (type, size, a safe file name) and saved into ``settings.uploads_dir``; their
source name in the index is ``uploads/<name>``. Everything else goes through :class:`StudyService`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import IngestError, StudybotError
from ui import render

UPLOAD_SUFFIXES = (".md", ".markdown", ".txt", ".pdf")
UPLOAD_PREFIX = "uploads/"
MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
TABLE_HEADERS = ["title", "file", "kind", "chunks", "last ingested"]


# --- validation (pure functions; tested directly) --------------------------------------------------
def sanitize_filename(name: str) -> str:
    """A safe file name from an uploaded one: basename only, safe characters, no dotfile, no traversal.

    Raises :class:`IngestError` when nothing usable is left or the type is not supported.
    """
    raw = str(name or "")
    base = re.split(r"[\\/]", raw)[-1]  # basename for both / and \ separators
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", base).strip(" .")
    base = re.sub(r"_+", "_", base)
    base = re.sub(r"\.{2,}", ".", base)
    base = base.lstrip("._- ")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = suffix.lower()
    shown = raw.replace("\n", " ")[:80] or "(no name)"
    if "." + suffix not in UPLOAD_SUFFIXES:
        got = f".{suffix}" if dot and suffix else "(none)"
        raise IngestError(f"{shown}: unsupported file type '{got}'; upload .md, .txt or .pdf")
    stem = stem.strip(" ._-")[: MAX_NAME - len(suffix) - 1].strip(" ._-")
    if not stem:
        raise IngestError(f"{shown}: the file name has no usable characters; rename it and upload again")
    if stem.lower() in _WINDOWS_RESERVED:
        stem = f"{stem}_file"
    return f"{stem}.{suffix}"


def validate_upload(path: Path, name: str | None, max_mb: float) -> str:
    """Check an uploaded file (type, size) and return its sanitised name; :class:`IngestError` if unusable."""
    safe = sanitize_filename(name if name is not None else path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"{safe}: cannot read the upload ({exc.strerror or exc})") from exc
    if size == 0:
        raise IngestError(f"{safe}: the file is empty")
    if size > max_mb * 1024 * 1024:
        raise IngestError(f"{safe}: {size / 1024 / 1024:.1f} MB is over the {max_mb:g} MB upload limit")
    return safe


@dataclass
class UploadResult:
    name: str  # the name shown to the user (sanitised when it got that far)
    ok: bool
    message: str


def _inside(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if target.parent != root.resolve():
        raise IngestError(f"{name}: not a plain file name")
    return target


def upload_files(service: Any, paths: list[Path], progress: Callable[[str, int, int], None] | None = None
                 ) -> list[UploadResult]:
    """Validate, save and ingest uploaded files one by one; a bad file never stops the others."""
    settings = service.settings
    uploads = Path(settings.uploads_dir)
    incoming = uploads / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    results: list[UploadResult] = []
    total = len(paths)
    for i, path in enumerate(paths):
        shown = Path(str(path)).name
        try:
            safe = validate_upload(Path(path), None, settings.upload_max_mb)
            shown = safe
            final = _inside(uploads, safe)
            staged = _inside(incoming, safe)
            shutil.copyfile(path, staged)
            source = UPLOAD_PREFIX + safe

            def step(stage: str, done: int, n: int, _i: int = i, _name: str = safe) -> None:
                if progress:
                    progress(f"{_name}: {stage}", _i * 100 + int(100 * done / max(n, 1)), total * 100)

            if progress:
                progress(f"{safe}: loading", i * 100, total * 100)
            summary = service.add_files([(source, staged)], progress=step)
            if source in summary.failed:
                staged.unlink(missing_ok=True)
                results.append(UploadResult(safe, False, summary.failed[source]))
                continue
            os.replace(staged, final)
            verb = "updated" if source in summary.updated else "unchanged" if source in summary.unchanged else "added"
            chunks = next((d.chunks for d in service.documents() if d.source == source), 0)
            results.append(UploadResult(safe, True, f"{safe}: {verb} ({chunks} chunks)"))
        except StudybotError as exc:
            results.append(UploadResult(shown, False, str(exc)))
        except OSError as exc:
            results.append(UploadResult(shown, False, f"{shown}: could not save it ({exc.strerror or exc})"))
    if progress:
        progress("done", total * 100, total * 100)
    return results


def delete_document(service: Any, source: str) -> str:
    if not source:
        raise IngestError("choose a document to delete")
    summary = service.remove_documents([source])
    if source not in summary.removed:
        raise IngestError(f"{source}: not in the index")
    note = ""
    if source.startswith(UPLOAD_PREFIX):
        with contextlib.suppress(IngestError, OSError):
            _inside(Path(service.settings.uploads_dir), source[len(UPLOAD_PREFIX):]).unlink(missing_ok=True)
    else:
        note = " (it is still in the corpus folder: re-indexing brings it back)"
    return f"deleted {source}{note}"


def corpus_files(service: Any) -> list[tuple[str, Path]]:
    """The corpus folder plus the saved uploads, as (source, path)."""
    from ingest.loaders import discover  # a file walker only (no index access)

    settings = service.settings
    files = discover(Path(settings.corpus_dir)) if Path(settings.corpus_dir).exists() else []
    uploads = Path(settings.uploads_dir)
    if uploads.exists():
        files += [(UPLOAD_PREFIX + src, p) for src, p in discover(uploads)]
    return files


def reindex(service: Any, progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Bring the index in line with the corpus folder and the uploads (unchanged files are not re-embedded)."""
    files = corpus_files(service)
    summary = service.add_files(files, progress=progress)
    wanted = {src for src, _ in files}
    gone = [d.source for d in service.documents() if d.source not in wanted]
    lines = list(summary.lines())
    if gone:
        removed = service.remove_documents(gone)
        lines.append(f"removed {len(removed.removed)} documents no longer on disk: {', '.join(removed.removed)}")
    return lines


# --- the tab -----------------------------------------------------------------------------------------
def _status_md(lines: list[str], ok: bool = True) -> str:
    if not lines:
        return ""
    body = "\n".join(f"- {render.esc(ln)}" for ln in lines)
    return body if ok else f"**Some files were not added:**\n\n{body}"


def build_library_tab(service: Any) -> dict[str, Any]:
    """Build the Library tab inside the current ``gr.Blocks``; returns its components and a refresh fn."""
    settings = service.settings

    def table_and_choices() -> tuple[Any, Any]:
        try:
            docs = service.documents()
        except StudybotError:
            docs = []
        # A plain {"headers", "data"} value (not gr.update) so API clients get the table itself.
        table = {"headers": TABLE_HEADERS, "data": render.documents_rows(docs)}
        return (table, gr.update(choices=[d.source for d in docs], value=None))

    def on_upload(files: list[Any] | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        paths = [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in (files or [])]
        if not paths:
            return (render.esc("Choose one or more .md, .txt or .pdf files first."), *table_and_choices(), None)

        def cb(stage: str, done: int, total: int) -> None:
            progress((done, total), desc=stage)

        results = upload_files(service, paths, progress=cb)
        good = [r.message for r in results if r.ok]
        bad = [r.message for r in results if not r.ok]
        parts = []
        if good:
            parts.append(_status_md(good))
        if bad:
            parts.append(_status_md(bad, ok=False))
        return ("\n\n".join(parts), *table_and_choices(), None)

    def on_delete(source: str | None) -> tuple[Any, ...]:
        try:
            msg = delete_document(service, source or "")
        except StudybotError as exc:
            msg = str(exc)
        return (render.esc(msg), *table_and_choices())

    def on_reindex(progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        def cb(stage: str, done: int, total: int) -> None:
            progress((done, total), desc=stage)

        try:
            msg = _status_md(reindex(service, progress=cb))
        except StudybotError as exc:
            msg = render.esc(str(exc))
        return (msg, *table_and_choices())

    with gr.Tab("Library", id="library"):
        gr.Markdown(
            f"Documents in the index. Upload `.md`, `.txt` or `.pdf` files (up to {settings.upload_max_mb} MB "
            "each): they are added to the index without re-embedding the rest."
        )
        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                             elem_id="sb-library-table", label="Indexed documents")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Upload documents", file_count="multiple",
                                elem_id="sb-upload-files")
                upload_btn = gr.Button("Add to library", variant="primary", elem_id="sb-upload-btn")
            with gr.Column(scale=1):
                doc_choice = gr.Dropdown(label="Document", choices=[], value=None, elem_id="sb-delete-choice")
                delete_btn = gr.Button("Delete from index", variant="stop", elem_id="sb-delete-btn")
                reindex_btn = gr.Button("Re-index corpus", elem_id="sb-reindex-btn")
        status = gr.Markdown(elem_id="sb-library-status")

    upload_btn.click(on_upload, [files], [status, table, doc_choice, files], api_name="upload",
                     concurrency_id="index")
    delete_btn.click(on_delete, [doc_choice], [status, table, doc_choice], api_name="delete_document",
                     concurrency_id="index")
    reindex_btn.click(on_reindex, None, [status, table, doc_choice], api_name="reindex",
                      concurrency_id="index")
    return {"table": table, "choices": doc_choice, "status": status, "refresh": table_and_choices,
            "refresh_outputs": [table, doc_choice]}
