"""Browser tests of the Chat tab as a student uses it (issue 28, items 1-6): Playwright driving Debian's
Chromium against the real app, the real index and the real default GGUF (fixtures in conftest.py).

Covered: two questions sent back to back are both shown at once and answered in order, the second marked as
waiting meanwhile; a stage is named before the first words of an answer, and what an answer shows never
changes once drawn (the DOM sampled every 50 ms; only the stage line may change); no control but #sb-wait
shows a progress label; the time shown is the time the student waited; an older answer's [n] still opens
its own source; a passage with **bold**, $x$ and a code fence shows none of its markers; a refusal is one
sentence and the sources panel agrees; Export with nothing to export says so; an example question is sent;
saved conversations have small buttons and titles that fit.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from evals.gold import load_gold
from tests.browser_support import (
    ANSWER_TIMEOUT_MS,
    BOT,
    bot_count,
    open_tab,
    send_question,
    upload_in_browser,
    wait_answered,
)
from ui import render

pytestmark = [pytest.mark.browser, pytest.mark.llm]

GOLD = {g.id: g for g in load_gold()}
STAGES = set(render.STAGE_TEXT.values())

# Every 50 ms: each answer's text as the page shows it, and any progress label shown outside #sb-wait.
SAMPLER = """() => {
  window.sbSamples = []; window.sbLabels = [];
  window.sbTimer = setInterval(() => {
    window.sbSamples.push([...document.querySelectorAll('#sb-chatbot .message.bot')].map(e => e.innerText));
    document.querySelectorAll('[data-testid="status-tracker"]').forEach(t => {
      if (t.closest('#sb-wait')) return;
      const r = t.getBoundingClientRect(), st = getComputedStyle(t);
      if (r.width > 0 && r.height > 0 && st.display !== 'none' && st.visibility !== 'hidden'
          && st.opacity !== '0' && t.innerText.trim()) window.sbLabels.push(t.innerText.trim());
    });
  }, 50);
}"""


def _shown(text: str) -> str:
    """An answer's text without its stage line (the one line that may change), spacing normalised."""
    return " ".join(" ".join(ln for ln in text.split("\n") if ln.strip() not in STAGES).split())


def _is_stage_only(text: str) -> bool:
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    return bool(lines) and all(ln in STAGES for ln in lines)


def _check_only_grows(samples: list[list[str]], index: int) -> None:
    texts = [s[index] for s in samples if len(s) > index]
    shown = [_shown(t) for t in texts]
    first_words = next(i for i, t in enumerate(shown) if t)
    assert any(_is_stage_only(t) for t in texts[:first_words]), texts[:first_words]  # a stage before any words
    previous = ""
    for text in shown[first_words:]:
        assert text.startswith(previous), (previous, text)  # nothing drawn changes or moves
        previous = text


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]{4,}", text.lower()))


def test_two_questions_sent_back_to_back_are_answered_in_order_and_keep_their_sources(
        page: Any, real_app: dict[str, Any]) -> None:
    first, second = GOLD["g01"], GOLD["g05"]  # SVD; Huber loss
    page.evaluate(SAMPLER)
    started = time.monotonic()
    send_question(page, first.question)
    page.locator("#sb-chatbot .message.user").first.wait_for(timeout=5_000)  # shown at once
    send_question(page, second.question, enter=True)  # while the first is being answered
    sent_second = time.monotonic()
    # Both are in the conversation at once, in order; the second says it waits for the first.
    page.wait_for_function("() => document.querySelectorAll('#sb-chatbot .message.user').length === 2",
                           timeout=5_000, polling=50)
    users = [u.inner_text() for u in page.locator("#sb-chatbot .message.user").all()]
    assert users == [first.question, second.question]
    assert page.locator("#sb-question textarea").input_value() == ""
    page.wait_for_function("t => [...document.querySelectorAll('#sb-chatbot .message.bot')].some("
                           "e => e.innerText.includes(t))", arg=render.STAGE_TEXT["waiting"], timeout=10_000)

    wait_answered(page, 2, timeout_ms=2 * ANSWER_TIMEOUT_MS)
    finished = time.monotonic()
    page.evaluate("() => clearInterval(window.sbTimer)")
    samples: list[list[str]] = page.evaluate("() => window.sbSamples")
    labels: list[str] = page.evaluate("() => window.sbLabels")
    answers = [b.inner_text() for b in page.locator(BOT).all()]
    assert len(answers) == 2 and not any(a.strip() in STAGES for a in answers), answers
    assert re.search(r"singular value|svd|factoriz", answers[0], re.I), answers[0]
    assert re.search(r"huber|MSE and MAE|outlier", answers[1], re.I), answers[1]
    for index in (0, 1):
        _check_only_grows(samples, index)
    assert not labels, sorted(set(labels))[:5]  # no "processing | 0.2/16.2s" on the chat's controls

    # The time shown is the student's wait for the second answer (from its click), not the pipeline's.
    status = page.locator("#sb-sources .sb-sources-status").inner_text()
    waited = float(re.search(r"You waited (\d+\.\d) s", status).group(1))  # type: ignore[union-attr]
    assert finished - sent_second - 3.0 <= waited <= finished - started + 1.0, (waited, status)

    # Each answer's [n] opens its own turn's source, the first one's too.
    for number, bot in ((1, page.locator(BOT).nth(0)), (2, page.locator(BOT).nth(1))):
        link = bot.locator(f"a[href^='#src-{number}-']").first
        assert link.count() == 1, bot.inner_html()
        target = str(link.get_attribute("href"))
        link.click()
        source = page.locator(f"#sb-sources {target}")
        source.locator(".sb-passage").wait_for(state="visible", timeout=5_000)
        other = 2 if number == 1 else 1
        assert page.locator(f"#sb-sources section[data-turn='{other}']").is_hidden()
        quote = bot.locator("blockquote").first.inner_text()
        passage = source.locator(".sb-passage").inner_text()
        assert len(_words(quote) & _words(passage)) >= min(3, len(_words(quote))), (quote, passage)


