"""The Quiz tab's page: what it shows for a :class:`ui.quiz_state.QuizState` (:func:`view`, all document text
HTML-escaped) and the Gradio wiring that maps components to the flow in :mod:`ui.quiz_state`. The UI talks
to :class:`ui.service.StudyService` only.

A quiz streams: its first question shows as soon as it exists (from the question bank at once, else made; an
MCQ quiz with nothing banked starts with a flashcard) and the rest are made on the server while the student
answers (:class:`ui.quiz_state.LiveQuiz`). One progress display (``.sb-work``) says what is being made: in the
question's place until the first question exists, then under the buttons ("Question 3 of 10 is being made");
Next waits, saying so, when the next question is not made yet. A line above the quiz says how many questions
the bank holds ready and whether it is being filled; the sections' figures are in an accordion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from rag.quiz import QuizItem, mcq_choice, type_choices, type_of
from rag.quiz.types import DEFAULT_TYPE, lookup
from ui import quiz_state as flow
from ui import render
from ui.quiz_state import Checked, LiveQuiz, QuizState
from ui.tab_chat import LLM_QUEUE
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = """
#sb-quiz-bank .sb-quiz-bank-line { font-size: .9em; color: var(--body-text-color-subdued); }
#sb-quiz-making:empty { display: none; }
.sb-quiz-wait { padding: 8px 0; font-weight: 600; }
.sb-quiz-bank-table { border-collapse: collapse; font-size: .9em; width: 100%; }
.sb-quiz-bank-table th, .sb-quiz-bank-table td { text-align: left; padding: 2px 8px;
                                                 border-bottom: 1px solid var(--border-color-primary); }
