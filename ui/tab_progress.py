"""The Progress tab: mastery per handbook section (the recency-weighted share of its reviews rated good or
easy; :meth:`rag.study.store.StudyStore.mastery`), reviews per day over
the last two weeks and the cards due over the next two, as Gradio bar plots, plus the table and the weak
spots ("Quiz my weak spots" on the Quiz tab draws on them). :func:`progress_data` is the tab's data and
:func:`progress_outputs` what it shows (a study database that cannot be read: its one sentence), tested without
a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from rag.errors import StudybotError
from ui import render
from ui.user import user_of

if TYPE_CHECKING:
    from ui.service import StudyService

MAX_LABEL = 40


def _label(section: str) -> str:
    return section if len(section) <= MAX_LABEL else section[: MAX_LABEL - 1].rstrip() + "…"


def progress_data(service: StudyService, user: str) -> dict[str, Any]:
    """DataFrames for the three charts and the table, and the weak spots."""
    sections = service.study.mastery(user)
    activity = service.study.activity(user)
    mastery = pd.DataFrame({"section": [_label(s["section"]) for s in sections],
                            "mastery": [s["mastery"] for s in sections]})
    table = pd.DataFrame({"section": [s["section"] for s in sections],
                          "document": [s["source"] for s in sections],
                          "mastery": [f"{s['mastery']:.0%}" for s in sections],
                          "right": ["–" if s["right"] is None else f"{s['right']:.0%}" for s in sections],
                          "recall now (FSRS)": ["–" if s["retrievability"] is None else f"{s['retrievability']:.0%}"
                                                for s in sections],
                          "reviews": [s["reviews"] for s in sections], "cards": [s["cards"] for s in sections]})
    reviews = pd.DataFrame({"day": [d["day"][5:] for d in activity["reviews"]],
                            "reviews": [d["count"] for d in activity["reviews"]]})
    due = pd.DataFrame({"day": [d["day"][5:] for d in activity["due"]],
                        "cards due": [d["count"] for d in activity["due"]]})
    return {"mastery": mastery, "reviews": reviews, "due": due, "table": table,
            "weak": service.study.weak_sections(user), "sections": sections}


def summary_html(data: dict[str, Any], user: str) -> str:
    sections = data["sections"]
    if not sections:
        return (f'<div class="sb-progress-summary" data-sections="0">No study history for {render.esc(user)} yet: '
                "take a quiz, then review its cards.</div>")
    reviews = sum(s["reviews"] for s in sections)
    weak = data["weak"]
    weak_txt = ("Weak spots: " + "; ".join(render.esc(w["section"]) for w in weak)
                + " — press “Quiz my weak spots” on the Quiz tab." if weak else "No weak spots: every reviewed "
                "section is at or above 90% mastery.")
    return (f'<div class="sb-progress-summary" data-sections="{len(sections)}" data-reviews="{reviews}">'
            f"{len(sections)} sections, {reviews} reviews. {weak_txt}</div>")


def progress_outputs(service: StudyService, user: str) -> tuple[Any, ...]:
    """The tab's summary, its three charts' data and its table; when the study database cannot be read, the
    summary is its one sentence (and the fix) and the charts are empty."""
    try:
        data = progress_data(service, user)
    except StudybotError as exc:
        empty = pd.DataFrame({"section": [], "mastery": []})
        return (f'<div class="sb-progress-summary sb-error" data-sections="0">{render.esc(str(exc))}</div>', empty,
                pd.DataFrame({"day": [], "reviews": []}), pd.DataFrame({"day": [], "cards due": []}), pd.DataFrame())
    return summary_html(data, user), data["mastery"], data["reviews"], data["due"], data["table"]


def build_progress_tab(service: StudyService) -> dict[str, Any]:
    with gr.Tab("Progress", id="progress") as tab:
        summary = gr.HTML("", elem_id="sb-progress-summary")
        refresh_btn = gr.Button("Refresh", size="sm", elem_id="sb-progress-refresh")
        mastery = gr.BarPlot(None, x="section", y="mastery", title="Mastery by section (recent reviews right)",
                             y_lim=[0, 1], x_label_angle=-30, sort="y", height=320, elem_id="sb-progress-mastery")
        with gr.Row():
            reviews = gr.BarPlot(None, x="day", y="reviews", title="Reviews per day (last 14 days)", height=240,
                                 elem_id="sb-progress-reviews")
            due = gr.BarPlot(None, x="day", y="cards due", title="Cards due (next 14 days)", height=240,
                             elem_id="sb-progress-due")
        table = gr.Dataframe(interactive=False, elem_id="sb-progress-table", label="Sections, weakest first")

    outputs = [summary, mastery, reviews, due, table]

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        return progress_outputs(service, user_of(request))

    tab.select(on_load, None, outputs, api_visibility="private", queue=False)
    refresh_btn.click(on_load, None, outputs, api_visibility="private", queue=False)
    return {"tab": tab, "summary": summary, "mastery": mastery, "reviews": reviews, "due": due, "table": table,
            "load": on_load, "outputs": outputs}