MARKDOWN_DOC = """# Wombat fold rule

**Example:** $ k=5 $ folds: the wombat fold rule splits the data into **five parts** and uses each part
as the validation set once.

**Key Concepts:** the wombat fold rule trains on $k-1$ parts and averages the $k$ validation scores.

```python
from sklearn.model_selection import KFold
folds = KFold(n_splits=5)  # **not bold** in code
```
"""


def test_a_passage_with_bold_math_and_code_shows_no_raw_markers(page: Any, real_app: dict[str, Any],
                                                               tmp_path: Path) -> None:
    doc = tmp_path / "wombat-folds.md"
    doc.write_text(MARKDOWN_DOC, encoding="utf-8")
    assert "wombat-folds.md: added" in upload_in_browser(page, doc)
    open_tab(page, "Chat")
    send_question(page, "How many parts does the wombat fold rule split the data into?")
    wait_answered(page, 1)
    src = page.locator("#sb-sources .sb-src", has_text="wombat-folds.md").first
    src.locator("summary").click()
    passage = src.locator(".sb-passage")
    text, markup = passage.inner_text(), passage.inner_html()
    assert "<strong>Example:</strong>" in markup and "<strong>five parts</strong>" in markup, markup
    assert "k=5" in text and "k-1" in text, text
    assert "**" not in text.replace("# **not bold** in code", "") and "$" not in text and "```" not in text, text
    code = passage.locator("pre code")
    assert code.count() >= 1 and "folds = KFold(n_splits=5)" in code.first.inner_text()
    answer = page.locator(BOT).last.inner_text()
    assert "$" not in answer and "```" not in answer and "**" not in answer.replace("**not bold**", ""), answer


def test_refusal_export_examples_and_saved_list_say_what_they_do(page: Any, real_app: dict[str, Any]) -> None:
    # Export with nothing to export says so.
    page.locator("#sb-export").click()
    note = page.locator("#sb-chat-note")
    note.filter(has_text="Nothing to export yet").wait_for(timeout=10_000)
    # A refusal (a term no handbook mentions: no model call) is one sentence, and the panel agrees.
    send_question(page, "What is the Mahalanobis distance used for?")
    wait_answered(page, 1)
    answer = page.locator(BOT).last.inner_text()
    assert answer.count("Not answered") == 1 and "can't find" not in answer, answer
    assert "Mahalanobis" in answer  # the term no handbook mentions is named
    panel = page.locator("#sb-sources").inner_text()
    assert "Not answered" in panel and render.EMPTY_SOURCES not in panel, panel
    # Open and Delete are small buttons; a saved conversation's title fits its box.
    for button in ("#sb-saved-open", "#sb-saved-delete"):
        box = page.locator(button).bounding_box()
        assert box is not None and box["height"] <= 48 and box["width"] <= 140, (button, box)
    page.wait_for_function("() => (document.querySelector('#sb-saved input')?.value || '').length > 0",
                           timeout=10_000)
    assert page.evaluate("() => { const i = document.querySelector('#sb-saved input');"
                         " return i.scrollWidth <= i.clientWidth + 1; }")
    # An example question is sent, not only put in the box.
    before = bot_count(page)
    example = "Explain the bias-variance trade-off."
    page.locator("#sb-chatbot").scroll_into_view_if_needed()
    page.get_by_text(example, exact=True).click()
    page.wait_for_function("q => [...document.querySelectorAll('#sb-chatbot .message.user')].some("
                           "e => e.innerText.trim() === q)", arg=example, timeout=10_000)
    assert bot_count(page) == before + 1
    assert page.locator("#sb-question textarea").input_value() == ""
    page.locator("#sb-clear").click()  # stops that answer: the model is free for the next test
    page.wait_for_function("() => document.querySelectorAll('#sb-chatbot .message').length === 0", timeout=10_000)