.sb-quiz-bank-table td.sb-num, .sb-quiz-bank-table th.sb-num { text-align: right; }
"""

if TYPE_CHECKING:
    from rag.quiz.bank import BankStats
    from ui.service import StudyService

# Question types: what the tab calls each (label, noun, answer heading and hint, plural) and whether it shows
# options to pick from is the type's rag.quiz.types.QuizType.


# --- rendering -----------------------------------------------------------------------------------------
@dataclass
class QuizView:
    """What the tab shows for a state; every string that holds document text is already HTML-escaped."""

    question_html: str
    # MCQ options as the radio's (label, value): the label "A) text" (plain text; after checking, the
    # chosen and the right option marked in words), the value the option itself.
    options: list[tuple[str, str]] = field(default_factory=list)
    selected: str | None = None
    show_options: bool = False
    show_answer_box: bool = False
    answer_text: str = ""
    answer_label: str = "Your answer"
    can_answer: bool = False
    feedback_html: str = ""
    can_check: bool = False
    can_next: bool = False
    score_html: str = ""
    can_more: bool = False
    status_html: str = ""
    verdict: str = ""  # the checked question's verdict ("" before checking): the options' colours


_VERDICT_STYLE = {"correct": "#15803d", "partial": "#b45309", "incorrect": "#b91c1c", "revealed": "#1d4ed8"}
RIGHT_MARK, CHOSEN_MARK = "✓", "✗"


def chosen_option(item: QuizItem, answer: str) -> str | None:
    """The option a student picked (the option itself, or its letter A-D)."""
    return mcq_choice(item, answer) if type_of(item).choice and answer.strip() else None


def option_choices(item: QuizItem, result: Checked | None = None) -> list[tuple[str, str]]:
    """The radio's (label, value) pairs: "A) text" for each option; once checked, the right one ends in
    "✓ right answer" (or "✓ your choice, right") and a wrong choice in "✗ your choice"."""
    chosen = chosen_option(item, result.answer) if result is not None else None
    out = []
    for i, option in enumerate(item.options):
        label = render.option_label(i, option)
        if result is not None and option == item.answer:
            label += f"  {RIGHT_MARK} your choice, right" if chosen == option else f"  {RIGHT_MARK} right answer"
        elif result is not None and option == chosen:
            label += f"  {CHOSEN_MARK} your choice"
        out.append((label, option))
    return out


_MARK_COLOR = {"sb-right": "#15803d", "sb-wrong": "#b91c1c"}


def _option_line(item: QuizItem, option: str, mark: str, css: str) -> str:
    i = item.options.index(option)
    return (f'<span class="sb-quiz-letter">{render.LETTERS[i]})</span> {render.inline_markdown_html(option)} '
            f'<span class="sb-quiz-mark {css}" style="color:{_MARK_COLOR[css]};font-weight:600">{mark}</span>')


def _snippet_html(text: str) -> str:
    """A quoted sentence or an explanation: one line inline (no paragraph margins), several as blocks."""
    return render.markdown_html(text) if "\n" in text.strip() else render.inline_markdown_html(text.strip())


def feedback_html(item: QuizItem, result: Checked) -> str:
    """The graded feedback: the verdict; for a multiple-choice question the student's choice and the right
    option with their letters and marks, else the student's and the right answer; the explanation (once:
    not when it is the quoted sentence) and the cited passage (the quoted sentence plus the whole passage,
    with title, section, page and file). Document text is rendered as Markdown, escaped."""
    grade = result.grade
    verdict = grade.verdict
    opening = render.grade_feedback(grade).split("\n", 1)[0]
    color = _VERDICT_STYLE.get(verdict, "inherit")
    answer = result.answer
    rows = [f'<div class="sb-quiz-verdict" style="font-weight:700;color:{color}">{render.esc(opening)}</div>']
    if type_of(item).choice and item.answer in item.options:
        chosen = chosen_option(item, answer)
        if chosen is not None and chosen != item.answer:
            rows.append(f'<div class="sb-quiz-your"><b>Your choice:</b> '
                        f'{_option_line(item, chosen, f"{CHOSEN_MARK} wrong", "sb-wrong")}</div>')
        rows.append(f'<div class="sb-quiz-right"><b>{"Your choice" if chosen == item.answer else "Right answer"}:'
                    f"</b> {_option_line(item, item.answer, f'{RIGHT_MARK} right', 'sb-right')}</div>")
    else:
        if answer.strip():
            rows.append(f'<div class="sb-quiz-your"><b>Your answer:</b> {render.esc(answer)}</div>')
        rows.append(f'<div class="sb-quiz-right"><b>{type_of(item).answer_heading}:'
                    f"</b> {render.inline_markdown_html(item.answer)}</div>")
    if item.explanation and not render.same_text(item.explanation, grade.quote):
        rows.append(f'<div class="sb-quiz-explanation">{_snippet_html(item.explanation)}</div>')
    citation = grade.citation
    if grade.quote:
        rows.append(f'<div class="sb-src-meta">The handbook says:</div>'
                    f'<blockquote class="sb-quiz-quote" style="margin:4px 0 6px;padding-left:8px;'
                    f'border-left:3px solid var(--color-accent)">{_snippet_html(grade.quote)}</blockquote>')
    rows.append(f'<div class="sb-quiz-cite">{render.esc(render.source_line(citation))}</div>')
    rows.append(f'<details class="sb-quiz-passage"><summary>Cited passage</summary>'
                f'<div class="sb-passage sb-md">{render.markdown_html(citation.text)}</div></details>')
    return (f'<div class="sb-quiz-result sb-quiz-{render.esc(verdict)}" data-verdict="{render.esc(verdict)}">'
            f'{"".join(rows)}</div>')


def _question_html(state: QuizState, i: int, item: QuizItem) -> str:
    start = state.round_start
    total = state.round_total
    noun = type_of(item).noun
    topic = state.topic or "across the handbooks"
    return (f'<div class="sb-quiz-q" data-index="{i - start + 1}" data-total="{total}">'
            f'<div class="sb-src-meta sb-quiz-qnum">{noun} {i - start + 1} of {total} · {render.esc(topic)}</div>'
            f'<div class="sb-quiz-qtext" style="font-size:1.1em;font-weight:600;margin-top:4px">'
            f"{render.inline_markdown_html(item.question)}</div></div>")


def _score_html(state: QuizState) -> str:
    right, total = state.score()
    line = f'<div class="sb-quiz-score-line" style="font-size:1.2em;font-weight:700">Score: {right}/{total}</div>'
    if state.rounds > 1:
        all_right, all_total = state.score(all_rounds=True)
        line += f'<div class="sb-quiz-score-all">All rounds: {all_right}/{all_total}</div>'
    return (f'<div class="sb-quiz-score-box" data-right="{right}" data-total="{total}">{line}'
            '<div class="sb-src-meta">Press “More questions” for new questions on the same topic, '
            "or export them below.</div></div>")


INSTRUCTIONS = ('<div class="sb-empty">Pick a topic (or leave it empty for questions across the handbooks), a '
                "question type and a count, then press “Start quiz”.</div>")


def view(state: QuizState | None) -> QuizView:
    st = state or QuizState()
    status_parts = []
    if st.error:
        status_parts.append(f'<div class="sb-quiz-error" style="color:#b91c1c">{render.esc(st.error)}</div>')
    if st.message:
        status_parts.append(f'<div class="sb-quiz-message">{render.esc(st.message)}</div>')
    status = "".join(status_parts)
    cur = st.current
    if cur is None:
        return QuizView(question_html=INSTRUCTIONS, status_html=status)
    i, item = cur
    result = st.results[i]
    done = st.finished
    more_coming = i + 1 < len(st.items) or st.pending
    v = QuizView(question_html=_question_html(st, i, item), status_html=status, can_check=result is None,
                 can_answer=result is None, can_next=result is not None and more_coming, can_more=done,
                 verdict=result.grade.verdict if result is not None else "")
    if type_of(item).choice:
        v.options = option_choices(item, result)
        v.show_options = True
        v.selected = chosen_option(item, result.answer) if result is not None else None
    else:
        v.show_answer_box = True
        v.answer_text = result.answer if result is not None else ""
        v.answer_label = type_of(item).answer_hint
    if result is not None:
        v.feedback_html = feedback_html(item, result)
    if done:
        v.score_html = _score_html(st)
    return v


def making_html(live: LiveQuiz | None, *, with_error: bool = False) -> str:
    """The progress display while the rest of a round is made (its first question shown): "Question 3 of 10 is
    being made" with how many are ready; once the round ended, the reason when it gave fewer questions than
    asked for (and, ``with_error``, the error that stopped it: where the status line cannot say it), else
    nothing. Before the first question the display is in the question's place instead (nothing here)."""
    if live is None:
        return ""
    made = live.made()
    have = len(made.items)
    if not made.done:
        if not have:
            return ""
        them = "it" if have == 1 else "them"
        return render.working_html(f"Question {have + 1} of {made.n} is being made",
                                   f"{have} of {made.n} ready: answer {them} while the rest are made.",
                                   done=have, total=made.n, elapsed=live.elapsed)
    if made.error and have and with_error:
        return f'<div class="sb-quiz-making-error" style="color:#b91c1c">{render.esc(made.error)}</div>'
    if 0 < have < made.n and not made.error:
        return f'<div class="sb-src-meta sb-quiz-making-note">{render.esc(flow.ready_note(have, made.n))}</div>'
    return ""


