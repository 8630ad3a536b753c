"""The Progress tab: mastery per handbook section (the recency-weighted share of its reviews rated good or
easy; :meth:`rag.study.store.StudyStore.mastery`), reviews per day over the last two weeks and the cards due
over the next two, as Gradio bar plots, plus the table and the weak spots ("Quiz my weak spots" on the Quiz
tab draws on them). Before any study the tab says so in words instead of drawing empty charts; a chart with
nothing to draw is hidden. :func:`progress_data` is the tab's data and :func:`progress_outputs` what it shows
(a study database that cannot be read: its one sentence), tested without a browser.

Below them, as in Anki: a review calendar (reviews per day over the last 12 months in the browser's time zone,
a heatmap drawn as an HTML grid with a legend and a tooltip per day: :func:`calendar_html`), true retention
(the share of reviews of mature cards passed, with the counts: :func:`retention_html`), the cards due over the
next 30 days (:func:`forecast_html`), and the review schedule: desired retention and "Optimise my schedule"
(:func:`schedule_html`, :func:`save_retention`, :func:`optimize`). :func:`figures` is what they show."""

from __future__ import annotations

import math
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from rag.errors import StudybotError
from rag.settings import RETENTION_MAX, RETENTION_MIN
from ui import render
from ui.tab_review import TZ_JS
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = """
.sb-fig { margin: 4px 0 12px 0; }
.sb-fig h4 { margin: 0 0 4px 0; font-size: 1em; }
.sb-fig-line { font-size: .9em; margin: 2px 0 6px 0; }
.sb-fig-note { font-size: .85em; color: var(--body-text-color-subdued); margin: 4px 0; }
.sb-cal-scroll { overflow-x: auto; padding-bottom: 4px; }
.sb-cal-grid { display: grid; grid-auto-columns: 12px; grid-template-rows: 14px repeat(7, 12px); gap: 2px;
               width: max-content; font-size: 10px; line-height: 12px; }
.sb-cal-day { display: block; width: 12px; height: 12px; border-radius: 2px; }
.sb-cal-today { outline: 2px solid var(--body-text-color); outline-offset: -1px; }
.sb-cal-wd, .sb-cal-month { color: var(--body-text-color-subdued); white-space: nowrap; }
.sb-cal-wd { padding-right: 4px; }
.sb-cal-l0 { background: var(--background-fill-secondary); box-shadow: inset 0 0 0 1px var(--border-color-primary); }
.sb-cal-l1 { background: #9be9a8; } .sb-cal-l2 { background: #40c463; }
.sb-cal-l3 { background: #30a14e; } .sb-cal-l4 { background: #216e39; }
.sb-cal-legend { display: flex; align-items: center; gap: 3px; font-size: .8em; margin-top: 4px;
                 color: var(--body-text-color-subdued); }
.sb-cal-legend .sb-cal-day { display: inline-block; }
.sb-ret-table { border-collapse: collapse; font-size: .9em; margin: 4px 0; }
.sb-ret-table th, .sb-ret-table td { border: 1px solid var(--border-color-primary); padding: 2px 8px;
                                     text-align: left; }
.sb-fc-bars { display: flex; align-items: flex-end; gap: 2px; height: 90px;
              border-bottom: 1px solid var(--border-color-primary); }
.sb-fc-bar { flex: 1 1 0; min-width: 6px; display: flex; flex-direction: column; justify-content: flex-end;
             height: 100%; }
.sb-fc-fill { background: var(--color-accent); border-radius: 2px 2px 0 0; min-height: 0; }
.sb-fc-labels { display: flex; gap: 2px; font-size: 10px; color: var(--body-text-color-subdued); }
.sb-fc-labels span { flex: 1 1 0; min-width: 6px; white-space: nowrap; overflow: visible; }
.sb-sched-warning { color: #b45309; font-weight: 600; }
"""

if TYPE_CHECKING:
    from ui.service import StudyService

