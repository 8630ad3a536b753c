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

BOT = "#sb-chatbot .message.bot"  # one element per answer in the conversation

# The conversation has at least ``n`` answers and none is waiting or being written (the sources panel's
# data-busy, set while a question of this browser's conversation waits or is answered).
_IDLE = """n => {
  const panel = document.querySelector('#sb-sources .sb-sources');
  return !!panel && panel.dataset.busy === '0'
      && document.querySelectorAll('#sb-chatbot .message.bot').length >= n;
}"""


def bot_count(page: Any) -> int:
    return int(page.locator(BOT).count())


def send_question(page: Any, question: str, *, enter: bool = False) -> None:
    """Type ``question`` in the chat tab and send it (Ask, or Enter); returns at once."""
    box = page.locator("#sb-question textarea")
    box.fill(question)
    if enter:
        box.press("Enter")
    else:
        page.locator("#sb-ask").click()


def wait_answered(page: Any, answers: int, timeout_ms: int = ANSWER_TIMEOUT_MS) -> None:
    """Wait until the conversation shows ``answers`` answers and nothing is waiting or being written."""
    page.wait_for_function(_IDLE, arg=answers, timeout=timeout_ms, polling=200)


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def ask_in_browser(page: Any, question: str) -> bool:
    """Type ``question`` in the chat tab, send it and wait for the final answer. Returns whether the sources
    panel was seen filled while the answer was still being generated."""
    before = bot_count(page)
    send_question(page, question)
    # Sources shown while the answer is written, or the answer done first (between two polls, or refused).
    seen = page.wait_for_function(f"() => ({_GENERATING_WITH_SOURCES})() ? 'generating' : ({_IDLE})({before + 1})",
                                  timeout=ANSWER_TIMEOUT_MS, polling=100).json_value() == "generating"
    wait_answered(page, before + 1)
    return bool(seen)


def upload_in_browser(page: Any, path: Path) -> str:
    """Upload one file on the Library tab and return the status text once ingest is done."""
    open_tab(page, "Library")
    page.locator("#sb-upload-files input[type=file]").set_input_files(str(path))
    page.locator("#sb-upload-btn").click()
    status = page.locator("#sb-library-status")
    status.filter(has_text=":").wait_for(timeout=120_000)
    return str(status.inner_text())
