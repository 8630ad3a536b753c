"""The Review tab: the study cards due now (FSRS), one at a time. Show the question, turn it over (the answer,
the explanation and the cited passage), grade it Again / Hard / Good / Easy; the card's next review date is
shown and the next due card comes up. The page's flow is plain functions over :class:`ReviewState`
(:func:`load`, :func:`reveal`, :func:`rate`), tested without a browser; a study database that cannot be read
shows its one sentence (and the fix) instead of a card."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from rag.study.store import RATINGS, DueCard
from ui import render
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = ""

if TYPE_CHECKING:
    from ui.service import StudyService


@dataclass(frozen=True)
class ReviewState:
    item_id: int | None = None
    revealed: bool = False
    due: int = 0  # cards due when the current one was loaded
    message: str = ""
    tz: str = ""  # the browser's time zone (IANA name), for due times in the student's clock and days


@dataclass
class ReviewView:
    status_html: str
    question_html: str
    answer_html: str
    can_reveal: bool
    can_rate: bool


# The browser's time zone, read when the tab opens (it becomes the hidden textbox's value for the event).
TZ_JS = "(tz) => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { return ''; } }"


def _when(dt: datetime | None, tz: str = "", now: datetime | None = None) -> str:
    """A due time as a student says it, in their time zone: "in 10 minutes", "tomorrow at 09:00"."""
    return render.relative_time(dt, now, tz or None)


def _question_html(card: DueCard, due: int) -> str:
    item = card.item
    stale = ('<div class="sb-review-stale" style="color:#b45309">Its passage changed in a re-ingest since this '
             "card was made: check the answer against the passage.</div>") if card.stale else ""
    options = "".join(f'<li data-letter="{render.LETTERS[i]}"><span class="sb-quiz-letter">{render.LETTERS[i]})</span> '
                      f"{render.inline_markdown_html(o)}</li>" for i, o in enumerate(item.options[:4]))
    options = (f'<ul class="sb-review-options" style="list-style:none;padding-left:0;margin:6px 0">{options}</ul>'
               if options else "")
    return (f'<div class="sb-review-card" data-item="{card.item_id}" data-due="{due}">'
            f'<div class="sb-src-meta">{due} card{"s" if due != 1 else ""} due · {render.esc(card.section or card.source)}'
            f'</div><div class="sb-review-q" style="font-size:1.1em;font-weight:600;margin-top:4px">'
            f"{render.inline_markdown_html(item.question)}</div>{options}{stale}</div>")


def _answer_html(card: DueCard) -> str:
    """The back of the card: the answer (a multiple-choice one with its letter), the explanation (once: not
    when it only repeats the answer) and the cited passage, Markdown rendered and escaped."""
    item = card.item
    idx = item.answer_index
    if item.type == "mcq" and idx is not None and idx < len(render.LETTERS):
        answer = (f'<span class="sb-quiz-letter">{render.LETTERS[idx]})</span> {render.inline_markdown_html(item.answer)}'
                  ' <span class="sb-quiz-mark sb-right" style="color:#15803d;font-weight:600">✓ right</span>')
    else:
        answer = render.inline_markdown_html(item.answer)
    rows = [f'<div class="sb-review-answer"><b>Answer:</b> {answer}</div>']
    if item.explanation and not render.same_text(item.explanation, item.answer):
        rows.append(f'<div class="sb-review-explanation">{render.markdown_html(item.explanation)}</div>')
    rows.append(f'<div class="sb-quiz-cite">{render.esc(render.source_line(item.citation))}</div>')
    rows.append(f'<details class="sb-quiz-passage"><summary>Cited passage</summary>'
                f'<div class="sb-passage sb-md">{render.markdown_html(item.citation.text)}</div></details>')
    return "".join(rows)


def _card(service: StudyService, user: str, item_id: int | None) -> tuple[DueCard | None, int]:
    due = service.study.due(user)
    card = next((d for d in due if d.item_id == item_id), due[0] if due else None)
    return card, len(due)


def load(service: StudyService, user: str, message: str = "", tz: str = "") -> ReviewState:
    """The first card due now (or none); ``tz``: the browser's time zone, kept for the due times shown."""
    try:
        card, due = _card(service, user, None)
    except StudybotError as exc:
        return ReviewState(None, False, 0, str(exc), tz)
    return ReviewState(card.item_id if card else None, False, due, message, tz)


