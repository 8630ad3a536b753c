"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) against the real app, with the
real index and the real default GGUF (short answers). A failing test leaves a screenshot in test-artifacts/.

Covered: a gold question gets a streamed, cited answer with its passage in the sources panel (which fills
before generation ends); an uploaded file shows up in the library and answers a question; a document with
an XSS payload shows the payload as text and runs none of it; the Quiz tab asks a question, grades the
answer with the cited passage, scores and exports; the Review tab grades a due card and shows its next
review date; the Progress tab draws its charts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from evals.gold import load_gold
from tests.browser_support import (
    ANSWER_TIMEOUT_MS,
    ask_in_browser,
    open_tab,
    upload_in_browser,
    wait_answered,
)

pytestmark = [pytest.mark.browser, pytest.mark.llm]

GOLD = {g.id: g for g in load_gold()}


def test_a_gold_question_gets_a_cited_answer_with_its_passage(page: Any, real_app: dict[str, Any]) -> None:
    gold = GOLD["g01"]  # SVD: answered with a citation on the default model (see test_answer_e2e.py)
    seen_generating = ask_in_browser(page, gold.question)
    # The sources panel was filled while the answer was still being generated.
    assert seen_generating
    bot = page.locator("#sb-chatbot .message.bot, #sb-chatbot [data-testid='bot']").last
    text = bot.inner_text()
    assert re.search(r"singular value|svd", text, re.I), text
    assert text.index("Factorizes a matrix") < len(text) // 2 or "Factorizes a matrix" in text[:400], text  # quoted first
    links = bot.locator("a[href^='#src-']")
    assert links.count() >= 1, bot.inner_html()
    target = links.first.get_attribute("href")
    cited = page.locator(f"#sb-sources {target}")
    assert cited.count() == 1
    assert "sb-cited" in (cited.get_attribute("class") or "")
    # Clicking the [n] opens the cited passage; it holds the gold phrase.
    links.first.click()
    passage = cited.locator(".sb-passage")
    passage.wait_for(state="visible", timeout=5_000)
    assert any(ph.lower() in passage.inner_text().lower() for ph in gold.phrases), passage.inner_text()
    status = page.locator("#sb-sources .sb-sources-status").inner_text()
    assert "cited" in status and "Uncited" not in status, status
    # The conversation was saved: it is the selected entry of the saved-conversations list.
    saved = page.locator("#sb-saved input").first
    page.wait_for_function("s => document.querySelector(s) && document.querySelector(s).value.length > 0",
                           arg="#sb-saved input", timeout=10_000)
    assert saved.input_value().startswith(gold.question[:40]), saved.input_value()


def test_an_uploaded_file_is_listed_and_answers_a_question(page: Any, real_app: dict[str, Any],
                                                          tmp_path: Path) -> None:
    doc = tmp_path / "Quokka schedule (draft).md"
    doc.write_text(
        "# Quokka learning-rate schedule\n\n"
        "The quokka schedule is a learning-rate schedule that raises the learning rate by ten percent every "
        "three epochs and halves it as soon as the validation loss goes up.\n",
        encoding="utf-8",
    )
    status = upload_in_browser(page, doc)
    assert "Quokka schedule _draft.md: added" in status, status
    table = page.locator("#sb-library-table")
    assert "uploads/Quokka schedule _draft.md" in table.inner_text()
    open_tab(page, "Chat")
    ask_in_browser(page, "How does the quokka schedule change the learning rate?")
    sources = page.locator("#sb-sources .sb-src.sb-cited")
    assert sources.count() >= 1, page.locator("#sb-sources").inner_html()
    meta = " ".join(sources.nth(i).inner_text() for i in range(sources.count()))
    assert "Quokka schedule _draft.md" in meta, meta
    bot = page.locator("#sb-chatbot .message.bot, #sb-chatbot [data-testid='bot']").last
    assert re.search(r"ten percent|10 ?%|three epochs|3 epochs|halve", bot.inner_text(), re.I), bot.inner_text()


XSS_DOC = (
    "# Stochastic weight averaging <img src=x onerror=\"window.sbxss='title'\">\n\n"
    "Stochastic weight averaging (SWA) averages the weights that SGD visits late in training, which lands "
    "in a flatter region of the loss and generalises better. "
    "<script>window.sbxss = 'script'</script> "
    "<img src=x onerror=\"window.sbxss='img'\"> "
    "<a href=\"javascript:window.sbxss='link'\">click</a>\n"
)


def test_a_document_with_an_xss_payload_shows_it_as_text(page: Any, real_app: dict[str, Any],
                                                         tmp_path: Path) -> None:
    doc = tmp_path / "swa-notes.md"
    doc.write_text(XSS_DOC, encoding="utf-8")
    status = upload_in_browser(page, doc)
    assert "swa-notes.md: added" in status, status
    assert "<img src=x" in page.locator("#sb-library-table").inner_text()  # the title, as text
    open_tab(page, "Chat")
    ask_in_browser(page, "What does stochastic weight averaging do to the weights SGD visits?")
    panel = page.locator("#sb-sources")
    swa = panel.locator(".sb-src", has_text="swa-notes.md")
    assert swa.count() >= 1, panel.inner_html()
    shown = swa.first.locator(".sb-passage").text_content() or ""  # the passage, as the page holds it
    assert "<script>window.sbxss = 'script'</script>" in shown, shown
    assert "onerror=" in shown
    # Nothing of it became markup, and nothing ran.
    assert panel.locator("script, img[src='x'], a[href^='javascript:']").count() == 0
    assert page.locator("#sb-chatbot img[src='x'], #sb-chatbot script").count() == 0
    assert page.evaluate("window.sbxss") is None


