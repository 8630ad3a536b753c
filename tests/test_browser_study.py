"""Browser tests of the study tabs as a student sees them (issue 28, items 7-11): Playwright driving Debian's
Chromium against the real app with the real default GGUF and a fresh study database (one app per module, so
the first test sees a student who has studied nothing).

Covered: Progress before any study says so in words and draws no empty chart; a quiz shows one progress
display while its question is made, the options lettered A-D, and after checking the chosen and the right
option marked (words and colours), the feedback with no raw Markdown and its explanation once; Review says
when a card comes back relative to now, in the browser's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.browser_support import ANSWER_TIMEOUT_MS, open_tab

pytestmark = [pytest.mark.browser, pytest.mark.llm]

GREEN, RED = "rgb(220, 252, 231)", "rgb(254, 226, 226)"


def test_progress_before_any_study_says_so_in_words(page: Any) -> None:
    open_tab(page, "Progress")
    summary = page.locator("#sb-progress-summary .sb-progress-summary")
    summary.wait_for(timeout=15_000)
    text = summary.inner_text()
    assert "Nothing studied yet" in text and "local" not in text, text
    for chart in ("#sb-progress-mastery", "#sb-progress-reviews", "#sb-progress-due", "#sb-progress-table"):
        assert not page.locator(chart).is_visible(), chart  # no empty chart with "0.000000" axes


def test_a_quiz_question_is_lettered_and_its_feedback_marks_the_choice_and_the_answer(page: Any) -> None:
    open_tab(page, "Quiz")
    page.locator("#sb-quiz-topic textarea, #sb-quiz-topic input").first.fill("regularization")
    page.locator("#sb-quiz-type").get_by_text("Multiple choice").click()
    count = page.locator("#sb-quiz-count input[type=number]")
    count.fill("1")
    count.press("Enter")
    page.locator("#sb-quiz-start").click()

    # One progress display, in the question's place, naming the step; the instructions are gone meanwhile.
    # (a question from the real model takes seconds at least; the display is drawn within half a second)
    work = page.locator("#sb-quiz-question .sb-work")
    work.wait_for(timeout=30_000)
    assert page.locator(".sb-work").count() == 1
    assert re.search(r"Making question 1 of 1|Finding passages|Saving", work.inner_text()), work.inner_text()
    assert "so far" in work.inner_text() and "Pick a topic" not in page.locator("#sb-quiz-question").inner_text()
    assert not page.locator("#sb-quiz-start").is_enabled()  # no second quiz started by a second click
    done = page.locator("#sb-quiz-question .sb-quiz-q, #sb-quiz-status .sb-quiz-error")
    done.first.wait_for(timeout=3 * ANSWER_TIMEOUT_MS)
    question = page.locator("#sb-quiz-question .sb-quiz-q")
    assert question.count() == 1, page.locator("#sb-quiz-status").inner_text()
    status = page.locator("#sb-quiz-status").inner_text()
    assert "ready" in status and not re.search(r"validat|dropped|generated item", status), status

    # The options carry their letters A-D.
    options = page.locator("#sb-quiz-options label")
    assert options.count() == 4
    labels = [options.nth(i).inner_text().strip() for i in range(4)]
    assert [label[:3] for label in labels] == ["A) ", "B) ", "C) ", "D) "], labels
    assert not any("**" in label for label in labels), labels

    options.nth(0).click()
    page.locator("#sb-quiz-check").click()
    result = page.locator("#sb-quiz-feedback .sb-quiz-result")
    result.wait_for(timeout=60_000)
    verdict = result.get_attribute("data-verdict")
    assert verdict in ("correct", "incorrect")

    # The chosen and the right option are marked, in words and colours, in the options themselves...
    page.wait_for_function("() => [...document.querySelectorAll('#sb-quiz-options label')]"
                           ".some(l => l.innerText.includes('✓'))", timeout=10_000)
    # (the colours are drawn with no transition: the marked options have their colours when their words show)
    page.wait_for_function("(green) => [...document.querySelectorAll('#sb-quiz-options label')].some(l => "
                           "l.innerText.includes('✓') && getComputedStyle(l).backgroundColor === green)", arg=GREEN,
                           timeout=2_000)
    after = [options.nth(i).inner_text().strip() for i in range(4)]
    background = [options.nth(i).evaluate("el => getComputedStyle(el).backgroundColor") for i in range(4)]
    if verdict == "correct":
        assert after[0].endswith("✓ your choice, right") and background[0] == GREEN, (after, background)
        assert not any("✓" in a or "✗" in a for a in after[1:]), after
    else:
        assert after[0].endswith("✗ your choice") and background[0] == RED, (after, background)
        right = [i for i, a in enumerate(after) if a.endswith("✓ right answer")]
        assert len(right) == 1 and background[right[0]] == GREEN, (after, background)
    # ...and in the feedback, with the same letters.
    shown = result.inner_text()
    if verdict == "incorrect":
        assert re.search(r"Your choice: A\) .+✗ wrong", shown) and re.search(r"Right answer: [B-D]\) .+✓ right", shown)
    else:
        assert re.search(r"Your choice: A\) .+✓ right", shown), shown
    assert not re.search(r"(?m)^Answer: [A-D]\)", shown)
    # Markdown rendered: no raw markers; the explanation once (not again as the quote).
    assert "**" not in shown and "```" not in shown, shown
    assert result.locator(".sb-quiz-explanation").count() <= 1
    quote = result.locator(".sb-quiz-quote")
    if quote.count():
        sentence = quote.inner_text().strip()
        visible = shown.split("Cited passage")[0]
        assert visible.count(sentence[:60]) == 1, (sentence, visible)
    result.locator("summary").click()
    passage = result.locator(".sb-passage").inner_text()
    assert passage.strip() and "**" not in passage


def test_review_says_when_a_card_comes_back_in_the_browsers_time_zone(chromium: Any, real_app: dict[str, Any]) -> None:
    from rag.quiz import QuizItem
    from rag.study.store import LOCAL_USER
    from rag.types import Citation
    from ui import render

    svc = real_app["service"]
    chunks = [c for c in svc.retriever.chunks.values() if c.section and "regulari" in c.text.lower()]
    items = [QuizItem(type="flashcard", question=f"Browser review {i}: what does regularization do?",
                      answer="It penalizes model complexity", explanation="", options=[],
                      citation=Citation.of(1, chunks[i])) for i in range(2)]
    ids = svc.record_quiz(LOCAL_USER, items)
    zone = "Pacific/Kiritimati"  # UTC+14: its calendar day differs from UTC's for most of the day
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=zone)
    try:
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(real_app["url"])
        pg.locator("#sb-question").wait_for()
        open_tab(pg, "Review")
        card = pg.locator("#sb-review-question .sb-review-card")
        card.wait_for(timeout=15_000)
        message = pg.locator("#sb-review-status .sb-review-message")
        for rating in ("good", "easy"):
            item_id = int(card.get_attribute("data-item") or 0)
            assert item_id in ids
            pg.locator("#sb-review-show").click()
            pg.locator("#sb-review-answer .sb-review-answer").wait_for(timeout=10_000)
            pg.locator(f"#sb-review-{rating}").click()
            pg.wait_for_function(f"() => (document.querySelector('#sb-review-status .sb-review-message') || {{}})"
                                 f".innerText?.startsWith('Graded {rating}')", timeout=10_000)
            text = message.inner_text()
            assert "UTC" not in text and not re.search(r"\d{4}-\d\d-\d\d", text), text
            due = next(d for d in svc.study.due(LOCAL_USER, now=datetime.max.replace(tzinfo=UTC))
                       if d.item_id == item_id).due
            expected = render.relative_time(due, datetime.now(UTC), zone)
            if rating == "good":  # a new card's first step: minutes
                assert re.search(r"you will see that card again in \d+ minutes?\.", text), text
            else:  # days ahead: the day and clock time in the browser's zone
                assert f"you will see that card again {expected}." in text, (text, expected)
            if not card.count():
                break
    finally:
        context.close()
