"""The Library tab: what is indexed, upload (.md/.txt/.pdf) with incremental ingest, delete, re-index.

What the library is (corpus folder + uploads), the checks on an upload and where it is saved live in
:mod:`ingest.library`, behind :class:`StudyService`; this tab only shows them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from ui import render

if TYPE_CHECKING:
    from ui.service import StudyService

TABLE_HEADERS = ["title", "file", "kind", "chunks", "last ingested"]
EMPTY_TEMP_AGE_S = 3600


def upload_files(service: StudyService, paths: list[Path], progress: Callable[[str, int, int], None] | None = None
                 ) -> list[Any]:
    """Add uploaded files to the library (checked, saved, indexed); one :class:`AddResult` per file."""
    return list(service.add_documents([Path(str(p)) for p in paths], progress=progress))


def discard_cached_uploads(paths: Iterable[Path], cache: Path | None = None) -> list[Path]:
    """Delete Gradio's cached copies of uploaded files once they are handled (indexed into the uploads folder,
    or refused): only files inside the upload cache (``cache``, default Gradio's, which the app points into
    the studybot home), and the per-upload folder Gradio made for each when it is left empty. Returns what
    was deleted."""
    from gradio.utils import get_upload_folder

    root = Path(cache or get_upload_folder()).resolve()
    gone = []
    for path in paths:
        try:
            real = Path(path).resolve()
        except (OSError, RuntimeError):
            continue
        if root not in real.parents or not real.is_file():
            continue
        with contextlib.suppress(OSError):
            real.unlink()
            gone.append(real)
            if real.parent != root:
                real.parent.rmdir()  # fails (suppressed) while something else is in it
    # Gradio's File component also leaves an empty "tmpXXXXXXXX" file in the cache for every file it hands
    # over (gradio 6: components/file.py, _process_single_file); those older than an hour go too (a younger
    # one may be an upload still being received).
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if (entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False) and st.st_size == 0
                        and now - st.st_mtime > EMPTY_TEMP_AGE_S):
                    os.unlink(entry.path)
    return gone


def delete_document(service: StudyService, source: str) -> str:
    return str(service.remove_document(source))


def reindex(service: StudyService, progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Bring the index in line with the corpus folder and the uploads (unchanged files are not re-embedded)."""
    return list(service.ingest(progress=progress).lines())


# --- the tab -----------------------------------------------------------------------------------------
def _status_md(lines: list[str], ok: bool = True) -> str:
    if not lines:
        return ""
    body = "\n".join(f"- {render.esc(ln)}" for ln in lines)
    return body if ok else f"**Some files were not added:**\n\n{body}"


def build_library_tab(service: StudyService) -> dict[str, Any]:
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

        text = render.ProgressText()

        def cb(stage: str, done: int, total: int) -> None:
            progress((done, total), desc=text(stage, done, total))

        try:
            results = upload_files(service, paths, progress=cb)
        except StudybotError as exc:  # e.g. the uploads folder cannot be written
            return (render.esc(str(exc)), *table_and_choices(), None)
        finally:  # the bytes are in the uploads folder now, or refused: no copy stays in Gradio's cache
            discard_cached_uploads(paths)
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
        text = render.ProgressText()

        def cb(stage: str, done: int, total: int) -> None:
            progress((done, total), desc=text(stage, done, total))

        try:
            msg = _status_md(reindex(service, progress=cb))
        except StudybotError as exc:
            msg = render.esc(str(exc))
        return (msg, *table_and_choices())

    with gr.Tab("Library", id="library"):
        gr.Markdown(
            f"Documents in the index. Upload `.md`, `.txt` or `.pdf` files (up to {settings.ingest.max_file_mb:g} MB "
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
