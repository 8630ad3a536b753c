"""Browser test of the streamed quiz (issue 29): Playwright driving Debian's Chromium against the real app with the
real default GGUF (fixtures in conftest.py). A three-card quiz shows its first card while the second is still
being made (the one progress display says so at the moment the card appears), the card is answered meanwhile,
Next brings the second card (waiting for it, saying so, when it is not made yet), and the progress display goes
once every card is made. The question bank's line is in the tab in words."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser_support import ANSWER_TIMEOUT_MS, open_tab

pytestmark = [pytest.mark.browser, pytest.mark.llm]

# Sampled in the page every 50 ms: the first moment the first question is drawn, what the progress display of
# the rest says (an error instead, if the quiz failed).
FIRST_SHOWN = """() => {
  const err = document.querySelector('#sb-quiz-status .sb-quiz-error');
  if (err) return {error: err.innerText};
  const q = document.querySelector('#sb-quiz-question .sb-quiz-q');
  if (!q) return null;
  return {question: q.innerText, making: document.querySelector('#sb-quiz-making')?.innerText || '',
          works: document.querySelectorAll('.sb-work').length};
}"""


def test_the_first_card_shows_and_is_answered_while_the_next_is_being_made(page: Any, real_app: dict[str, Any]
                                                                          ) -> None:
    open_tab(page, "Quiz")
    bank = page.locator("#sb-quiz-bank .sb-quiz-bank-line")
    bank.wait_for(timeout=30_000)  # drawn when the tab opens
    assert bank.inner_text().startswith("No questions are ready in advance yet"), bank.inner_text()

    page.locator("#sb-quiz-topic textarea, #sb-quiz-topic input").first.fill("regularization")
    page.locator("#sb-quiz-type").get_by_text("Flashcard").click()
    count = page.locator("#sb-quiz-count input[type=number]")
    count.fill("3")
    count.press("Enter")
    page.locator("#sb-quiz-start").click()

    seen = page.wait_for_function(FIRST_SHOWN, timeout=2 * ANSWER_TIMEOUT_MS, polling=50).json_value()
    assert "error" not in seen, seen
    assert "Card 1 of 3" in seen["question"], seen
    # Card 2 takes seconds on the real model: when card 1 appears, the display says it is being made.
    assert "Question 2 of 3 is being made" in seen["making"] and "1 of 3 ready" in seen["making"], seen
    assert seen["works"] == 1, seen  # one progress display, no other

    # Card 1 is answered (turned over) while the rest are made.
    assert page.locator("#sb-quiz-answer textarea").is_visible()
    page.locator("#sb-quiz-check").click()
    result = page.locator("#sb-quiz-feedback .sb-quiz-result")
    result.wait_for(timeout=60_000)
    assert result.get_attribute("data-verdict") == "revealed"
    next_btn = page.locator("#sb-quiz-next")
    page.wait_for_function("() => !document.querySelector('#sb-quiz-next').disabled", timeout=10_000)
    next_btn.click()
    # Card 2 at once when it is made, else a line saying it is being made in its place first.
    page.locator("#sb-quiz-question .sb-quiz-q[data-index='2'], #sb-quiz-question .sb-quiz-wait").first.wait_for(
        timeout=10_000)
    page.locator("#sb-quiz-question .sb-quiz-q[data-index='2']").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert "Card 2 of 3" in page.locator("#sb-quiz-question").inner_text()
    assert page.locator("#sb-quiz-feedback .sb-quiz-result").count() == 0  # the new card is not answered yet

    # Every card made: the progress display goes (a note stays only when fewer came than asked for).
    page.wait_for_function("() => !document.querySelector('#sb-quiz-making .sb-work')",
                           timeout=2 * ANSWER_TIMEOUT_MS)
    making = page.locator("#sb-quiz-making").inner_text()
    assert making == "" or "you asked for 3" in making, making