# A section's name in a chart is cut to this many characters: set by hand with the Progress tab (2026-12-02), not
# measured.
MAX_LABEL = 40
# A count axis reaches at least 5, so its ticks are whole numbers (0, 1, ... 5): a design choice, not tuned.
MIN_COUNT_AXIS = 5
TABLE_COLUMNS = ["section", "document", "mastery", "reviews right", "recall tomorrow (FSRS)", "cards"]
# The review calendar's span and the due forecast's: a year back, a month ahead. Set by hand with the Progress tab
# (2026-12-06), not tuned.
CALENDAR_MONTHS = 12
FORECAST_DAYS = 30  # set by hand, as above
RECENT_DAYS = 30  # true retention: the last month beside all time (Anki's table has both)
WEEKDAYS = ("Mon", "", "Wed", "", "Fri", "", "")
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


# -- as in Anki: review calendar, true retention, due forecast, the review schedule -------------------------
def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _level(n: int, top: int) -> int:
    """A day's shade, 0 (no reviews) to 4 (the busiest quarter of the scale up to ``top`` reviews)."""
    return 0 if n <= 0 or top <= 0 else min(4, max(1, math.ceil(4 * n / top)))


def _level_title(level: int, top: int) -> str:
    if level == 0:
        return "no reviews"
    lo, hi = math.floor(top * (level - 1) / 4) + 1, math.floor(top * level / 4)
    if lo > hi:
        return "not used at this scale"
    return f"{_plural(hi, 'review')} a day" if lo == hi else f"{lo}-{hi} reviews a day"


def calendar_html(cal: dict[str, Any], tz_name: str = "") -> str:
    """The review calendar (:meth:`StudyService.review_calendar`) as a heatmap: a column per week (Monday on
    top), a square per day shaded by its reviews with a tooltip ("2026-11-03: 12 reviews"), month names
    above, a legend and the totals and streaks in words; before any review, a sentence instead."""
    days = cal.get("days") or []
    if not cal.get("total") or not days:
        return ('<div class="sb-fig sb-cal sb-cal-empty" data-total="0"><h4>Review calendar</h4>'
                '<div class="sb-fig-line">No reviews in the last 12 months yet: each card you grade in Review '
                "(or answer in a quiz) adds to its day here.</div></div>")
    first = date.fromisoformat(days[0]["day"])
    today = date.fromisoformat(days[-1]["day"])
    top = max(int(d["count"]) for d in days)
    offset = first.weekday()
    cells = [f'<span class="sb-cal-wd" style="grid-column:1;grid-row:{r + 2}">{w}</span>'
             for r, w in enumerate(WEEKDAYS) if w]
    for i, d in enumerate(days):
        day, n = date.fromisoformat(d["day"]), int(d["count"])
        col, row = 2 + (offset + i) // 7, 2 + (offset + i) % 7
        if day.day == 1 or (i == 0 and day.day <= 10):
            cells.append(f'<span class="sb-cal-month" style="grid-column:{col} / span 4;grid-row:1">'
                         f"{day:%b}</span>")
        today_cls = " sb-cal-today" if day == today else ""
        tip = f"{day.isoformat()}: {_plural(n, 'review')}"
        cells.append(f'<span class="sb-cal-day sb-cal-l{_level(n, top)}{today_cls}" style="grid-column:{col};'
                     f'grid-row:{row}" data-day="{day.isoformat()}" data-count="{n}" title="{render.esc(tip)}">'
                     "</span>")
    legend = "".join(f'<span class="sb-cal-day sb-cal-l{k}" title="{render.esc(_level_title(k, top))}"></span>'
                     for k in range(5))
    total, studied = int(cal["total"]), int(cal["days_studied"])
    per_day = total / studied if studied else 0.0
    streak, longest = int(cal["current_streak"]), int(cal["longest_streak"])
    line = (f"{_plural(total, 'review')} on {studied} of {_plural(len(days), 'day')}, {per_day:.1f} a day on the "
            f"days you studied; current streak {_plural(streak, 'day')}, longest {_plural(longest, 'day')}.")
    zone = f" Days are in your browser's time zone ({render.esc(tz_name)})." if render.time_zone(tz_name) else ""
    return (f'<div class="sb-fig sb-cal" data-total="{total}" data-days="{len(days)}">'
            f"<h4>Review calendar (last {CALENDAR_MONTHS} months)</h4>"
            f'<div class="sb-fig-line">{render.esc(line)}</div>'
            f'<div class="sb-cal-scroll"><div class="sb-cal-grid" role="img" aria-label="{render.esc(line)}">'
            f'{"".join(cells)}</div></div>'
            f'<div class="sb-cal-legend">Less {legend} More (darkest: {_plural(top, "review")} a day)</div>'
            f'<div class="sb-fig-note">Hover a day for its reviews.{zone}</div></div>')


