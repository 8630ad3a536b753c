"""Browser test of FSRS the way Anki users expect (issue 29, item 3): Playwright driving Debian's Chromium
against the whole app around a real service on a study database seeded with reviews on known days (no model:
nothing here asks it). Progress shows the review calendar with the seeded days, in the browser's time zone,
each with its tooltip; in Review, suspending the card shown takes it out of the queue and into the
"Suspended / buried cards" list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rag.quiz.models import QuizItem
from rag.settings import Settings
from rag.study.store import LOCAL_USER
from rag.types import Citation
from tests.browser_support import open_tab
from tests.helpers import MODELS_CACHE, served_app

pytestmark = [pytest.mark.browser]

ZONE = "Pacific/Kiritimati"  # UTC+14: its calendar day differs from UTC's for most of the day


def _item(q: str) -> QuizItem:
    cite = Citation(n=1, chunk_id="c1", source="doc.md", title="Doc", section="Regularization", page=None,
                    text="L1 drives weights to zero.")
    return QuizItem(type="flashcard", question=q, answer="It drives weights to zero", explanation="", options=[],
                    citation=cite)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[dict[str, Any]]:
    """The app with ``local``'s reviews: three on the day 5 days ago and one 3 days ago (browser's days, at
    00:30 there: the day before in UTC), all rated easy (not due for days), and two new cards due now."""
    from ui.service import StudyService

    home = tmp_path_factory.mktemp("progress-browser") / "home"
    svc = StudyService(Settings(storage={"home": home, "models_cache": MODELS_CACHE}), embedder=embedder)
    zone = ZoneInfo(ZONE)
    today = datetime.now(zone).date()
    d5, d3 = today - timedelta(days=5), today - timedelta(days=3)
    old = svc.study.add_items(LOCAL_USER, [_item(f"Seeded card {i}: what does L1 do?") for i in range(4)],
                              now=datetime.now(UTC) - timedelta(days=20))
    for card, day in zip(old, (d5, d5, d5, d3), strict=True):
        svc.study.review(LOCAL_USER, card, "easy", now=datetime(day.year, day.month, day.day, 0, 30, tzinfo=zone))
    fresh = svc.study.add_items(LOCAL_USER, [_item("Browser card A: what is bagging?"),
                                             _item("Browser card B: what is boosting?")])
    with served_app(svc) as served:
        yield {**served, "today": today, "d5": d5, "d3": d3, "fresh": fresh}


def test_progress_shows_the_calendar_and_review_suspends_a_card(chromium: Any, seeded: dict[str, Any]) -> None:
    svc = seeded["service"]
    today, d5, d3 = seeded["today"], seeded["d5"], seeded["d3"]
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=ZONE)
    try:
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(seeded["url"])
        pg.locator("#sb-question").wait_for()

        # Progress: the calendar with the seeded days, in the browser's time zone, a tooltip on each day
        open_tab(pg, "Progress")
        grid = pg.locator("#sb-progress-calendar .sb-cal-grid")
        grid.wait_for(timeout=15_000)
        cal = pg.locator("#sb-progress-calendar")
        busy = cal.locator(f'[title="{d5}: 3 reviews"]')
        assert busy.count() == 1 and busy.get_attribute("data-count") == "3"
        assert cal.locator(f'[title="{d3}: 1 review"]').count() == 1
        day_before: date = d3 - timedelta(days=1)  # where UTC would have put the 00:30 review
        assert cal.locator(f'[title="{day_before}: 0 reviews"]').count() == 1
        assert cal.locator(".sb-cal-today").get_attribute("data-day") == today.isoformat()
        box = busy.bounding_box()
        assert box is not None and 8 <= box["width"] <= 16 and 8 <= box["height"] <= 16, box  # drawn as a square
        busy_bg = busy.evaluate("el => getComputedStyle(el).backgroundColor")
        empty_bg = cal.locator(f'[title="{day_before}: 0 reviews"]').evaluate(
            "el => getComputedStyle(el).backgroundColor")
        assert busy_bg != empty_bg, (busy_bg, empty_bg)  # the busy day is shaded
        text = cal.inner_text()
        assert "4 reviews on 2 of " in text and "Less" in text and "More" in text, text
        assert f"time zone ({ZONE})" in text
        forecast = pg.locator("#sb-progress-forecast .sb-fc")
        assert forecast.get_attribute("data-total") == "6"  # 2 due now, 4 later this month
        assert "No true retention yet" in pg.locator("#sb-progress-retention").inner_text()
        assert "0.90" in pg.locator("#sb-schedule-info").inner_text()

        # Review: suspend the card shown; it leaves the queue and is listed as suspended
        open_tab(pg, "Review")
        card = pg.locator("#sb-review-question .sb-review-card")
        card.wait_for(timeout=15_000)
        status = pg.locator("#sb-review-status .sb-review-status")
        assert status.get_attribute("data-due") == "2"
        first = int(card.get_attribute("data-item") or 0)
        assert first in seeded["fresh"]
        question = svc.study.card(LOCAL_USER, first).item.question
        pg.locator("#sb-review-suspend").click()
        pg.wait_for_function("() => (document.querySelector('#sb-review-status .sb-review-message') || {})"
                             ".innerText?.startsWith('Suspended')", timeout=10_000)
        message = pg.locator("#sb-review-status .sb-review-message").inner_text()
        assert message.startswith(f"Suspended “{question}”") and message.count(". ") == 0, message
        assert int(card.get_attribute("data-item") or 0) != first and status.get_attribute("data-due") == "1"
        assert first not in [d.item_id for d in svc.study.due(LOCAL_USER)]
        pg.locator("#sb-review-hidden-box").get_by_text("Suspended / buried cards").click()
        hidden = pg.locator(f'#sb-review-hidden li[data-item="{first}"]')
        hidden.wait_for(timeout=10_000)
        assert hidden.inner_text().startswith("Suspended:") and question in hidden.inner_text()
    finally:
        context.close()
