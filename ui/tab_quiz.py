"""The Quiz tab's page: what it shows for a :class:`ui.quiz_state.QuizState` (:func:`view`, all document text
HTML-escaped) and the Gradio wiring that maps components to the flow in :mod:`ui.quiz_state`. The UI talks
to :class:`ui.service.StudyService` only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from rag.quiz import QuizItem, mcq_choice
from rag.types import Progress
from ui import quiz_state as flow
from ui import render
from ui.quiz_state import Checked, QuizState
from ui.tab_chat import LLM_QUEUE
from ui.user import user_of

# This tab's own styles, appended to the app's (ui/app.py).
CSS = ""

if TYPE_CHECKING:
    from ui.service import StudyService

TYPE_CHOICES: list[tuple[str, str]] = [("Multiple choice", "mcq"), ("Short answer", "short"),
                                       ("Flashcard", "flashcard")]


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
    return mcq_choice(item, answer) if item.type == "mcq" and answer.strip() else None


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
    if item.type == "mcq" and item.answer in item.options:
        chosen = chosen_option(item, answer)
        if chosen is not None and chosen != item.answer:
            rows.append(f'<div class="sb-quiz-your"><b>Your choice:</b> '
                        f'{_option_line(item, chosen, f"{CHOSEN_MARK} wrong", "sb-wrong")}</div>')
        rows.append(f'<div class="sb-quiz-right"><b>{"Your choice" if chosen == item.answer else "Right answer"}:'
                    f"</b> {_option_line(item, item.answer, f'{RIGHT_MARK} right', 'sb-right')}</div>")
    else:
        if answer.strip():
            rows.append(f'<div class="sb-quiz-your"><b>Your answer:</b> {render.esc(answer)}</div>')
        rows.append(f'<div class="sb-quiz-right"><b>{"Back of the card" if item.type == "flashcard" else "Answer"}:'
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
    total = len(state.items) - start
    noun = "Card" if item.type == "flashcard" else "Question"
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
    v = QuizView(question_html=_question_html(st, i, item), status_html=status, can_check=result is None,
                 can_answer=result is None, can_next=result is not None and i + 1 < len(st.items), can_more=done,
                 verdict=result.grade.verdict if result is not None else "")
    if item.type == "mcq":
        v.options = option_choices(item, result)
        v.show_options = True
        v.selected = chosen_option(item, result.answer) if result is not None else None
    else:
        v.show_answer_box = True
        v.answer_text = result.answer if result is not None else ""
        v.answer_label = ("Your answer (or leave it empty and check to turn the card over)"
                          if item.type == "flashcard" else "Your answer")
    if result is not None:
        v.feedback_html = feedback_html(item, result)
    if done:
        v.score_html = _score_html(st)
    return v


def guide_working_html(topic: str, elapsed: float) -> str:
    """The study guide's progress display while the model writes it (one call, then a check per line)."""
    return render.working_html(
        f"Writing a study guide on “{topic}”",
        "Reading the four best passages, writing key terms, a summary and three interview questions, then "
        "checking every line against its passage…", elapsed=elapsed,
        note="This takes about a minute on a laptop's CPU.")


# --- the tab -------------------------------------------------------------------------------------------
POLL_S = 0.5  # how often a running job's progress display is redrawn