def _share(bucket: dict[str, Any]) -> str:
    n = int(bucket["reviews"])
    return "–" if not n else f"{bucket['passed'] / n:.0%} ({bucket['passed']:,} of {n:,})"


def retention_html(recent: dict[str, Any], alltime: dict[str, Any], desired: float | None = None) -> str:
    """True retention (:meth:`StudyService.true_retention`, the last :data:`RECENT_DAYS` days and all time):
    the mature cards' share of reviews passed in a sentence with its counts, young / mature / all in a small
    table, and what "mature" means; before any review that counts, a sentence instead."""
    mature_days = int(alltime["mature_days"])  # study.mature_days, as true_retention reports it
    meaning = (f"True retention is the share of reviews passed (any grade but Again), counting only reviews of "
               f"cards past their learning steps; a card is mature when it was scheduled {mature_days} days or "
               "more after its previous review (Anki's definition), young below that.")
    if desired is not None:
        meaning += (f" Your desired retention is {desired:.2f}: a mature true retention near it means the "
                    "schedule works as set.")
    total = alltime["total"]
    if not total["reviews"]:
        return ('<div class="sb-fig sb-ret sb-ret-empty" data-reviews="0"><h4>True retention</h4>'
                '<div class="sb-fig-line">No true retention yet: it counts reviews of cards past their learning '
                "steps (a day or more after the card's previous review), so it shows up once you review cards "
                "again on later days.</div>"
                f'<div class="sb-fig-note">{render.esc(meaning)}</div></div>')
    mature, young = alltime["mature"], alltime["young"]
    if mature["reviews"]:
        head = (f"Mature cards: {mature['passed'] / mature['reviews']:.0%} of reviews passed "
                f"({mature['passed']:,} of {_plural(int(mature['reviews']), 'review')}, all time).")
    else:
        head = (f"No mature card reviewed yet (a card is mature from an interval of {mature_days} days); young "
                f"cards: {young['passed'] / young['reviews']:.0%} of reviews passed ({young['passed']:,} of "
                f"{_plural(int(young['reviews']), 'review')}).")
    rows = "".join(f"<tr><th>{render.esc(label)}</th><td>{render.esc(_share(recent[key]))}</td>"
                   f"<td>{render.esc(_share(alltime[key]))}</td></tr>"
                   for key, label in (("young", f"Young (interval under {mature_days} days)"),
                                      ("mature", f"Mature ({mature_days} days or more)"), ("total", "All")))
    return (f'<div class="sb-fig sb-ret" data-reviews="{int(total["reviews"])}" '
            f'data-mature-reviews="{int(mature["reviews"])}" data-mature-passed="{int(mature["passed"])}">'
            f'<h4>True retention</h4><div class="sb-fig-line">{render.esc(head)}</div>'
            f'<table class="sb-ret-table"><tr><th></th><th>last {RECENT_DAYS} days</th><th>all time</th></tr>'
            f'{rows}</table><div class="sb-fig-note">{render.esc(meaning)}</div></div>')


