"""Helpers for the Playwright browser tests (fixtures are in conftest.py: ``real_app``, ``page``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ANSWER_TIMEOUT_MS = 240_000  # one answer on 2 CPU cores, model load included

_STATUS = "#sb-sources .sb-sources-status"

_GENERATING_WITH_SOURCES = """() => {
  const s = document.querySelector('#sb-sources .sb-sources-status');
  return !!s && s.textContent.includes('working on the answer')
      && document.querySelectorAll('#sb-sources .sb-src').length > 0;
}"""

_DONE = """() => {
  const s = document.querySelector('#sb-sources .sb-sources-status');
  if (!s) return false;
  const t = s.textContent;
  return t.length > 0 && !t.includes('working on the answer') && !t.includes('Searching');
}"""


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def ask_in_browser(page: Any, question: str) -> bool:
    """Type ``question`` in the chat tab, send it and wait for the final answer. Returns whether the sources
    panel was seen filled while the answer was still being generated."""
    box = page.locator("#sb-question textarea")
    box.fill(question)
    page.locator("#sb-ask").click()
    try:
        page.wait_for_function(_GENERATING_WITH_SOURCES, timeout=ANSWER_TIMEOUT_MS, polling=100)
        seen = True
    except Exception:  # the answer may have finished between two polls
        seen = False
    page.wait_for_function(_DONE, timeout=ANSWER_TIMEOUT_MS, polling=200)
    return seen


def upload_in_browser(page: Any, path: Path) -> str:
    """Upload one file on the Library tab and return the status text once ingest is done."""
    open_tab(page, "Library")
    page.locator("#sb-upload-files input[type=file]").set_input_files(str(path))
    page.locator("#sb-upload-btn").click()
    status = page.locator("#sb-library-status")
    status.filter(has_text=":").wait_for(timeout=120_000)
    return str(status.inner_text())