def build_quiz_tab(service: StudyService) -> dict[str, Any]:
    """Build the Quiz tab inside the current ``gr.Blocks``; returns its components."""
    sessions = flow.QuizSessions()

    with gr.Tab("Quiz", id="quiz"):
        state = gr.State(QuizState())
        with gr.Row():
            topic = gr.Textbox(label="Topic", placeholder="e.g. regularization (empty: across the handbooks)",
                               max_lines=1, max_length=flow.MAX_TOPIC_CHARS, scale=3, elem_id="sb-quiz-topic")
            qtype = gr.Radio(choices=TYPE_CHOICES, value="mcq", label="Question type", scale=2,
                             elem_id="sb-quiz-type")
            count = gr.Slider(flow.MIN_COUNT, flow.MAX_COUNT, value=flow.DEFAULT_COUNT, step=1, label="Questions", scale=1,
                              elem_id="sb-quiz-count")
        with gr.Row():
            start_btn = gr.Button("Start quiz", variant="primary", elem_id="sb-quiz-start", scale=3)
            weak_btn = gr.Button("Quiz my weak spots", elem_id="sb-quiz-weak", scale=1)
        status = gr.HTML("", elem_id="sb-quiz-status")
        question = gr.HTML(view(None).question_html, elem_id="sb-quiz-question")
        options = gr.Radio(choices=[], value=None, label="Options", visible=False, elem_id="sb-quiz-options")
        answer = gr.Textbox(label="Your answer", lines=2, max_lines=8, max_length=1000, visible=False,
                            elem_id="sb-quiz-answer")
        with gr.Row():
            check_btn = gr.Button("Check answer", variant="primary", interactive=False, elem_id="sb-quiz-check")
            next_btn = gr.Button("Next question", interactive=False, elem_id="sb-quiz-next")
        feedback = gr.HTML("", elem_id="sb-quiz-feedback")
        score_box = gr.HTML("", elem_id="sb-quiz-score")
        with gr.Row():
            more_btn = gr.Button("More questions", interactive=False, elem_id="sb-quiz-more")
            export_fmt = gr.Radio(choices=list(flow.EXPORT_FORMATS), value=flow.DEFAULT_EXPORT, label="Export format",
                                  elem_id="sb-quiz-export-format")
            export_btn = gr.DownloadButton("Export questions", value=None, interactive=False,
                                           elem_id="sb-quiz-export")
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
               export_btn, start_btn, weak_btn]

    def updates(st: QuizState, fmt: str | None, export: bool = False) -> tuple[Any, ...]:
        v = view(st)
        export_update: Any = gr.skip()
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
        )

    def working(progress_html: str) -> tuple[Any, ...]:
        """While questions are made: the one progress display in the question's place; nothing to answer."""
        off = gr.update(interactive=False)
        return (gr.skip(), progress_html, gr.update(visible=False), gr.update(visible=False), off, off, "", "", off,
                "", gr.skip(), off, off)

    def run_quiz(what: str, make: Callable[[Progress], QuizState], fmt: str | None) -> Iterator[tuple[Any, ...]]:
        job = flow.Background(make)
        shown = ""
        while not job.wait(POLL_S):
            msg, done, total = job.step
            html = render.working_html(what, flow.quiz_step(msg, done, total), done=done, total=total,
                                       elapsed=job.elapsed)
            if html != shown:
                shown = html
                yield working(html)
        yield updates(job.result(), fmt, export=True)

    def on_start(topic_v: str, type_v: str, count_v: Any, st: QuizState | None, fmt: str | None,
                 request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        text = " ".join(str(topic_v or "").split())[:flow.MAX_TOPIC_CHARS]
        what = f"Making a quiz on “{text}”" if text else "Making a quiz across the handbooks"
        yield from run_quiz(what, lambda progress: flow.start_quiz(
            service, sessions, topic_v, type_v, count_v, st, progress=progress, user=user), fmt)

    def on_weak(type_v: str, count_v: Any, st: QuizState | None, fmt: str | None,
                request: gr.Request) -> Iterator[tuple[Any, ...]]:
        user = user_of(request)
        yield from run_quiz("Making a quiz on your weak spots", lambda progress: flow.start_quiz(
            service, sessions, None, type_v, count_v, st, progress=progress, user=user, weak=True), fmt)

    def on_more(st: QuizState | None, fmt: str | None) -> Iterator[tuple[Any, ...]]:
        cur = st or QuizState()
        what = f"Making more questions on “{cur.topic}”" if cur.topic else "Making more questions"
        yield from run_quiz(what, lambda progress: flow.more_questions(service, sessions, cur, progress=progress),
                            fmt)

    def on_guide(topic_v: str) -> Iterator[tuple[Any, ...]]:
        text = " ".join(str(topic_v or "").split())[:flow.MAX_TOPIC_CHARS]
        off, on = gr.update(interactive=False), gr.update(interactive=True)
        if not text:
            yield ('<div class="sb-guide-error" style="color:#b91c1c">Type a topic or a section name for the '
                   "guide first.</div>", gr.skip(), gr.skip(), on)
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

    def on_check(choice: str | None, text: str | None, st: QuizState | None) -> tuple[Any, ...]:
        st = st or QuizState()
        cur = st.current
        given = choice if cur is not None and cur[1].type == "mcq" else text
        return updates(flow.check_answer(service, st, given), None)

    def on_next(st: QuizState | None) -> tuple[Any, ...]:
        return updates(flow.next_question(st or QuizState()), None)

    def on_format(fmt: str | None, st: QuizState | None) -> Any:
        path = flow.export_quiz(st or QuizState(), fmt or flow.DEFAULT_EXPORT)
        return gr.update(value=path, interactive=path is not None)

    # The jobs draw their own progress display (in the question's place); Gradio's indicator shows only a
    # place in the queue (while another student's answer runs), on the status line.
    busy: dict[str, Any] = {"concurrency_id": LLM_QUEUE, "show_progress": "minimal", "show_progress_on": [status]}
    # "undocumented": callable by name (gradio_client, tests) but not listed on the API page.
    start_btn.click(on_start, [topic, qtype, count, state, export_fmt], outputs, api_name="quiz_start",
                    api_visibility="undocumented", **busy)
    weak_btn.click(on_weak, [qtype, count, state, export_fmt], outputs, api_name="quiz_weak",
                   api_visibility="undocumented", **busy)
    guide_btn.click(on_guide, [guide_topic], [guide_status, guide_md, guide_file, guide_btn], api_name="guide",
                    api_visibility="undocumented", concurrency_id=LLM_QUEUE, show_progress="minimal",
                    show_progress_on=[guide_status])
    guide_topic.submit(on_guide, [guide_topic], [guide_status, guide_md, guide_file, guide_btn],
                       api_visibility="private", concurrency_id=LLM_QUEUE, show_progress="minimal",
                       show_progress_on=[guide_status])
    topic.submit(on_start, [topic, qtype, count, state, export_fmt], outputs, api_visibility="private", **busy)
    check_btn.click(on_check, [options, answer, state], outputs, api_name="quiz_check",
                    api_visibility="undocumented", show_progress="minimal", show_progress_on=[feedback])
    next_btn.click(on_next, [state], outputs, api_name="quiz_next", api_visibility="undocumented",
                   queue=False, show_progress="hidden")
    more_btn.click(on_more, [state, export_fmt], outputs, api_name="quiz_more", api_visibility="undocumented",
                   **busy)
    export_fmt.change(on_format, [export_fmt, state], [export_btn], api_visibility="private", queue=False)

    return {"state": state, "topic": topic, "type": qtype, "count": count, "start": start_btn, "weak": weak_btn,
            "guide": guide_btn, "guide_topic": guide_topic, "guide_status": guide_status, "guide_text": guide_md,
            "guide_file": guide_file, "question": question, "options": options, "answer": answer,
            "check": check_btn, "next": next_btn, "feedback": feedback, "score": score_box, "more": more_btn,
            "export": export_btn, "export_format": export_fmt, "status": status, "sessions": sessions}