def forecast_html(days: list[dict[str, Any]], has_cards: bool = True) -> str:
    """The cards due per day over the next :data:`FORECAST_DAYS` days (:meth:`StudyService.due_forecast`,
    today first with the overdue ones) as small bars with a tooltip each and the totals in words; with none
    due, a sentence instead."""
    counts = [int(d["count"]) for d in days]
    total = sum(counts)
    if not total:
        said = (f"No cards come due in the next {FORECAST_DAYS} days." if has_cards else
                "No cards yet: take a quiz (Quiz tab) and its questions become cards that come due here.")
        return (f'<div class="sb-fig sb-fc sb-fc-empty" data-total="0"><h4>Cards due (next {FORECAST_DAYS} days)'
                f'</h4><div class="sb-fig-line">{render.esc(said)}</div></div>')
    top = max(counts)
    bars, labels = [], []
    for i, d in enumerate(days):
        n = int(d["count"])
        when = f"today ({d['day']})" if i == 0 else d["day"]
        extra = ", overdue ones included" if i == 0 else ""
        title = f"{when}: {_plural(n, 'card')} due{extra}"
        bars.append(f'<div class="sb-fc-bar" data-day="{render.esc(d["day"])}" data-count="{n}" '
                    f'title="{render.esc(title)}"><div class="sb-fc-fill" style="height:{round(100 * n / top)}%">'
                    "</div></div>")
        labels.append(f"<span>{'today' if i == 0 else render.esc(day_label(d['day'])) if i % 7 == 0 else ''}</span>")
    week = sum(counts[:7])
    line = (f"{_plural(total, 'card')} come due in the next {FORECAST_DAYS} days: {counts[0]:,} today (overdue ones "
            f"included), {week:,} within 7 days (today included); the busiest day has {_plural(top, 'card')}.")
    return (f'<div class="sb-fig sb-fc" data-total="{total}"><h4>Cards due (next {FORECAST_DAYS} days)</h4>'
            f'<div class="sb-fig-line">{render.esc(line)}</div>'
            f'<div class="sb-fc-bars" role="img" aria-label="{render.esc(line)}">{"".join(bars)}</div>'
            f'<div class="sb-fc-labels">{"".join(labels)}</div>'
            '<div class="sb-fig-note">Hover a bar for its day. Suspended cards never come due; a buried one '
            "on the day it comes back.</div></div>")


def _local_day(stamp: str, tz: tzinfo | None) -> str:
    """An ISO time as the student's calendar day ("2026-12-05")."""
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)[:10]
    return when.astimezone(tz).date().isoformat()


def parameters_origin(sched: dict[str, Any], tz: tzinfo | None = None) -> str:
    """Where the FSRS parameters in use come from, in one sentence: the defaults, or fitted on N reviews on
    a date (with the log-loss before and after)."""
    run = sched.get("optimized")
    if run:
        day, n = _local_day(run["at"], tz), _plural(int(run["reviews"]), "review")
        losses = f"log-loss {run['log_loss_before']:.4f} → {run['log_loss_after']:.4f}"
    if not sched["default_parameters"]:
        if run and run.get("adopted"):
            return f"FSRS parameters: fitted on your {n} on {day} ({losses})."
        if run:
            return (f"FSRS parameters: your own, fitted earlier; optimising again on {day} on {n} found no "
                    f"better fit ({losses}).")
        return "FSRS parameters: your own."
    if run:
        return f"FSRS parameters: the defaults; optimising on {day} on {n} found no better fit ({losses})."
    return "FSRS parameters: the defaults (not optimised on your reviews yet)."


def schedule_html(sched: dict[str, Any], tz: tzinfo | None = None) -> str:
    """The schedule in force (:meth:`StudyService.schedule`): the desired retention (and whether it is the
    default), where the parameters come from, what optimising needs, and the service's workload warning."""
    r = float(sched["desired_retention"])
    whose = "the default" if sched["default_retention"] else "your setting"
    counted, needed = int(sched["reviews_counted"]), int(sched["optimize_min_reviews"])
    count = (f"Reviews that count for optimising (a day or more after the card's previous one): {counted:,} of the "
             f"{needed:,} needed." if counted < needed else
             f"Reviews that count for optimising: {counted:,} (at least {needed:,} needed).")
    warning = (f'<div class="sb-sched-warning">{render.esc(sched["warning"])}</div>' if sched.get("warning") else "")
    return (f'<div class="sb-sched" data-retention="{r:.2f}" data-default-parameters='
            f'"{int(bool(sched["default_parameters"]))}">'
            f'<div class="sb-fig-line">Desired retention: <b>{r:.2f}</b> ({whose}): FSRS schedules each card to come '
            "back when your chance of recalling it has fallen to this.</div>"
            f'<div class="sb-fig-line sb-sched-origin">{render.esc(parameters_origin(sched, tz))}</div>'
            f'<div class="sb-fig-note">{render.esc(count)}</div>{warning}</div>')


