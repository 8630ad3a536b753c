"""The Progress tab: mastery per handbook section (the recency-weighted share of its reviews rated good or
easy; :meth:`rag.study.store.StudyStore.mastery`), reviews per day over the last two weeks and the cards due
over the next two, as Gradio bar plots, plus the table and the weak spots ("Quiz my weak spots" on the Quiz
tab draws on them). Before any study the tab says so in words instead of drawing empty charts; a chart with
nothing to draw is hidden. :func:`progress_data` is the tab's data and :func:`progress_outputs` what it shows
(a study database that cannot be read: its one sentence), tested without a browser."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from rag.errors import StudybotError
from ui import render
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = ""

if TYPE_CHECKING:
    from ui.service import StudyService

MAX_LABEL = 40
MIN_COUNT_AXIS = 5  # a count axis reaches at least 5, so its ticks are whole numbers (0, 1, ... 5)
TABLE_COLUMNS = ["section", "document", "mastery", "reviews right", "recall tomorrow (FSRS)", "cards"]
EMPTY = ("Nothing studied yet. Take a quiz on the Quiz tab: each question becomes a review card, and your "
         "answers and reviews show up here as mastery per section, reviews per day and cards coming due.")


def _label(section: str) -> str:
    return section if len(section) <= MAX_LABEL else section[: MAX_LABEL - 1].rstrip() + "…"


def day_label(day: str) -> str:
    """An ISO day as a short, unambiguous label: "Dec 5"."""
    d = date.fromisoformat(day)
    return f"{d:%b} {d.day}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def progress_data(service: StudyService, user: str) -> dict[str, Any]:
    """DataFrames for the three charts and the table, and the weak spots. The mastery chart has the
    reviewed sections only (a section never reviewed has no mastery yet: "–" in the table); counts are
    whole numbers; days are labelled "Dec 5", in order."""
    sections = service.study.mastery(user)
    activity = service.study.activity(user)
    reviewed = [s for s in sections if s["reviews"]]
    mastery = pd.DataFrame({"section": [_label(s["section"]) for s in reviewed],
                            "mastery": [float(s["mastery"]) for s in reviewed]})
    table = pd.DataFrame({
        "section": [s["section"] for s in sections],
        "document": [s["source"] for s in sections],
        "mastery": [_percent(s["mastery"]) if s["reviews"] else "–" for s in sections],
        # how many reviews were rated good or easy, of how many: counts, not a second percentage
        "reviews right": [f"{round((s['right'] or 0) * s['reviews'])} of {s['reviews']}" if s["reviews"] else "–"
                          for s in sections],
        "recall tomorrow (FSRS)": [_percent(s.get("recall_tomorrow")) for s in sections],
        "cards": [int(s["cards"]) for s in sections]}, columns=TABLE_COLUMNS)
    reviews = pd.DataFrame({"day": [day_label(d["day"]) for d in activity["reviews"]],
                            "reviews": [int(d["count"]) for d in activity["reviews"]]})
    due = pd.DataFrame({"day": [day_label(d["day"]) for d in activity["due"]],
                        "cards due": [int(d["count"]) for d in activity["due"]]})
    return {"mastery": mastery, "reviews": reviews, "due": due, "table": table,
            "weak": service.study.weak_sections(user), "sections": sections}


def summary_html(data: dict[str, Any], user: str = "") -> str:
    """The line above the charts: what was studied and the weak spots, or what to do first (no user name:
    the student knows who they are)."""
    sections = data["sections"]
    if not sections:
        return f'<div class="sb-progress-summary sb-progress-empty" data-sections="0">{render.esc(EMPTY)}</div>'
    reviews = sum(s["reviews"] for s in sections)
    cards = sum(s["cards"] for s in sections)
    weak = data["weak"]
    if not reviews:
        weak_txt = "None reviewed yet: answer them on the Quiz tab or in Review, and mastery shows up here."
    elif weak:
        weak_txt = ("Weak spots: " + "; ".join(render.esc(w["section"]) for w in weak)
                    + " — press “Quiz my weak spots” on the Quiz tab.")
    else:
        weak_txt = "No weak spots: every reviewed section is at or above 90% mastery."
    return (f'<div class="sb-progress-summary" data-sections="{len(sections)}" data-reviews="{reviews}">'
            f"{cards} card{'s' if cards != 1 else ''} in {len(sections)} section{'s' if len(sections) != 1 else ''}, "
            f"{reviews} review{'s' if reviews != 1 else ''}. {weak_txt}</div>")


def progress_outputs(service: StudyService, user: str) -> tuple[Any, ...]:
    """The tab's summary, its three charts' data and its table; when the study database cannot be read, the
    summary is its one sentence (and the fix) and the charts are empty."""
    try:
        data = progress_data(service, user)
    except StudybotError as exc:
        empty = pd.DataFrame({"section": [], "mastery": []})
        return (f'<div class="sb-progress-summary sb-error" data-sections="0">{render.esc(str(exc))}</div>', empty,
                pd.DataFrame({"day": [], "reviews": []}), pd.DataFrame({"day": [], "cards due": []}), pd.DataFrame())
    return summary_html(data), data["mastery"], data["reviews"], data["due"], data["table"]


def count_axis(counts: pd.Series) -> list[float]:
    """A count chart's y range: from 0 to the largest count, at least :data:`MIN_COUNT_AXIS`, so the axis
    has whole-number ticks (never 0.5 cards, nor "0.000000" on an all-zero chart)."""
    top = int(counts.max()) if len(counts) else 0
    return [0, float(max(MIN_COUNT_AXIS, top))]


def chart_updates(summary: str, mastery: pd.DataFrame, reviews: pd.DataFrame, due: pd.DataFrame,
                  table: pd.DataFrame) -> tuple[Any, ...]:
    """What the tab's components get: a chart with nothing to draw is hidden (before any study, all of them
    and the table: the summary says why), count axes in whole numbers, days in calendar order."""
    has_reviews = bool(len(reviews)) and int(reviews["reviews"].sum()) > 0
    has_due = bool(len(due)) and int(due["cards due"].sum()) > 0
    return (
        summary,
        gr.update(value=mastery, visible=bool(len(mastery))),
        gr.update(value=reviews, visible=has_reviews, y_lim=count_axis(reviews["reviews"] if has_reviews else
                                                                       pd.Series(dtype=int)),
                  sort=list(reviews["day"]) if len(reviews) else None),
        gr.update(value=due, visible=has_due, y_lim=count_axis(due["cards due"] if has_due else pd.Series(dtype=int)),
                  sort=list(due["day"]) if len(due) else None),
        gr.update(value=table, visible=bool(len(table))),
    )


def build_progress_tab(service: StudyService) -> dict[str, Any]:
    with gr.Tab("Progress", id="progress") as tab:
        summary = gr.HTML("", elem_id="sb-progress-summary")
        refresh_btn = gr.Button("Refresh", size="sm", elem_id="sb-progress-refresh")
        mastery = gr.BarPlot(None, x="section", y="mastery", title="Mastery by section (recent reviews right)",
                             y_lim=[0, 1], y_axis_format=".0%", x_label_angle=-30, sort="y", height=320,
                             visible=False, elem_id="sb-progress-mastery")
        with gr.Row():
            reviews = gr.BarPlot(None, x="day", y="reviews", title="Reviews per day (last 14 days)", height=260,
                                 y_lim=[0, MIN_COUNT_AXIS], y_axis_format="d", x_label_angle=-45, x_title="",
                                 visible=False, elem_id="sb-progress-reviews")
            due = gr.BarPlot(None, x="day", y="cards due", title="Cards due (next 14 days)", height=260,
                             y_lim=[0, MIN_COUNT_AXIS], y_axis_format="d", x_label_angle=-45, x_title="",
                             visible=False, elem_id="sb-progress-due")
        table = gr.Dataframe(interactive=False, elem_id="sb-progress-table", label="Sections, weakest first",
                             visible=False)

    outputs = [summary, mastery, reviews, due, table]

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        return chart_updates(*progress_outputs(service, user_of(request)))

    tab.select(on_load, None, outputs, api_visibility="private", queue=False)
    refresh_btn.click(on_load, None, outputs, api_visibility="private", queue=False)
    return {"tab": tab, "summary": summary, "mastery": mastery, "reviews": reviews, "due": due, "table": table,
            "load": on_load, "outputs": outputs}
