"""The Quiz tab's page: what it shows for a :class:`ui.quiz_state.QuizState` (:func:`view`, all document text
HTML-escaped) and the Gradio wiring that maps components to the flow in :mod:`ui.quiz_state`. The UI talks
to :class:`ui.service.StudyService` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.errors import StudybotError
from rag.quiz import QuizItem
from rag.types import Progress
from ui import quiz_state as flow
from ui import render
from ui.quiz_state import Checked, QuizState
from ui.tab_chat import LLM_QUEUE
from ui.user import user_of

if TYPE_CHECKING:
    from ui.service import StudyService

TYPE_CHOICES: list[tuple[str, str]] = [("Multiple choice", "mcq"), ("Short answer", "short"),
                                       ("Flashcard", "flashcard")]


# --- rendering -----------------------------------------------------------------------------------------
@dataclass
class QuizView:
    """What the tab shows for a state; every string that holds document text is already HTML-escaped."""

    question_html: str
    options: list[str] = field(default_factory=list)  # MCQ options (raw text: the radio shows it as text)
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


_VERDICT_STYLE = {"correct": "#15803d", "partial": "#b45309", "incorrect": "#b91c1c", "revealed": "#1d4ed8"}


def feedback_html(item: QuizItem, result: Checked) -> str:
    """The graded feedback: verdict, the user's and the right answer, the explanation and the cited passage
    (the quoted sentence plus the whole passage, with title, section, page and file)."""
    grade = result.grade
    verdict = grade.verdict
    opening = render.grade_feedback(grade).split("\n", 1)[0]
    color = _VERDICT_STYLE.get(verdict, "inherit")
    answer = result.answer
    idx = item.answer_index
    label = f"{'ABCD'[idx]}) " if item.type == "mcq" and idx is not None and idx < 4 else ""
    rows = [f'<div class="sb-quiz-verdict" style="font-weight:700;color:{color}">{render.esc(opening)}</div>']
    if answer.strip():
        rows.append(f'<div class="sb-quiz-your"><b>Your answer:</b> {render.esc(answer)}</div>')
    rows.append(f'<div class="sb-quiz-right"><b>{"Back of the card" if item.type == "flashcard" else "Answer"}:'
                f"</b> {render.esc(label)}{render.esc(item.answer)}</div>")
    if item.explanation:
        rows.append(f'<div class="sb-quiz-explanation">{render.esc(item.explanation)}</div>')
    citation = grade.citation
    if grade.quote:
        rows.append(f'<blockquote class="sb-quiz-quote" style="margin:6px 0;padding-left:8px;'
                    f'border-left:3px solid var(--color-accent)">{render.esc(grade.quote)}</blockquote>')
    rows.append(f'<div class="sb-quiz-cite">{render.esc(render.source_line(citation))}</div>')
    rows.append(f'<details class="sb-quiz-passage"><summary>Cited passage</summary>'
                f'<div class="sb-passage">{render.esc(citation.text)}</div></details>')
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
            f"{render.esc(item.question)}</div></div>")


def _score_html(state: QuizState) -> str:
    right, total = state.score()
    line = f'<div class="sb-quiz-score-line" style="font-size:1.2em;font-weight:700">Score: {right}/{total}</div>'
    if state.rounds > 1:
        all_right, all_total = state.score(all_rounds=True)
        line += f'<div class="sb-quiz-score-all">All rounds: {all_right}/{all_total}</div>'
    return (f'<div class="sb-quiz-score-box" data-right="{right}" data-total="{total}">{line}'
            '<div class="sb-src-meta">Press “More questions” for new questions on the same topic, '
            "or export them below.</div></div>")


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
        return QuizView(
            question_html='<div class="sb-empty">Pick a topic (or leave it empty for questions across the '
                          "handbooks), a question type and a count, then press “Start quiz”.</div>",
            status_html=status,
        )
    i, item = cur
    result = st.results[i]
    done = st.finished
    v = QuizView(question_html=_question_html(st, i, item), status_html=status, can_check=result is None,
                 can_answer=result is None, can_next=result is not None and i + 1 < len(st.items), can_more=done)
    if item.type == "mcq":
        v.options = list(item.options)
        v.show_options = True
        v.selected = result.answer if result is not None and result.answer in item.options else None
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


# --- the tab -------------------------------------------------------------------------------------------
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
            gr.Markdown("A one-page guide to the topic above (or a section name): key terms, a short summary and "
                        "three likely interview questions, every line cited to its passage.")
            with gr.Row():
                guide_btn = gr.Button("Write a study guide", elem_id="sb-guide-write")
                guide_file = gr.DownloadButton("Download guide (.md)", value=None, interactive=False,
                                               elem_id="sb-guide-download")
            guide_md = gr.Markdown("", elem_id="sb-guide-text", latex_delimiters=[])

    outputs = [state, question, options, answer, check_btn, next_btn, feedback, score_box, more_btn, status,
               export_btn]

    def updates(st: QuizState, fmt: str | None, export: bool = False) -> tuple[Any, ...]:
        v = view(st)
        export_update: Any = gr.skip()
        if export:
            path = flow.export_quiz(st, fmt or flow.DEFAULT_EXPORT) if st.items else None
            export_update = gr.update(value=path, interactive=path is not None)
        return (
            st,
            v.question_html,
            gr.update(choices=v.options, value=v.selected, visible=v.show_options, interactive=v.can_answer),
            gr.update(value=v.answer_text, visible=v.show_answer_box, interactive=v.can_answer,
                      label=v.answer_label),
            gr.update(interactive=v.can_check),
            gr.update(interactive=v.can_next),
            v.feedback_html,
            v.score_html,
            gr.update(interactive=v.can_more),
            v.status_html,
            export_update,
        )

    def gr_progress(progress: Any) -> Progress:
        def cb(msg: str, done: int, total: int) -> None:
            progress((done, total), desc=msg)

        return cb

    def on_start(topic_v: str, type_v: str, count_v: Any, st: QuizState | None, fmt: str | None,
                 request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        new = flow.start_quiz(service, sessions, topic_v, type_v, count_v, st, progress=gr_progress(progress),
                              user=user_of(request))
        return updates(new, fmt, export=True)

    def on_weak(type_v: str, count_v: Any, st: QuizState | None, fmt: str | None, request: gr.Request,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        new = flow.start_quiz(service, sessions, None, type_v, count_v, st, progress=gr_progress(progress),
                              user=user_of(request), weak=True)
        return updates(new, fmt, export=True)

    def on_guide(topic_v: str) -> tuple[Any, ...]:
        try:
            guide = service.guide(str(topic_v or "")).to_json()
        except StudybotError as exc:
            return render.error_markdown(str(exc)), gr.update(value=None, interactive=False)
        text = render.guide_markdown(guide)
        path = flow.export_dir() / f"studybot-guide-{flow.slug(guide['topic'])}.md"
        path.write_text(text, encoding="utf-8")
        return text, gr.update(value=str(path), interactive=True)

    def on_check(choice: str | None, text: str | None, st: QuizState | None) -> tuple[Any, ...]:
        st = st or QuizState()
        cur = st.current
        given = choice if cur is not None and cur[1].type == "mcq" else text
        return updates(flow.check_answer(service, st, given), None)

    def on_next(st: QuizState | None) -> tuple[Any, ...]:
        return updates(flow.next_question(st or QuizState()), None)

    def on_more(st: QuizState | None, fmt: str | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return updates(flow.more_questions(service, sessions, st or QuizState(), progress=gr_progress(progress)),
                       fmt, export=True)

    def on_format(fmt: str | None, st: QuizState | None) -> Any:
        path = flow.export_quiz(st or QuizState(), fmt or flow.DEFAULT_EXPORT)
        return gr.update(value=path, interactive=path is not None)

    # "undocumented": callable by name (gradio_client, tests) but not listed on the API page.
    start_btn.click(on_start, [topic, qtype, count, state, export_fmt], outputs, concurrency_id=LLM_QUEUE,
                    api_name="quiz_start", api_visibility="undocumented")
    weak_btn.click(on_weak, [qtype, count, state, export_fmt], outputs, concurrency_id=LLM_QUEUE,
                   api_name="quiz_weak", api_visibility="undocumented")
    guide_btn.click(on_guide, [topic], [guide_md, guide_file], concurrency_id=LLM_QUEUE, api_name="guide",
                    api_visibility="undocumented")
    topic.submit(on_start, [topic, qtype, count, state, export_fmt], outputs, concurrency_id=LLM_QUEUE,
                 api_visibility="private")
    check_btn.click(on_check, [options, answer, state], outputs, api_name="quiz_check",
                    api_visibility="undocumented", show_progress="minimal")
    next_btn.click(on_next, [state], outputs, api_name="quiz_next", api_visibility="undocumented",
                   queue=False, show_progress="hidden")
    more_btn.click(on_more, [state, export_fmt], outputs, concurrency_id=LLM_QUEUE, api_name="quiz_more",
                   api_visibility="undocumented")
    export_fmt.change(on_format, [export_fmt, state], [export_btn], api_visibility="private", queue=False)

    return {"state": state, "topic": topic, "type": qtype, "count": count, "start": start_btn, "weak": weak_btn,
            "guide": guide_btn, "guide_text": guide_md, "guide_file": guide_file,
            "question": question, "options": options, "answer": answer, "check": check_btn, "next": next_btn,
            "feedback": feedback, "score": score_box, "more": more_btn, "export": export_btn,
            "export_format": export_fmt, "status": status, "sessions": sessions}