def _message(text: str, error: bool = False) -> str:
    return f'<div class="sb-sched-message{" sb-error" if error else ""}">{render.esc(text)}</div>' if text else ""


def retention_preview(service: StudyService, user: str, value: float | None) -> str:
    """The service's workload warning for a desired retention the student is about to save (nothing at or
    below the warning's threshold)."""
    if value is None:
        return ""
    try:
        sched = service.schedule(user)
        warning = service.study.retention_warning(float(value), None if sched["default_parameters"]
                                                  else sched["parameters"])
    except StudybotError:
        return ""
    return f'<div class="sb-sched-warning">If you save it: {render.esc(warning)}</div>' if warning else ""


def save_retention(service: StudyService, user: str, value: float | None, tz_name: str = "") -> tuple[str, str]:
    """Set the desired retention: the schedule as it is now and one sentence on what changed (with the
    service's workload warning above its threshold), or the refusal's sentence."""
    tz = render.time_zone(tz_name)
    try:
        if value is None:
            raise ValueError
        sched = service.set_retention(user, float(value))
    except (StudybotError, ValueError, TypeError) as exc:
        said = str(exc) if isinstance(exc, StudybotError) else (
            f"Choose a desired retention from {RETENTION_MIN:.2f} to {RETENTION_MAX:.2f}, then save it.")
        try:
            current = schedule_html(service.schedule(user), tz)
        except StudybotError:
            current = ""
        return current, _message(said, error=True)
    said = (f"Desired retention set to {sched['desired_retention']:.2f}: each card's next interval is worked out "
            "for it (cards keep the due dates they have until you review them).")
    return schedule_html(sched, tz), _message(said)


def optimize(service: StudyService, user: str, tz_name: str = "") -> tuple[str, str]:
    """"Optimise my schedule": FSRS fitted on the student's reviews, said with the log-loss of the parameters
    in use and of the fitted ones and which are used from now on; below the minimum of reviews, the
    service's one-sentence refusal."""
    tz = render.time_zone(tz_name)
    try:
        sched = service.optimize_schedule(user)
    except StudybotError as exc:
        try:
            current = schedule_html(service.schedule(user), tz)
        except StudybotError:
            current = ""
        # the service's sentence names the user (for the CLI's --user); the page speaks to the student
        return current, _message(str(exc).replace(f"Optimising {user}'s schedule", "Optimising your schedule"),
                                 error=True)
    run = sched["optimization"]
    verdict = ("the fitted parameters predict your recall better and are used from now on" if run["adopted"] else
               "the fitted parameters predict your recall no better, so the ones in use stay")
    said = (f"Optimised on {_plural(int(run['reviews']), 'review')} in {run['seconds']} s: log-loss "
            f"{run['log_loss_before']:.4f} with the parameters in use, {run['log_loss_after']:.4f} fitted (lower "
            f"is better); {verdict}.")
    return schedule_html(sched, tz), _message(said)


def figures(service: StudyService, user: str, tz_name: str = "") -> tuple[str, str, str, str, float]:
    """The calendar, true retention, forecast and schedule panels and the desired retention for the slider,
    days in the browser's time zone ``tz_name`` (none or unknown: this machine's); a study database that
    cannot be read: its one sentence in the calendar's place and nothing else."""
    tz = render.time_zone(tz_name)
    try:
        sched = service.schedule(user)
        desired = float(sched["desired_retention"])
        calendar = calendar_html(service.review_calendar(user, CALENDAR_MONTHS, tz=tz), tz_name if tz else "")
        retention = retention_html(service.true_retention(user, RECENT_DAYS), service.true_retention(user),
                                   desired)
        forecast = forecast_html(service.due_forecast(user, FORECAST_DAYS, tz=tz), bool(service.cards(user)))
    except StudybotError as exc:
        return (f'<div class="sb-fig sb-error" data-total="0">{render.esc(str(exc))}</div>', "", "", "",
                float(service.settings.study.desired_retention) if hasattr(service, "settings") else 0.9)
    return calendar, retention, forecast, schedule_html(sched, tz), desired


