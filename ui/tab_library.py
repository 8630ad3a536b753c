"""The Library tab: what is indexed (totals, a table, a preview of any document's first passages), upload
(.md/.txt/.pdf) with incremental ingest, delete an upload (after a confirm step), re-index.

What the library is (corpus folder + uploads), the checks on an upload and where it is saved live in
:mod:`ingest.library`, behind :class:`StudyService`; this tab only shows them. The handbooks (the corpus
folder) are the course material: the tab lists and previews them but deletes only the student's uploads
(``studybot remove`` can take a handbook out of the index; the next start indexes it again).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from ingest.library import UPLOAD_PREFIX
from rag.errors import IngestError, StudybotError
from ui import render

# This tab's own styles, appended to the app's (ui/app.py).
CSS = ""

if TYPE_CHECKING:
    from rag.types import Chunk
    from ui.service import DocumentInfo, StudyService

TABLE_HEADERS = ["title", "file", "from", "kind", "chunks", "last ingested"]
# A document's preview shows its first passages, this many: set by hand (2026-12-05), not tuned.
PREVIEW_PASSAGES = 3
# An empty Gradio temp file older than this is a leftover (remove_uploaded): an hour, set by hand so that an
# upload still being received is never touched.
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


def is_upload(source: str) -> bool:
    """A file the student added (deletable here), as opposed to a handbook from the corpus folder."""
    return source.startswith(UPLOAD_PREFIX)


def delete_document(service: StudyService, source: str) -> str:
    """Delete one of the student's uploads (the tab's confirmed delete and its ``/delete_document`` API); a
    handbook is refused with :class:`IngestError`."""
    if not source:
        raise IngestError("choose one of your uploads to delete")
    resolved = service.library.resolve(source)
    if not is_upload(resolved):
        raise IngestError(f"{resolved} is one of the handbooks, not a file you added: the Library tab deletes only "
                          "uploads (`studybot remove` takes a handbook out of the index until the next start)")
    return str(service.remove_document(resolved))


def reindex(service: StudyService, progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Bring the index in line with the corpus folder and the uploads (unchanged files are not re-embedded)."""
    return list(service.ingest(progress=progress).lines())


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def totals_markdown(docs: list[DocumentInfo]) -> str:
    """One line: how many documents (handbooks, uploads) and passages the index holds."""
    if not docs:
        return "**The index is empty:** press *Re-index corpus* below to index the handbooks."
    uploads = sum(is_upload(d.source) for d in docs)
    chunks = sum(d.chunks for d in docs)
    return (f"**{_plural(len(docs), 'document')}** ({_plural(len(docs) - uploads, 'handbook')}, "
            f"{_plural(uploads, 'upload')} of yours) · **{_plural(chunks, 'passage')}** in the index")


def table_rows(docs: list[DocumentInfo]) -> list[list[Any]]:
    """The table's rows (:data:`TABLE_HEADERS`): the render rows with "handbook" / "your upload" after the file."""
    return [[*row[:2], "your upload" if is_upload(d.source) else "handbook", *row[2:]]
            for d, row in zip(docs, render.documents_rows(docs), strict=True)]


def preview_html(doc: DocumentInfo | None, chunks: list[Chunk]) -> str:
    """A document's first passages, its Markdown rendered as the chat's passages are (:func:`render.markdown_html`:
    escaped first, document text is untrusted)."""
    if doc is None:
        return '<p class="sb-empty">Choose a document above to read its first passages.</p>'
    origin = "your upload" if is_upload(doc.source) else "handbook"
    shown = f"the first {len(chunks)} below" if len(chunks) < doc.chunks else "all below"
    head = (f'<div class="sb-src-head">{render.esc(doc.title or doc.source)}</div>'
            f'<div class="sb-src-meta">{render.esc(doc.source)} · {origin} · '
            f'{render.esc(_plural(doc.chunks, "passage"))}; {shown}</div>')
    blocks = []
    for c in chunks:
        where = [render.esc(c.section)] if c.section else []
        if c.page is not None and c.page >= 0:
            where.append(f"p. {render.esc(c.page)}")
        blocks.append('<div class="sb-src">'
                      + (f'<div class="sb-src-section">{" · ".join(where)}</div>' if where else "")
                      + f'<div class="sb-passage sb-md">{render.markdown_html(c.text)}</div></div>')
    if not blocks:
        blocks.append('<p class="sb-empty">No passages: the file had no text to index.</p>')
    return f'<div class="sb-sources sb-preview">{head}{"".join(blocks)}</div>'


# --- the tab -----------------------------------------------------------------------------------------
def _status_md(lines: list[str], ok: bool = True) -> str:
    if not lines:
        return ""
    body = "\n".join(f"- {render.esc(ln)}" for ln in lines)
    return body if ok else f"**Some files were not added:**\n\n{body}"


