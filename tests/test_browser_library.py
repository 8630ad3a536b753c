"""Browser tests of the Library tab (Playwright + Debian's Chromium, the real app on a copy of the ingested
corpus): delete asks first (the first click only asks, Cancel keeps the file, "Yes, delete" deletes it), the
handbooks cannot be deleted as an upload can, the totals line follows the index, Re-index says what it does,
and a chosen document's first passages are previewed with their Markdown rendered (an upload's HTML shown
as text, never run).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import open_tab, upload_in_browser
from ui.render import markdown_plain

pytestmark = [pytest.mark.browser]

DOC = ("# Capybara regularisation <img src=x onerror=\"window.sbxss='title'\">\n\n"
       "Capybara regularisation adds the squared distance to a running average of the weights to the loss. "
       "<script>window.sbxss = 'script'</script> <b>not bold</b>\n")


def _pick(page: Any, dropdown: str, option: str) -> None:
    """Choose ``option`` (its visible label) in the Gradio dropdown ``dropdown`` (a CSS selector)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def _options(page: Any, dropdown: str) -> list[str]:
    """The labels a Gradio dropdown offers (opened, read, closed)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option").first.wait_for()
    labels = [str(t).strip() for t in page.get_by_role("option").all_inner_texts()]
    page.locator("#sb-library-totals").click()  # closes the list (the input loses focus)
    page.get_by_role("option").first.wait_for(state="detached")
    return labels


def _totals(page: Any, n: int) -> str:
    totals = page.locator("#sb-library-totals")
    totals.filter(has_text=f"{n} documents").wait_for(timeout=30_000)
    return str(totals.inner_text())


def test_delete_asks_first_and_only_uploads_can_be_deleted(page: Any, real_app: dict[str, Any],
                                                           tmp_path: Path) -> None:
    svc = real_app["service"]
    before = [d.source for d in svc.documents()]
    handbooks = [s for s in before if not s.startswith("uploads/")]
    doc = tmp_path / "capybara-notes.md"
    doc.write_text(DOC, encoding="utf-8")
    other = tmp_path / "wombat-notes.txt"
    other.write_text("Wombat pooling keeps the largest cube-shaped activation of each window.\n", encoding="utf-8")
    open_tab(page, "Library")
    page.locator("#sb-upload-files input[type=file]").set_input_files([str(doc), str(other)])
    page.locator("#sb-upload-btn").click()
    status = page.locator("#sb-library-status")
    status.filter(has_text="wombat-notes.txt: added").filter(has_text="capybara-notes.md: added").wait_for(
        timeout=180_000)
    name, other_name = "uploads/capybara-notes.md", "uploads/wombat-notes.txt"
    totals = _totals(page, len(before) + 2)
    assert f"({len(handbooks)} handbooks, 2 uploads of yours)" in totals, totals
    chunks = sum(d.chunks for d in svc.documents())
    assert f"{chunks:,} passages" in totals, totals
    table = page.locator("#sb-library-table").inner_text()
    assert name in table and "your upload" in table and "handbook" in table
    # Re-index is explained where it is.
    assert "only needed after changing files outside the app" in page.locator("#sb-reindex-help").inner_text()

    # The handbooks are not offered for deletion: only the uploads are.
    assert sorted(_options(page, "#sb-delete-choice")) == [name, other_name]

    # The first click only asks, naming the file; nothing is deleted.
    confirm = page.locator("#sb-delete-confirm")
    assert not confirm.is_visible()
    _pick(page, "#sb-delete-choice", name)
    page.locator("#sb-delete-btn").click()
    confirm.wait_for(state="visible", timeout=10_000)
    assert name in page.locator("#sb-delete-question").inner_text()
    assert confirm.inner_text().strip() == f"Yes, delete {name}"
    page.wait_for_timeout(1_000)
    assert name in [d.source for d in svc.documents()]
    assert name in page.locator("#sb-library-table").inner_text()

    # Cancel keeps it.
    page.locator("#sb-delete-cancel").click()
    confirm.wait_for(state="hidden", timeout=10_000)
    assert "Nothing was deleted" in page.locator("#sb-library-status").inner_text()
    assert name in [d.source for d in svc.documents()]

    # Choosing another upload after asking takes the question away (it was about the first one).
    page.locator("#sb-delete-btn").click()
    confirm.wait_for(state="visible", timeout=10_000)
    _pick(page, "#sb-delete-choice", other_name)
    confirm.wait_for(state="hidden", timeout=10_000)
    assert other_name in [d.source for d in svc.documents()]

    # Asking and confirming deletes it: from the index, the table, the list and the uploads folder.
    _pick(page, "#sb-delete-choice", name)
    page.locator("#sb-delete-btn").click()
    confirm.wait_for(state="visible", timeout=10_000)
    confirm.click()
    page.locator("#sb-library-status").filter(has_text=f"removed {name}").wait_for(timeout=60_000)
    confirm.wait_for(state="hidden", timeout=10_000)
    assert sorted(d.source for d in svc.documents()) == sorted([*before, other_name])
    assert name not in page.locator("#sb-library-table").inner_text()
    assert not (Path(svc.settings.storage.uploads_dir) / "capybara-notes.md").exists()
    _totals(page, len(before) + 1)
    assert _options(page, "#sb-delete-choice") == [other_name]
    # Every handbook is still there.
    table = page.locator("#sb-library-table").inner_text()
    assert all(h in table for h in handbooks)


def test_preview_shows_a_documents_first_passages_as_text(page: Any, real_app: dict[str, Any],
                                                          tmp_path: Path) -> None:
    svc = real_app["service"]
    open_tab(page, "Library")
    preview = page.locator("#sb-preview")
    assert "Choose a document" in preview.inner_text()
    # A handbook: its title, and its first passages in order.
    book = max((d for d in svc.documents() if not d.source.startswith("uploads/")), key=lambda d: d.chunks)
    _pick(page, "#sb-preview-choice", f"{book.title} · {book.source}")
    preview.locator(".sb-passage").first.wait_for(timeout=30_000)
    assert book.title in preview.inner_text()
    first = svc.preview(book.source, 3)
    shown = preview.locator(".sb-passage")
    assert shown.count() == 3
    texts = [str(shown.nth(i).inner_text()) for i in range(3)]
    for text, chunk in zip(texts, first, strict=True):  # each passage in its place, its Markdown rendered
        assert re.findall(r"\w+", text)[:8] == re.findall(r"\w+", markdown_plain(chunk.text))[:8], (text, chunk.text)
        assert "**" not in text, text
    # An upload with markup: shown as text, nothing of it runs.
    doc = tmp_path / "capybara-preview.md"
    doc.write_text(DOC, encoding="utf-8")
    assert "capybara-preview.md: added" in upload_in_browser(page, doc)
    up = next(d for d in svc.documents() if d.source == "uploads/capybara-preview.md")
    _pick(page, "#sb-preview-choice", f"{up.title} · {up.source}")
    preview.filter(has_text="your upload").wait_for(timeout=30_000)
    text = preview.locator(".sb-passage").first.text_content() or ""
    assert "<script>window.sbxss = 'script'</script>" in text and "<b>not bold</b>" in text, text
    assert preview.locator("script, img, b").count() == 0
    assert page.evaluate("window.sbxss") is None