def waiting_html(state: QuizState) -> str:
    """What Next shows in the question's place while the next question is still being made."""
    number = len(state.items) - state.round_start + 1
    return (f'<div class="sb-quiz-wait" data-index="{number}">Question {number} of {state.round_total} is being '
            "made: it shows here as soon as it is ready.</div>")


# --- the question bank's figures, as a student reads them -------------------------------------------------
def bank_line_html(stats: BankStats, worker: dict[str, Any] | None = None) -> str:
    """One line: "Questions ready in advance: 42 (flashcards 20, short answers 14, multiple choice 8); 35% of
    passages covered; filling in the background while you are idle." (``worker``: the bank worker's status)."""
    filling = ""
    if worker is not None and worker.get("running"):
        if worker.get("error"):
            filling = f"filling in the background is paused ({str(worker['error']).rstrip('.')})"
        elif worker.get("state") == "waiting":
            filling = "every passage has had its questions made"
        else:
            filling = "filling in the background while you are idle"
    if not stats.items:
        line = "No questions are ready in advance yet"
        line += f"; {filling}." if filling else ": each quiz makes its questions as you go."
    else:
        kinds = ", ".join(f"{kind.many if (kind := lookup(t)) else t} {k}" for t, k in
                          sorted(stats.by_type.items(), key=lambda kv: -kv[1]) if k)
        line = (f"Questions ready in advance: {stats.items} ({kinds}); {100 * stats.coverage:.0f}% of passages "
                "covered")
        line += f"; {filling}." if filling else "."
    return (f'<div class="sb-quiz-bank-line" data-items="{stats.items}" '
            f'data-covered="{round(100 * stats.coverage)}">{render.esc(line)}</div>')