def build_progress_tab(service: StudyService) -> dict[str, Any]:
    with gr.Tab("Progress", id="progress") as tab:
        tz = gr.Textbox("", visible=False, elem_id="sb-progress-tz")
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
        calendar = gr.HTML("", elem_id="sb-progress-calendar")
        with gr.Row():
            retention = gr.HTML("", elem_id="sb-progress-retention")
            forecast = gr.HTML("", elem_id="sb-progress-forecast")
        with gr.Accordion("Review schedule (FSRS): desired retention, Optimise my schedule", open=True,
                          elem_id="sb-schedule"):
            sched = gr.HTML("", elem_id="sb-schedule-info")
            slider = gr.Slider(RETENTION_MIN, RETENTION_MAX, value=0.9, step=0.01, label="Desired retention",
                               info="The chance of recalling a card when it comes due: higher means more reviews "
                                    "a day (0.90 is FSRS's and Anki's default).", elem_id="sb-schedule-retention")
            preview = gr.HTML("", elem_id="sb-schedule-preview")
            with gr.Row():
                save_btn = gr.Button("Save retention", size="sm", elem_id="sb-schedule-save")
                optimize_btn = gr.Button("Optimise my schedule", size="sm", variant="primary",
                                         elem_id="sb-schedule-optimize")
            gr.Markdown("Optimising fits FSRS's parameters to your own reviews (up to a minute) and keeps them "
                        "only when they predict your recall better than the ones in use.", elem_id="sb-schedule-note")
            message = gr.HTML("", elem_id="sb-schedule-message")

    outputs = [summary, mastery, reviews, due, table]
    figure_outputs = [calendar, retention, forecast, sched, slider, preview, message]

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        return chart_updates(*progress_outputs(service, user_of(request)))

    def on_figures(tz_v: str | None, request: gr.Request) -> tuple[Any, ...]:
        cal, ret, fc, sch, desired = figures(service, user_of(request), str(tz_v or "")[:64])
        return cal, ret, fc, sch, desired, retention_preview(service, user_of(request), desired), ""

    def on_preview(value: float | None, request: gr.Request) -> str:
        return retention_preview(service, user_of(request), value)

    def on_save(value: float | None, tz_v: str | None, request: gr.Request) -> tuple[str, str]:
        return save_retention(service, user_of(request), value, str(tz_v or "")[:64])

    def on_optimize(tz_v: str | None, request: gr.Request) -> tuple[str, str]:
        return optimize(service, user_of(request), str(tz_v or "")[:64])

    private: dict[str, Any] = {"api_visibility": "private", "queue": False}
    for event in (tab.select, refresh_btn.click):
        event(on_load, None, outputs, **private)
        event(on_figures, [tz], figure_outputs, js=TZ_JS, **private)
    slider.change(on_preview, [slider], [preview], **private)
    save_btn.click(on_save, [slider, tz], [sched, message], **private)
    # the fit takes seconds to a minute: queued (its own slot, never the model's), the button off meanwhile
    optimize_btn.click(lambda: (gr.update(interactive=False, value="Optimising…"), ""), None,
                       [optimize_btn, message], **private).then(
        on_optimize, [tz], [sched, message], api_visibility="private", concurrency_limit=1,
        concurrency_id="sb-optimize").then(
        lambda: gr.update(interactive=True, value="Optimise my schedule"), None, [optimize_btn], **private)
    return {"tab": tab, "summary": summary, "mastery": mastery, "reviews": reviews, "due": due, "table": table,
            "calendar": calendar, "retention": retention, "forecast": forecast, "schedule": sched,
            "slider": slider, "load": on_load, "figures": on_figures, "outputs": outputs,
            "figure_outputs": figure_outputs}
