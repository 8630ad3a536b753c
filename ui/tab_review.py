"""The Review tab: the study cards due now (FSRS), one at a time. Show the question, turn it over (the answer,
the explanation and the cited passage), grade it Again / Hard / Good / Easy; the card's next review date is
shown and the next due card comes up. The card shown can be edited (its question and answer; its schedule and
history kept), suspended, buried until tomorrow or deleted (after a confirm step), each said in one sentence;
"Suspended / buried cards" lists the cards kept out of review and puts one back. The page's flow is plain
functions over :class:`ReviewState` (:func:`load`, :func:`reveal`, :func:`rate`, :func:`suspend`, :func:`bury`,
:func:`save_edit`, :func:`delete`, :func:`restore`), tested without a browser; a study database that cannot be
read shows its one sentence (and the fix) instead of a card."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from rag.quiz import type_of
from rag.study.store import RATINGS, CardInfo, DueCard
from ui import render
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = """
#sb-review-actions { justify-content: flex-start; gap: 8px; }
#sb-review-actions button { flex: 0 0 auto; min-width: 90px; max-width: 180px; }
.sb-review-hidden-list { list-style: none; padding-left: 0; margin: 4px 0; }
.sb-review-hidden-list li { margin: 2px 0; font-size: .9em; }
.sb-review-hidden-why { color: var(--body-text-color-subdued); margin-right: 4px; }
.sb-review-confirm-q { font-weight: 600; }
"""

if TYPE_CHECKING:
    from ui.service import StudyService


@dataclass(frozen=True)
class ReviewState:
    item_id: int | None = None
    revealed: bool = False
    due: int = 0  # cards due when the current one was loaded
    message: str = ""
    tz: str = ""  # the browser's time zone (IANA name), for due times in the student's clock and days
    mode: str = ""  # "edit": the card's editor is open; "delete": deleting it waits for "Yes, delete"


@dataclass
class ReviewView:
    status_html: str
    question_html: str
    answer_html: str
    can_reveal: bool
    can_rate: bool
    can_act: bool = False  # a card is shown: Edit, Suspend, Bury and Delete apply to it
    mode: str = ""  # the editor ("edit") or the delete question ("delete") shown under the card
    confirm_html: str = ""  # the delete question, naming the card and its reviews
    edit_question: str = ""  # the editor's texts: the card's question and answer as they are
    edit_answer: str = ""


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
    if type_of(item).choice and idx is not None and idx < len(render.LETTERS):
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
    confirm = ""
    if state.mode == "delete":
        try:
            n = service.study.card(user, card.item_id).reviews
        except StudybotError as exc:
            return _view_error(msg + status, card, due, state, str(exc))
        what = f"this card (“{render.esc(short(card.item.question))}”)" + (f" and its {_reviews(n)}" if n else "")
        confirm = (f'<div class="sb-review-confirm-q" data-item="{card.item_id}">Delete {what}? A quiz will not '
                   "ask its question again, and this cannot be undone.</div>")
    return ReviewView(msg + status, _question_html(card, due), _answer_html(card) if state.revealed else "",
                      not state.revealed, state.revealed, True, state.mode, confirm, card.item.question,
                      card.item.answer)


def _view_error(status_html: str, card: DueCard, due: int, state: ReviewState, error: str) -> ReviewView:
    """The card as it is with ``error`` (one sentence) under the status instead of the delete question."""
    status = status_html + f'<div class="sb-review-message sb-error">{render.esc(error)}</div>'
    return ReviewView(status, _question_html(card, due), _answer_html(card) if state.revealed else "",
                      not state.revealed, state.revealed, True, "")


# -- the card shown: edit, suspend, bury, delete; the cards kept out of review put back ----------------------
SHORT = 70  # a question quoted in a message: at most this many characters (set by hand, not measured)


def _reviews(n: int) -> str:
    return f"{n} review{'s' if n != 1 else ''}"


def short(question: str, limit: int = SHORT) -> str:
    """A question as a message quotes it: plain text (no Markdown markers), on one line, cut with "…"."""
    text = " ".join(render.markdown_plain(question).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _no_card(state: ReviewState, what: str) -> ReviewState:
    return replace(state, mode="", message=f"No card to {what}: no card is shown.")


def _gone(service: StudyService, user: str, state: ReviewState, what: str) -> ReviewState | None:
    """None while the card of ``state`` is still due (the one on screen); else the next card, saying that
    nothing was ``what`` (it was reviewed, suspended or deleted elsewhere meanwhile)."""
    try:
        due = service.study.due(user)
    except StudybotError as exc:
        return replace(state, mode="", message=str(exc))
    if any(d.item_id == state.item_id for d in due):
        return None
    return load(service, user, f"That card is no longer due (it was reviewed or changed in another window), so nothing was "
                               f"{what}.", state.tz)


def start_edit(state: ReviewState) -> ReviewState:
    """Open the editor under the card (its question and answer as they are)."""
    if state.item_id is None:
        return _no_card(state, "edit")
    return replace(state, mode="edit", message="")


def ask_delete(state: ReviewState) -> ReviewState:
    """The first click on Delete: ask, naming the card; nothing is deleted until "Yes, delete"."""
    if state.item_id is None:
        return _no_card(state, "delete")
    return replace(state, mode="delete", message="")


def cancel(state: ReviewState, what: str = "") -> ReviewState:
    """Close the editor or the delete question; ``what`` says what was left as it was."""
    said = {"edit": "Edit cancelled: the card is unchanged.", "delete": "Nothing was deleted."}.get(what, "")
    return replace(state, mode="", message=said)


def save_edit(service: StudyService, user: str, state: ReviewState, question: str | None,
              answer: str | None) -> ReviewState:
    """Save the editor's question and answer (what changed of them); the card stays on screen with its
    schedule and reviews. An empty text or another card's question: its one sentence, the editor open."""
    if state.item_id is None:
        return _no_card(state, "edit")
    if (gone := _gone(service, user, state, "saved")) is not None:
        return gone
    try:
        card = service.study.card(user, state.item_id)
        q = question if question is not None and question.strip() != card.item.question else None
        a = answer if answer is not None and answer.strip() != card.item.answer else None
        if q is None and a is None:
            return replace(state, mode="", message="Nothing changed: the card keeps its question and answer.")
        card = service.edit_card(user, state.item_id, q, a)
    except StudybotError as exc:
        return replace(state, mode="edit", message=str(exc))
    what = " and ".join(w for w, new in (("question", q), ("answer", a)) if new is not None)
    kept = f"its schedule and its {_reviews(card.reviews)} are kept" if card.reviews else "its schedule is kept"
    return replace(state, mode="", message=f"Saved the card's new {what}: {kept}.")