def bank_sections_html(stats: BankStats) -> str:
    """A table of the sections: questions ready in advance and passages covered."""
    if not stats.sections:
        return '<div class="sb-empty">No passages in the library yet.</div>'
    rows = "".join(
        f"<tr><td>{render.esc(s.source)}</td><td>{render.esc(s.section)}</td><td class='sb-num'>{s.items}</td>"
        f"<td class='sb-num'>{s.chunks_covered} of {s.chunks}</td></tr>" for s in stats.sections)
    return ('<table class="sb-quiz-bank-table"><thead><tr><th>Document</th><th>Section</th>'
            "<th class='sb-num'>Questions ready</th><th class='sb-num'>Passages covered</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def bank_view(service: StudyService) -> tuple[str, str]:
    """(the line, the sections' table) for the bank as it is now; a bank that cannot be read says why."""
    try:
        stats = service.bank_status()
    except StudybotError as exc:
        return f'<div class="sb-quiz-bank-line sb-quiz-bank-error">{render.esc(str(exc))}</div>', ""
    worker = service.bank_worker
    return bank_line_html(stats, worker.status() if worker is not None else None), bank_sections_html(stats)


def guide_working_html(topic: str, elapsed: float) -> str:
    """The study guide's progress display while the model writes it (one call, then a check per line)."""
    return render.working_html(
        f"Writing a study guide on “{topic}”",
        "Reading the four best passages, writing key terms, a summary and three interview questions, then "
        "checking every line against its passage…", elapsed=elapsed,
        note="This takes about a minute on a laptop's CPU.")


# --- the tab -------------------------------------------------------------------------------------------
# How often a running job's progress display is redrawn: set by hand with the Quiz tab, not measured (a question
# takes seconds to make, so twice a second shows its progress as it moves).
POLL_S = 0.5


def build_quiz_tab(service: StudyService) -> dict[str, Any]:
    """Build the Quiz tab inside the current ``gr.Blocks``; returns its components."""
    sessions = flow.quiz_sessions()

    with gr.Tab("Quiz", id="quiz") as tab:
        state = gr.State(QuizState())
        with gr.Row():
            topic = gr.Textbox(label="Topic", placeholder="e.g. regularization (empty: across the handbooks)",
                               max_lines=1, max_length=flow.MAX_TOPIC_CHARS, scale=3, elem_id="sb-quiz-topic")
            qtype = gr.Radio(choices=type_choices(), value=DEFAULT_TYPE, label="Question type", scale=2,
                             elem_id="sb-quiz-type")
            count = gr.Slider(flow.MIN_COUNT, flow.MAX_COUNT, value=flow.DEFAULT_COUNT, step=1, label="Questions", scale=1,
                              elem_id="sb-quiz-count")
        with gr.Row():
            start_btn = gr.Button("Start quiz", variant="primary", elem_id="sb-quiz-start", scale=3)
            weak_btn = gr.Button("Quiz my weak spots", elem_id="sb-quiz-weak", scale=1)
        bank_line = gr.HTML("", elem_id="sb-quiz-bank")
        status = gr.HTML("", elem_id="sb-quiz-status")
        question = gr.HTML(view(None).question_html, elem_id="sb-quiz-question")
        options = gr.Radio(choices=[], value=None, label="Options", visible=False, elem_id="sb-quiz-options")
        answer = gr.Textbox(label="Your answer", lines=2, max_lines=8, max_length=1000, visible=False,
                            elem_id="sb-quiz-answer")
        with gr.Row():
            check_btn = gr.Button("Check answer", variant="primary", interactive=False, elem_id="sb-quiz-check")
            next_btn = gr.Button("Next question", interactive=False, elem_id="sb-quiz-next")
        making = gr.HTML("", elem_id="sb-quiz-making")
        feedback = gr.HTML("", elem_id="sb-quiz-feedback")
        score_box = gr.HTML("", elem_id="sb-quiz-score")
        with gr.Row():
            more_btn = gr.Button("More questions", interactive=False, elem_id="sb-quiz-more")
            export_fmt = gr.Radio(choices=list(flow.EXPORT_FORMATS), value=flow.DEFAULT_EXPORT, label="Export format",
                                  elem_id="sb-quiz-export-format")
            export_btn = gr.DownloadButton("Export questions", value=None, interactive=False,
                                           elem_id="sb-quiz-export")
        with gr.Accordion("Questions ready in advance, by section", open=False, elem_id="sb-quiz-bank-sections"):
            bank_table = gr.HTML("", elem_id="sb-quiz-bank-table")
        with gr.Accordion("Study guide", open=False, elem_id="sb-guide"):
            gr.Markdown("A one-page guide to a topic or a section name: key terms, a short summary and three "
                        "likely interview questions, every line cited to its passage.")
            with gr.Row():
                guide_topic = gr.Textbox(label="Guide topic", placeholder="e.g. dropout, or a section name",
                                         max_lines=1, max_length=flow.MAX_TOPIC_CHARS, scale=3,
                                         elem_id="sb-guide-topic")
                guide_btn = gr.Button("Write a study guide", elem_id="sb-guide-write", scale=1)
                guide_file = gr.DownloadButton("Download guide (.md)", value=None, interactive=False,
                                               elem_id="sb-guide-download", scale=1)
            guide_status = gr.HTML("", elem_id="sb-guide-status")
            guide_md = gr.Markdown("", elem_id="sb-guide-text", latex_delimiters=[])

    outputs = [state, question, options, answer, check_btn, next_btn, feedback, score_box, more_btn, status,
               export_btn, start_btn, weak_btn, making]
    skip = gr.skip

    def updates(st: QuizState, fmt: str | None, export: bool = False) -> tuple[Any, ...]:
        v = view(st)
        export_update: Any = skip()
        if export:
            path = flow.export_quiz(st, fmt or flow.DEFAULT_EXPORT) if st.items else None
            export_update = gr.update(value=path, interactive=path is not None)
        return (
            st,
            v.question_html,
            gr.update(choices=v.options, value=v.selected, visible=v.show_options, interactive=v.can_answer,
                      elem_classes=[f"sb-verdict-{v.verdict}"] if v.verdict else []),
            gr.update(value=v.answer_text, visible=v.show_answer_box, interactive=v.can_answer,
                      label=v.answer_label),
            gr.update(interactive=v.can_check),
            gr.update(interactive=v.can_next),
            v.feedback_html,
            v.score_html,
            gr.update(interactive=v.can_more),
            v.status_html,
            export_update,
            gr.update(interactive=True),
            gr.update(interactive=True),
            making_html(flow.live_round(sessions, st.id)),
        )

    def working(progress_html: str) -> tuple[Any, ...]:
        """While a round's first question is made: the one progress display in the question's place; nothing
        to answer."""
        off = gr.update(interactive=False)
        return (skip(), progress_html, gr.update(visible=False), gr.update(visible=False), off, off, "", "", off,
                "", skip(), off, off, "")

    def waiting(st: QuizState) -> tuple[Any, ...]:
        """Next pressed before the next question is made: it says so in the question's place (the progress
        display under the buttons goes on); nothing to press but another quiz."""
        off, on = gr.update(interactive=False), gr.update(interactive=True)
        return (skip(), waiting_html(st), gr.update(visible=False), gr.update(visible=False), off, off, "", "", off,
                "", skip(), on, on, skip())

    def run_round(what: str, open_round: Callable[[], QuizState], before: QuizState | None,
                  fmt: str | None) -> Iterator[tuple[Any, ...]]:
        """Open a round and show its first question as soon as it exists (the progress display meanwhile); the
        rest are made after this returns (:func:`on_watch` draws their progress)."""
        st = open_round()
        if not st.pending:  # refused at once: a bad count or type, or no quiz to add to
            yield updates(st, fmt, export=True)
            return
        live = flow.live_round(sessions, st.id)
        shown = ""
        while True:
            if live is not None:
                msg, done, total = live.step
                html = render.working_html(what, flow.quiz_step(msg, done, total), done=done, total=total,
                                           elapsed=live.elapsed)
                if html != shown:
                    shown = html
                    yield working(html)
            st = flow.sync(sessions, st, wait=POLL_S)
            if len(st.items) > st.round_start or not st.pending:
                break
        yield updates(flow.shown(sessions, st, before), fmt, export=True)

    def on_start(topic_v: str, type_v: str, count_v: Any, st: QuizState | None, fmt: str | None,
                 request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        text = " ".join(str(topic_v or "").split())[:flow.MAX_TOPIC_CHARS]
        what = f"Making a quiz on “{text}”" if text else "Making a quiz across the handbooks"
        yield from run_round(what, lambda: flow.open_quiz(service, sessions, topic_v, type_v, count_v, st, user=user,
                                                          fast_start=True), None, fmt)

    def on_weak(type_v: str, count_v: Any, st: QuizState | None, fmt: str | None,
                request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        yield from run_round("Making a quiz on your weak spots", lambda: flow.open_quiz(
            service, sessions, None, type_v, count_v, st, user=user, weak=True, fast_start=True), None, fmt)

    def on_more(st: QuizState | None, fmt: str | None) -> Iterator[tuple[Any, ...]]:
        cur = st or QuizState()
        what = f"Making more questions on “{cur.topic}”" if cur.topic else "Making more questions"
        yield from run_round(what, lambda: flow.open_more(service, sessions, cur, fast_start=True), cur, fmt)

    def on_watch(st: QuizState | None) -> Iterator[tuple[Any, ...]]:
        """After a round's first question is shown: redraw the progress display while the rest are made (never
        the state: the student answers meanwhile), then the question bank's figures."""
        st = st or QuizState()
        live = flow.live_round(sessions, st.id)
        if live is not None and st.pending:
            version, shown = -1, None
            while flow.live_round(sessions, st.id) is live:
                html = making_html(live, with_error=True)
                if html != shown:
                    shown = html
                    yield html, skip(), skip()
                if live.done:
                    break
                version = live.wait_change(version, POLL_S)
            if flow.live_round(sessions, st.id) is not live:  # another quiz or round took over: its display is its own
                yield skip(), skip(), skip()
                return
        yield (skip(), *bank_view(service))

    def on_bank() -> tuple[str, str]:
        return bank_view(service)

    def on_guide(topic_v: str) -> Iterator[tuple[Any, ...]]:
        text = " ".join(str(topic_v or "").split())[:flow.MAX_TOPIC_CHARS]
        off, on = gr.update(interactive=False), gr.update(interactive=True)
        if not text:
            yield ('<div class="sb-guide-error" style="color:#b91c1c">Type a topic or a section name for the '
                   "guide first.</div>", skip(), skip(), on)
            return
        job = flow.Background(lambda _progress: service.guide(text))
        shown = ""
        while not job.wait(POLL_S):
            html = guide_working_html(text, job.elapsed)
            if html != shown:
                shown = html
                yield html, "", gr.update(value=None, interactive=False), off
        try:
            guide = job.result().to_json()
        except StudybotError as exc:
            yield (f'<div class="sb-guide-error" style="color:#b91c1c">{render.esc(str(exc))}</div>', "",
                   gr.update(value=None, interactive=False), on)
            return
        md = render.guide_markdown(guide)
        path = flow.export_dir() / f"studybot-guide-{flow.slug(guide['topic'])}.md"
        path.write_text(md, encoding="utf-8")
        done = f'<div class="sb-src-meta sb-guide-done">Written in {render.duration(job.elapsed)}.</div>'
        yield done, md, gr.update(value=str(path), interactive=True), on

    def on_check(choice: str | None, text: str | None, st: QuizState | None, fmt: str | None) -> tuple[Any, ...]:
        st = st or QuizState()
        had = len(st.items)
        st = flow.sync(sessions, st)  # the questions made meanwhile (the last one checked shows the score)
        cur = st.current
        given = choice if cur is not None and type_of(cur[1]).choice else text
        checked = flow.check_answer(service, st, given)
        return updates(checked, fmt, export=len(checked.items) != had)

    def on_next(st: QuizState | None, fmt: str | None) -> Iterator[tuple[Any, ...]]:
        st = st or QuizState()
        had = len(st.items)
        st = flow.sync(sessions, st)
        cur = st.current
        if cur is not None and st.results[cur[0]] is not None and cur[0] + 1 >= len(st.items) and st.pending:
            live = flow.live_round(sessions, st.id)
            yield waiting(st)
            while True:
                st = flow.sync(sessions, st, wait=POLL_S)
                if flow.live_round(sessions, st.id) is not live:  # another quiz started meanwhile: this one is gone
                    return
                if cur[0] + 1 < len(st.items) or not st.pending:
                    break
        yield updates(flow.next_question(st), fmt, export=len(st.items) != had)

    def on_format(fmt: str | None, st: QuizState | None) -> Any:
        path = flow.export_quiz(st or QuizState(), fmt or flow.DEFAULT_EXPORT)
        return gr.update(value=path, interactive=path is not None)

    # The jobs draw their own progress display (in the question's place); Gradio's indicator shows only a
    # place in the queue (while another student's answer runs), on the status line.
    busy: dict[str, Any] = {"concurrency_id": LLM_QUEUE, "show_progress": "minimal", "show_progress_on": [status]}
    # The rest of a round is made on the server after its first question is shown (outside the model's queue:
    # each model call still takes its turn); these only wait for it and redraw, so any number run at once.
    watch: dict[str, Any] = {"fn": on_watch, "inputs": [state], "outputs": [making, bank_line, bank_table],
                             "api_visibility": "private", "show_progress": "hidden", "concurrency_limit": None,
                             "concurrency_id": "quiz-watch"}
    # "undocumented": callable by name (gradio_client, tests) but not listed on the API page.
    start_btn.click(on_start, [topic, qtype, count, state, export_fmt], outputs, api_name="quiz_start",
                    api_visibility="undocumented", **busy).then(**watch)
    weak_btn.click(on_weak, [qtype, count, state, export_fmt], outputs, api_name="quiz_weak",
                   api_visibility="undocumented", **busy).then(**watch)
    guide_btn.click(on_guide, [guide_topic], [guide_status, guide_md, guide_file, guide_btn], api_name="guide",
                    api_visibility="undocumented", concurrency_id=LLM_QUEUE, show_progress="minimal",
                    show_progress_on=[guide_status])
    guide_topic.submit(on_guide, [guide_topic], [guide_status, guide_md, guide_file, guide_btn],
                       api_visibility="private", concurrency_id=LLM_QUEUE, show_progress="minimal",
                       show_progress_on=[guide_status])
    topic.submit(on_start, [topic, qtype, count, state, export_fmt], outputs, api_visibility="private",
                 **busy).then(**watch)
    check_btn.click(on_check, [options, answer, state, export_fmt], outputs, api_name="quiz_check",
                    api_visibility="undocumented", show_progress="minimal", show_progress_on=[feedback])
    next_btn.click(on_next, [state, export_fmt], outputs, api_name="quiz_next", api_visibility="undocumented",
                   show_progress="hidden", concurrency_limit=None, concurrency_id="quiz-next")
    more_btn.click(on_more, [state, export_fmt], outputs, api_name="quiz_more", api_visibility="undocumented",
                   **busy).then(**watch)
    export_fmt.change(on_format, [export_fmt, state], [export_btn], api_visibility="private", queue=False)
    tab.select(on_bank, None, [bank_line, bank_table], api_visibility="private", show_progress="hidden",
               concurrency_limit=None, concurrency_id="quiz-bank")

    return {"state": state, "topic": topic, "type": qtype, "count": count, "start": start_btn, "weak": weak_btn,
            "guide": guide_btn, "guide_topic": guide_topic, "guide_status": guide_status, "guide_text": guide_md,
            "guide_file": guide_file, "question": question, "options": options, "answer": answer,
            "check": check_btn, "next": next_btn, "feedback": feedback, "score": score_box, "more": more_btn,
            "export": export_btn, "export_format": export_fmt, "status": status, "sessions": sessions,
            "making": making, "bank": bank_line, "bank_sections": bank_table}