def reveal(state: ReviewState) -> ReviewState:
    return replace(state, revealed=state.item_id is not None, message="")


def rate(service: StudyService, user: str, state: ReviewState, rating: str) -> ReviewState:
    """Grade the current card (after it was turned over); the next due card comes up."""
    if state.item_id is None:
        return replace(state, message="Nothing to grade: no card is due.")
    if not state.revealed:
        return replace(state, message="Show the answer first, then grade how well you knew it.")
    try:
        nxt = service.study.review(user, state.item_id, rating)
    except StudybotError as exc:
        return replace(state, message=str(exc))
    return load(service, user, f"Graded {rating}: you will see that card again {_when(nxt, state.tz)}.", state.tz)


def view(service: StudyService, user: str, state: ReviewState) -> ReviewView:
    msg = f'<div class="sb-review-message">{render.esc(state.message)}</div>' if state.message else ""
    try:
        card, due = _card(service, user, state.item_id)
        nxt = service.study.next_due(user) if card is None else None
    except StudybotError as exc:
        return ReviewView(f'<div class="sb-review-message sb-error">{render.esc(str(exc))}</div>'
                          '<div class="sb-review-status" data-due="0"></div>',
                          '<div class="sb-empty">No card to review.</div>', "", False, False)
    if card is None:
        empty = ("No cards yet: take a quiz (Quiz tab) and its questions become cards here." if nxt is None
                 else f"Nothing is due now. The next card is due {_when(nxt, state.tz)}.")
        return ReviewView(msg + f'<div class="sb-review-status" data-due="0">{render.esc(empty)}</div>',
                          '<div class="sb-empty">No card to review.</div>', "", False, False)
    status = f'<div class="sb-review-status" data-due="{due}">{due} due now</div>'
    return ReviewView(msg + status, _question_html(card, due), _answer_html(card) if state.revealed else "",
                      not state.revealed, state.revealed)


def build_review_tab(service: StudyService) -> dict[str, Any]:
    with gr.Tab("Review", id="review") as tab:
        state = gr.State(ReviewState())
        tz = gr.Textbox("", visible=False, elem_id="sb-review-tz")
        gr.Markdown("Cards due today, scheduled by FSRS: recall the answer, turn the card over, grade yourself.")
        status = gr.HTML("", elem_id="sb-review-status")
        question = gr.HTML('<div class="sb-empty">No card to review.</div>', elem_id="sb-review-question")
        with gr.Row():
            show_btn = gr.Button("Show answer", variant="primary", interactive=False, elem_id="sb-review-show")
            refresh_btn = gr.Button("Refresh", size="sm", elem_id="sb-review-refresh")
        answer = gr.HTML("", elem_id="sb-review-answer")
        with gr.Row():
            buttons = {name: gr.Button(name.capitalize(), interactive=False, elem_id=f"sb-review-{name}")
                       for name in RATINGS}

    outputs = [state, status, question, answer, show_btn, *buttons.values()]

    def updates(st: ReviewState, user: str) -> tuple[Any, ...]:
        v = view(service, user, st)
        return (st, v.status_html, v.question_html, v.answer_html, gr.update(interactive=v.can_reveal),
                *(gr.update(interactive=v.can_rate) for _ in buttons))

    def on_load(tz_v: str | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        return updates(load(service, user, tz=str(tz_v or "")[:64]), user)

    def on_show(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
        return updates(reveal(st or ReviewState()), user_of(request))

    def rater(name: str) -> Any:
        def on_rate(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
            user = user_of(request)
            return updates(rate(service, user, st or ReviewState(), name), user)

        return on_rate

    tab.select(on_load, [tz], outputs, api_visibility="private", queue=False, js=TZ_JS)
    refresh_btn.click(on_load, [tz], outputs, api_visibility="private", queue=False, js=TZ_JS)
    show_btn.click(on_show, [state], outputs, api_visibility="private", queue=False)
    for name, btn in buttons.items():
        btn.click(rater(name), [state], outputs, api_visibility="private", queue=False)
    return {"tab": tab, "state": state, "status": status, "question": question, "answer": answer,
            "show": show_btn, "buttons": buttons, "load": on_load, "outputs": outputs}