def suspend(service: StudyService, user: str, state: ReviewState) -> ReviewState:
    """Suspend the card shown (never due until put back); the next due card comes up."""
    if state.item_id is None:
        return _no_card(state, "suspend")
    if (gone := _gone(service, user, state, "suspended")) is not None:
        return gone
    try:
        card = service.suspend_card(user, state.item_id, True)
    except StudybotError as exc:
        return replace(state, mode="", message=str(exc))
    return load(service, user, f"Suspended “{short(card.item.question)}”: it stays out of review until you put it "
                               "back under “Suspended / buried cards”.", state.tz)


def bury(service: StudyService, user: str, state: ReviewState) -> ReviewState:
    """Bury the card shown until the student's next local midnight (the browser's time zone); the next due
    card comes up."""
    if state.item_id is None:
        return _no_card(state, "bury")
    if (gone := _gone(service, user, state, "buried")) is not None:
        return gone
    try:
        card = service.bury_card(user, state.item_id, tz=render.time_zone(state.tz))
    except StudybotError as exc:
        return replace(state, mode="", message=str(exc))
    return load(service, user, f"Buried “{short(card.item.question)}” until tomorrow: it comes back "
                               f"{_when(card.buried_until, state.tz)}.", state.tz)


def delete(service: StudyService, user: str, state: ReviewState) -> ReviewState:
    """Delete the card shown with its reviews (after :func:`ask_delete`); the next due card comes up."""
    if state.item_id is None:
        return _no_card(state, "delete")
    if state.mode != "delete":
        return ask_delete(state)
    if (gone := _gone(service, user, state, "deleted")) is not None:
        return gone
    try:
        card = service.delete_card(user, state.item_id)
    except StudybotError as exc:
        return replace(state, mode="", message=str(exc))
    with_reviews = f" with its {_reviews(card.reviews)}" if card.reviews else ""
    return load(service, user, f"Deleted “{short(card.item.question)}”{with_reviews}: a quiz will not ask it again.",
                state.tz)