def build_library_tab(service: StudyService) -> dict[str, Any]:
    """Build the Library tab inside the current ``gr.Blocks``; returns its components and a refresh fn."""
    settings = service.settings

    def table_and_choices() -> tuple[Any, Any, Any, Any]:
        """(table, the delete list: uploads only, totals, the preview list: every document); the table and the
        list first, where the API's outputs always had them."""
        try:
            docs = service.documents()
        except StudybotError:
            docs = []
        # A plain {"headers", "data"} value (not gr.update) so API clients get the table itself.
        table = {"headers": TABLE_HEADERS, "data": table_rows(docs)}
        return (table, gr.update(choices=[d.source for d in docs if is_upload(d.source)], value=None),
                totals_markdown(docs), gr.update(choices=[(f"{d.title} · {d.source}", d.source) for d in docs],
                                                 value=None))

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

    hide = gr.update(visible=False)

    def on_ask_delete(source: str | None) -> tuple[Any, ...]:
        """The first click: ask, naming the upload; nothing is deleted until "Yes, delete" is pressed."""
        if not source:
            return hide, gr.skip(), gr.skip(), "Choose one of your uploads in the list first."
        doc = next((d for d in service.documents() if d.source == source), None)
        if doc is None or not is_upload(source):
            return hide, gr.skip(), gr.skip(), render.esc(f"{source} is not one of your uploads.")
        question = (f"**Delete `{source}`?** Its {_plural(doc.chunks, 'passage')} leave the index and the file leaves "
                    "the uploads folder; to get it back, add the file again.")
        return gr.update(visible=True), question, gr.update(value=f"Yes, delete {source}"), ""

    def on_delete(source: str | None) -> tuple[Any, ...]:
        try:
            msg = delete_document(service, source or "")
        except StudybotError as exc:
            msg = str(exc)
        return (render.esc(msg), *table_and_choices(), hide)

    def on_reindex(progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        text = render.ProgressText()

        def cb(stage: str, done: int, total: int) -> None:
            progress((done, total), desc=text(stage, done, total))

        try:
            msg = _status_md(reindex(service, progress=cb))
        except StudybotError as exc:
            msg = render.esc(str(exc))
        return (msg, *table_and_choices())

    def on_preview(source: str | None) -> str:
        if not source:
            return preview_html(None, [])
        try:
            doc = next((d for d in service.documents() if d.source == source), None)
            if doc is None:
                return f'<p class="sb-empty">{render.esc(source)} is no longer in the library.</p>'
            return preview_html(doc, service.preview(source, PREVIEW_PASSAGES))
        except StudybotError as exc:
            return f'<p class="sb-empty">{render.esc(str(exc))}</p>'

    with gr.Tab("Library", id="library"):
        gr.Markdown(
            "The handbooks (the course material) and the files you added. Upload `.md`, `.txt` or `.pdf` files "
            f"(up to {settings.ingest.max_file_mb:g} MB each): they are added to the index without re-embedding "
            "the rest."
        )
        totals = gr.Markdown(elem_id="sb-library-totals")
        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                             column_widths=["33%", "27%", "11%", "9%", "7%", "13%"],
                             elem_id="sb-library-table", label="Indexed documents")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Upload documents", file_count="multiple",
                                elem_id="sb-upload-files")
                upload_btn = gr.Button("Add to library", variant="primary", elem_id="sb-upload-btn")
            with gr.Column(scale=1):
                doc_choice = gr.Dropdown(label="Your uploads", choices=[], value=None, elem_id="sb-delete-choice",
                                         info="Only files you added can be deleted; the handbooks stay.")
                delete_btn = gr.Button("Delete upload…", variant="stop", elem_id="sb-delete-btn")
                with gr.Group(visible=False, elem_id="sb-delete-confirm-box") as confirm_box:
                    confirm_q = gr.Markdown(elem_id="sb-delete-question")
                    with gr.Row():
                        confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="sb-delete-confirm")
                        cancel_btn = gr.Button("Cancel", elem_id="sb-delete-cancel")
                reindex_btn = gr.Button("Re-index corpus", elem_id="sb-reindex-btn")
                corpus = str(settings.storage.corpus_dir).replace("`", "'")
                gr.Markdown(
                    f"Re-index reads the handbooks folder (`{corpus}`) and your "
                    "uploads again and updates the index where a file was added, changed or removed on disk "
                    "(unchanged files are not re-embedded): only needed after changing files outside the app.",
                    elem_id="sb-reindex-help")
        status = gr.Markdown(elem_id="sb-library-status")
        with gr.Group():
            preview_choice = gr.Dropdown(label="Preview a document", choices=[], value=None,
                                         elem_id="sb-preview-choice",
                                         info=f"its first {PREVIEW_PASSAGES} passages, as the chat shows them")
            preview = gr.HTML(preview_html(None, []), elem_id="sb-preview")

    lists = [table, doc_choice, totals, preview_choice]
    upload_btn.click(on_upload, [files], [status, *lists, files], api_name="upload", concurrency_id="index")
    delete_btn.click(on_ask_delete, [doc_choice], [confirm_box, confirm_q, confirm_btn, status],
                     api_visibility="private", queue=False)
    cancel_btn.click(lambda: (hide, "Nothing was deleted."), None, [confirm_box, status],
                     api_visibility="private", queue=False)
    doc_choice.change(lambda: hide, None, [confirm_box], api_visibility="private", queue=False)
    confirm_btn.click(on_delete, [doc_choice], [status, *lists, confirm_box], api_name="delete_document",
                      concurrency_id="index")
    reindex_btn.click(on_reindex, None, [status, *lists], api_name="reindex", concurrency_id="index")
    preview_choice.change(on_preview, [preview_choice], [preview], api_name="preview_document")
    return {"table": table, "choices": doc_choice, "status": status, "refresh": table_and_choices,
            "refresh_outputs": lists}