def test_the_quiz_tab_asks_grades_with_the_cited_passage_and_scores(page: Any, real_app: dict[str, Any]) -> None:
    open_tab(page, "Quiz")
    page.locator("#sb-quiz-topic textarea, #sb-quiz-topic input").first.fill("regularization")
    page.locator("#sb-quiz-type").get_by_text("Multiple choice").click()
    count = page.locator("#sb-quiz-count input[type=number]")
    count.fill("1")
    count.press("Enter")
    page.locator("#sb-quiz-start").click()
    question = page.locator("#sb-quiz-question .sb-quiz-q")  # the rendered question, not the progress bar
    # Up to three model calls per question; a quiz that fails shows its one-sentence error instead.
    page.locator("#sb-quiz-question .sb-quiz-q, #sb-quiz-status .sb-quiz-error").first.wait_for(
        timeout=3 * ANSWER_TIMEOUT_MS)
    assert question.count() == 1, page.locator("#sb-quiz-status").inner_text()
    assert "Question 1 of 1" in question.inner_text() and "regularization" in question.inner_text()
    assert "question" in page.locator("#sb-quiz-status").inner_text().lower()
    options = page.locator("#sb-quiz-options label")
    assert options.count() == 4
    labels = [options.nth(i).inner_text().strip() for i in range(4)]
    assert len(set(labels)) == 4, labels
    options.first.click()
    page.locator("#sb-quiz-check").click()
    result = page.locator("#sb-quiz-feedback .sb-quiz-result")
    result.wait_for(timeout=60_000)
    assert result.get_attribute("data-verdict") in ("correct", "incorrect")
    assert re.search(r"(Right answer|Your choice): [A-D]\) ", result.inner_text()), result.inner_text()
    # The cited passage opens, and the right answer is one of the four options shown.
    result.locator("summary").click()
    assert result.locator(".sb-passage").inner_text().strip()
    right = result.locator(".sb-quiz-right").inner_text()
    assert any(label in right for label in labels), (right, labels)
    score = page.locator("#sb-quiz-score .sb-quiz-score-box")
    score.wait_for(timeout=10_000)
    assert score.get_attribute("data-total") == "1"
    assert re.search(r"Score: [01]/1", score.inner_text())
    assert page.locator("#sb-quiz-more").is_enabled()
    with page.expect_download(timeout=30_000) as download:
        page.locator("#sb-quiz-export").click()
    assert download.value.suggested_filename.endswith(".csv")


def test_review_grades_a_due_card_and_progress_draws_its_charts(page: Any, real_app: dict[str, Any]) -> None:
    from rag.quiz import QuizItem
    from rag.study.store import LOCAL_USER
    from rag.types import Citation

    svc = real_app["service"]
    chunk = next(c for c in svc.retriever.chunks.values() if c.section and "regulari" in c.text.lower())
    item = QuizItem(type="flashcard", question="Browser review: what does regularization do?",
                    answer="It penalizes model complexity", explanation="", options=[],
                    citation=Citation.of(1, chunk))
    svc.record_quiz(LOCAL_USER, [item])  # a new card: due at once
    open_tab(page, "Review")
    card = page.locator("#sb-review-question .sb-review-card")
    card.wait_for(timeout=10_000)
    assert int(card.get_attribute("data-due") or 0) >= 1
    page.locator("#sb-review-show").click()
    answer = page.locator("#sb-review-answer .sb-review-answer")
    answer.wait_for(timeout=10_000)
    assert "Answer:" in answer.inner_text()
    assert page.locator("#sb-review-answer .sb-quiz-cite").inner_text().strip()
    page.locator("#sb-review-good").click()
    message = page.locator("#sb-review-status .sb-review-message")
    message.wait_for(timeout=10_000)
    assert re.search(r"Graded good: you will see that card again in \d+ minutes?\.", message.inner_text()), \
        message.inner_text()

    open_tab(page, "Progress")
    summary = page.locator("#sb-progress-summary .sb-progress-summary")
    summary.wait_for(timeout=10_000)
    assert int(summary.get_attribute("data-reviews") or 0) >= 1, summary.inner_text()
    for chart in ("#sb-progress-mastery", "#sb-progress-reviews", "#sb-progress-due"):
        drawn = page.locator(f"{chart} canvas, {chart} svg.marks, {chart} .vega-embed")
        drawn.first.wait_for(timeout=15_000)
        assert drawn.count() >= 1, chart
    table = page.locator("#sb-progress-table")
    assert chunk.section.split(" > ")[0][:20] in table.inner_text() or "regular" in table.inner_text().lower()


def test_a_question_waiting_behind_another_shows_its_place_in_the_queue(page: Any, chromium: Any,
                                                                        real_app: dict[str, Any]) -> None:
    """Two students, one model: the second sees "queue: n/m" with Gradio's estimate while the first is answered,
    then gets its own answer."""
    other = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        other.goto(real_app["url"])
        other.locator("#sb-question").wait_for()
        other.locator("#sb-question textarea").fill(GOLD["g03"].question)
        other.locator("#sb-ask").click()
        other.wait_for_function("() => (document.querySelector('#sb-wait')?.textContent || '').length > 0",
                                timeout=30_000, polling=50)  # the first question is running
        page.locator("#sb-question textarea").fill(GOLD["g05"].question)
        page.locator("#sb-ask").click()
        page.wait_for_function("() => /queue:\\s*\\d+\\s*\\/\\s*\\d+/.test("
                               "document.querySelector('#sb-wait')?.textContent || '')",
                               timeout=30_000, polling=50)
        wait_answered(page, 1, timeout_ms=ANSWER_TIMEOUT_MS * 2)
        assert "queue" not in page.locator("#sb-wait").inner_text()
    finally:
        other.context.close()