def hidden_cards(service: StudyService, user: str) -> list[CardInfo]:
    """The cards kept out of review: suspended ones, then those buried until a later time."""
    seen: set[int] = set()
    out: list[CardInfo] = []
    for which in ("suspended", "buried"):
        for card in service.cards(user, which):
            if card.item_id not in seen:
                seen.add(card.item_id)
                out.append(card)
    return out


def _buried(card: CardInfo) -> bool:
    return card.buried_until is not None and card.buried_until > datetime.now(UTC)


def _why_hidden(card: CardInfo, tz: str = "") -> str:
    if card.suspended:
        return "Suspended (and buried)" if _buried(card) else "Suspended"
    return f"Buried, back {_when(card.buried_until, tz)}"


def hidden_html(cards: list[CardInfo], tz: str = "") -> str:
    """The list of cards kept out of review, each with why (suspended, or buried until when)."""
    if not cards:
        return ('<div class="sb-review-hidden sb-empty" data-count="0">No suspended or buried cards: every card '
                "comes up when it is due.</div>")
    rows = "".join(f'<li data-item="{c.item_id}"><span class="sb-review-hidden-why">{render.esc(_why_hidden(c, tz))}:'
                   f"</span>{render.esc(short(c.item.question))}</li>" for c in cards)
    return (f'<div class="sb-review-hidden" data-count="{len(cards)}">{len(cards)} card'
            f"{'s' if len(cards) != 1 else ''} kept out of review:"
            f'<ul class="sb-review-hidden-list">{rows}</ul></div>')


def hidden_choices(cards: list[CardInfo], tz: str = "") -> list[tuple[str, int]]:
    return [(f"{_why_hidden(c, tz)}: {short(c.item.question, 60)}", c.item_id) for c in cards]


def restore(service: StudyService, user: str, state: ReviewState, item_id: int | None) -> ReviewState:
    """Put a suspended or buried card back in review (unsuspended and unburied); it is due as FSRS scheduled
    it. The card shown stays; with none shown, the first due card comes up."""
    if item_id is None:
        return replace(state, message="Choose a card from the list first, then put it back.")
    try:
        card = service.study.card(user, int(item_id))
        done = []
        if card.suspended:
            card = service.suspend_card(user, card.item_id, False)
            done.append("unsuspended")
        if _buried(card):
            card = service.unbury_card(user, card.item_id)
            done.append("unburied")
    except StudybotError as exc:
        return replace(state, message=str(exc))
    said = (f"Put “{short(card.item.question)}” back in review ({' and '.join(done) or 'it was not kept out'}): "
            f"it is due {_when(card.due, state.tz)}.")
    if state.item_id is None:
        return load(service, user, said, state.tz)
    return replace(state, message=said)


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
        with gr.Row(elem_id="sb-review-actions"):
            actions = {"edit": gr.Button("Edit", size="sm", interactive=False, elem_id="sb-review-edit"),
                       "suspend": gr.Button("Suspend", size="sm", interactive=False, elem_id="sb-review-suspend"),
                       "bury": gr.Button("Bury until tomorrow", size="sm", interactive=False,
                                         elem_id="sb-review-bury"),
                       "delete": gr.Button("Delete…", size="sm", variant="stop", interactive=False,
                                           elem_id="sb-review-delete")}
        with gr.Group(visible=False, elem_id="sb-review-editor") as editor:
            edit_q = gr.Textbox(label="Question", lines=2, max_lines=8, elem_id="sb-review-edit-question")
            edit_a = gr.Textbox(label="Answer", lines=2, max_lines=8, elem_id="sb-review-edit-answer")
            with gr.Row():
                save_btn = gr.Button("Save changes", variant="primary", size="sm", elem_id="sb-review-edit-save")
                edit_cancel = gr.Button("Cancel", size="sm", elem_id="sb-review-edit-cancel")
        with gr.Group(visible=False, elem_id="sb-review-confirm-box") as confirm_box:
            confirm_q = gr.HTML("", elem_id="sb-review-confirm")
            with gr.Row():
                confirm_btn = gr.Button("Yes, delete", variant="stop", size="sm", elem_id="sb-review-delete-yes")
                confirm_cancel = gr.Button("Cancel", size="sm", elem_id="sb-review-delete-cancel")
        with gr.Accordion("Suspended / buried cards", open=False, elem_id="sb-review-hidden-box"):
            hidden = gr.HTML("", elem_id="sb-review-hidden")
            with gr.Row():
                hidden_pick = gr.Dropdown(choices=[], value=None, label="Card", interactive=True, scale=3,
                                          elem_id="sb-review-hidden-pick")
                restore_btn = gr.Button("Put back in review", size="sm", interactive=False, scale=1,
                                        elem_id="sb-review-restore")

    outputs = [state, status, question, answer, show_btn, *buttons.values(), *actions.values(), editor, edit_q,
               edit_a, confirm_box, confirm_q, hidden, hidden_pick, restore_btn]

    def updates(st: ReviewState, user: str, fill: bool = False) -> tuple[Any, ...]:
        """Every component of the tab for ``st``; ``fill``: the editor's boxes get the card's texts (when it
        opens; otherwise what the student typed stays)."""
        v = view(service, user, st)
        try:
            kept_out = hidden_cards(service, user)
        except StudybotError as exc:
            listing, choices = f'<div class="sb-review-hidden sb-error">{render.esc(str(exc))}</div>', []
        else:
            listing, choices = hidden_html(kept_out, st.tz), hidden_choices(kept_out, st.tz)
        editing = v.can_act and v.mode == "edit"
        return (st, v.status_html, v.question_html, v.answer_html, gr.update(interactive=v.can_reveal),
                *(gr.update(interactive=v.can_rate) for _ in buttons),
                *(gr.update(interactive=v.can_act) for _ in actions),
                gr.update(visible=editing),
                gr.update(value=v.edit_question) if fill and editing else gr.update(),
                gr.update(value=v.edit_answer) if fill and editing else gr.update(),
                gr.update(visible=v.can_act and v.mode == "delete"), v.confirm_html,
                listing, gr.update(choices=choices, value=choices[0][1] if choices else None),
                gr.update(interactive=bool(choices)))

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

    def on_edit(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
        return updates(start_edit(st or ReviewState()), user_of(request), fill=True)

    def on_save(st: ReviewState | None, q: str | None, a: str | None, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        return updates(save_edit(service, user, st or ReviewState(), q, a), user)

    def acting(action: Any) -> Any:
        def on_action(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
            user = user_of(request)
            return updates(action(service, user, st or ReviewState()), user)

        return on_action

    def cancelling(what: str) -> Any:
        def on_cancel(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
            return updates(cancel(st or ReviewState(), what), user_of(request))

        return on_cancel

    def on_ask_delete(st: ReviewState | None, request: gr.Request) -> tuple[Any, ...]:
        return updates(ask_delete(st or ReviewState()), user_of(request))

    def on_restore(st: ReviewState | None, pick: Any, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        return updates(restore(service, user, st or ReviewState(), int(pick) if pick not in (None, "") else None),
                       user)

    private: dict[str, Any] = {"api_visibility": "private", "queue": False}
    tab.select(on_load, [tz], outputs, js=TZ_JS, **private)
    refresh_btn.click(on_load, [tz], outputs, js=TZ_JS, **private)
    show_btn.click(on_show, [state], outputs, **private)
    for name, btn in buttons.items():
        btn.click(rater(name), [state], outputs, **private)
    actions["edit"].click(on_edit, [state], outputs, **private)
    actions["suspend"].click(acting(suspend), [state], outputs, **private)
    actions["bury"].click(acting(bury), [state], outputs, **private)
    actions["delete"].click(on_ask_delete, [state], outputs, **private)
    save_btn.click(on_save, [state, edit_q, edit_a], outputs, **private)
    edit_cancel.click(cancelling("edit"), [state], outputs, **private)
    confirm_btn.click(acting(delete), [state], outputs, **private)
    confirm_cancel.click(cancelling("delete"), [state], outputs, **private)
    restore_btn.click(on_restore, [state, hidden_pick], outputs, **private)
    return {"tab": tab, "state": state, "status": status, "question": question, "answer": answer,
            "show": show_btn, "buttons": buttons, "actions": actions, "editor": editor, "confirm": confirm_box,
            "hidden": hidden, "hidden_pick": hidden_pick, "restore": restore_btn, "load": on_load,
            "outputs": outputs}
