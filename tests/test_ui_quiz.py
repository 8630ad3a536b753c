"""The Quiz tab on a real service (ingested corpus, real embedder and grading, scripted LLM): the
start -> check -> next -> score flow, more questions without repeats, export files that parse back, the
unknown-topic sentence, escaping of document text, and the tab inside the served app (gradio_client)."""

from __future__ import annotations

import csv
import html
import json
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rag.llm import Request
from rag.quiz import QuizItem, normalize
from rag.quiz.glossary import SCHEMA as GLOSSARY_SCHEMA
from rag.settings import Settings
from tests.fakes import PassageLLM, glossary_of, good
from tests.helpers import served_app
from ui.quiz_state import (
    EXPORT_FORMATS,
    QuizState,
    check_answer,
    drop,
    export_quiz,
    more_questions,
    next_question,
    quiz_sessions,
    session_of,
    start_quiz,
)
from ui.tab_quiz import view


def _item(st: QuizState, i: int | None = None) -> QuizItem:
    return st.items[st.index if i is None else i]


def _wrong_option(item: QuizItem) -> str:
    return next(o for o in item.options if o != item.answer)


def _text(html_text: str) -> str:
    """Visible text of rendered HTML (tags dropped, entities kept) for content checks."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_text))


# --- the flow --------------------------------------------------------------------------------------------
def test_start_check_next_and_score(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    sessions = quiz_sessions()
    progress: list[tuple[str, int, int]] = []
    st = start_quiz(svc, sessions, "  regularization ", "mcq", 3, progress=lambda *a: progress.append(a))
    assert st.error == "" and len(st.items) == 3 and st.topic == "regularization"
    assert progress[0][1:] == (0, 3) and progress[-1] == ("done", 3, 3)
    assert len(sessions) == 1 and st.id in sessions

    first = _item(st)
    v = view(st)
    assert v.show_options and not v.show_answer_box and [o for _, o in v.options] == first.options
    assert [label[:3] for label, _ in v.options] == ["A) ", "B) ", "C) ", "D) "]
    assert v.can_check and v.can_answer and not v.can_next and not v.can_more
    assert "Question 1 of 3" in v.question_html and v.feedback_html == "" and v.score_html == ""
    assert html.escape(first.question) in v.question_html
    assert "3 questions ready" in v.status_html

    # No option picked: nothing is graded; "next" before checking does not move on.
    same = check_answer(svc, st, None)
    assert same.results[0] is None and "Pick one of the four options" in view(same).status_html
    stuck = next_question(st)
    assert stuck.index == 0 and "Check your answer first" in stuck.message

    # 1: right answer
    st = check_answer(svc, st, first.answer)
    v = view(st)
    assert st.results[0].grade.correct is True
    assert 'data-verdict="correct"' in v.feedback_html and "Correct." in v.feedback_html
    cite = first.citation
    shown = html.unescape(_text(v.feedback_html))
    assert cite.source in shown and (cite.section or "") in shown and cite.title in shown
    assert "Cited passage" in v.feedback_html and st.results[0].grade.quote
    assert not v.can_check and not v.can_answer and v.can_next and v.selected == first.answer
    assert v.score_html == ""  # not at the end yet
    again = check_answer(svc, st, _wrong_option(first))  # a second check does not change the grade
    assert again.results[0].grade.correct is True and "already checked" in again.message

    # 2: wrong answer; the feedback names the right one with its letter
    st = next_question(st)
    assert st.index == 1 and "Question 2 of 3" in view(st).question_html and view(st).selected is None
    second = _item(st)
    st = check_answer(svc, st, _wrong_option(second))
    v = view(st)
    assert st.results[1].grade.correct is False and 'data-verdict="incorrect"' in v.feedback_html
    letter = "ABCD"[second.answer_index or 0]
    assert f"Right answer: {letter})" in _text(v.feedback_html) and "Not quite." in v.feedback_html
    assert st.score() == (1, 3) and "2 of 3 answered, 1 correct" in v.status_html

    # 3: right answer by letter; the score appears and "more" is offered
    st = next_question(st)
    third = _item(st)
    st = check_answer(svc, st, "ABCD"[third.answer_index or 0])
    v = view(st)
    assert st.results[2].grade.correct is True
    assert "Score: 2/3" in v.score_html and 'data-right="2" data-total="3"' in v.score_html
    assert v.can_more and not v.can_next and "All rounds" not in v.score_html
    assert "last question" in next_question(st).message


def test_more_questions_continue_the_session_without_repeats(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    sessions = quiz_sessions()
    st = start_quiz(svc, sessions, "regularization", "mcq", 2)
    session = session_of(sessions, st.id)
    for _ in range(2):
        st = check_answer(svc, st, _item(st).answer)
        st = next_question(st) if view(st).can_next else st
    assert "Score: 2/2" in view(st).score_html
    first_chunks = {i.citation.chunk_id for i in st.items}

    st = more_questions(svc, sessions, st)
    assert len(st.items) == 4 and st.round_start == 2 and st.index == 2 and st.rounds == 2
    assert session_of(sessions, st.id) is session and len(session.items) == 4  # the same QuizSession
    new_chunks = {i.citation.chunk_id for i in st.items[2:]}
    assert not new_chunks & first_chunks  # unused passages of the topic first
    questions = [normalize(i.question) for i in st.items]
    assert len(set(questions)) == 4
    v = view(st)
    assert "Question 1 of 2" in v.question_html and v.score_html == "" and not v.can_more

    st = check_answer(svc, st, _wrong_option(_item(st)))
    st = check_answer(svc, next_question(st), _item(next_question(st)).answer)
    v = view(st)
    assert "Score: 1/2" in v.score_html and "All rounds: 3/4" in v.score_html
    assert st.score(all_rounds=True) == (3, 4)


def test_more_questions_after_the_session_was_lost(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    sessions = quiz_sessions(capacity=1)
    st = start_quiz(svc, sessions, "regularization", "mcq", 1)
    drop(sessions, st.id)  # evicted, or the server restarted: rebuilt from the items in the state
    st = more_questions(svc, sessions, st)
    assert len(st.items) == 2 and st.error == ""
    assert st.items[0].citation.chunk_id != st.items[1].citation.chunk_id


def test_short_answer_and_flashcard(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(good("short"))
    sessions = quiz_sessions()
    st = start_quiz(svc, sessions, "gradient descent", "short", 1)
    v = view(st)
    assert v.show_answer_box and not v.show_options and v.options == []
    item = _item(st)
    st = check_answer(svc, st, item.answer)
    v = view(st)
    assert st.results[0].grade.verdict == "correct" and "Score: 1/1" in v.score_html
    assert v.answer_text == item.answer and not v.can_answer

    svc = quiz_svc(good("flashcard"))
    st = start_quiz(svc, sessions, None, "flashcard", 1)
    assert st.topic is None and "across the handbooks" in view(st).question_html
    assert "Card 1 of 1" in view(st).question_html and "turn the card over" in view(st).answer_label
    st = check_answer(svc, st, "")
    v = view(st)
    assert 'data-verdict="revealed"' in v.feedback_html and "Back of the card" in v.feedback_html
    assert "Score: 0/1" in v.score_html


# --- one lettering, the chosen and the right option marked, Markdown rendered (issue 28, item 7) -----------
MD_PASSAGE = ("**Bagging**: trains models in parallel on bootstrap samples. **Boosting**: trains them one after "
              "another, each on the errors of the last, with a rate $\\eta$ and $ k=5 $ rounds.\n\n"
              "```python\nmodel.fit(X, y)  # <b>not bold</b>\n```\n<script>alert(1)</script>")


def _md_item() -> QuizItem:
    from rag.types import Citation

    cite = Citation(n=1, chunk_id="c1", source="ml.md", title="ML", section="Ensembles", page=None, text=MD_PASSAGE)
    return QuizItem(type="mcq", question="Which of these best describes Boosting?",
                    answer="Trains them one after another, each on the errors of the last",
                    explanation="**Boosting**: trains them one after another, each on the errors of the last",
                    options=["Trains models in parallel on **bootstrap** samples",
                             "Trains them one after another, each on the errors of the last",
                             "Removes units at random", "Adds the squared weights to the loss"],
                    citation=cite)


def test_mcq_options_are_lettered_and_the_chosen_and_right_ones_marked(embedder: Any) -> None:
    from rag.quiz import grade_answer
    from rag.settings import QuizSettings
    from ui.quiz_state import Checked
    from ui.tab_quiz import feedback_html, option_choices

    item = _md_item()
    before = option_choices(item)
    assert [label for label, _ in before] == [
        "A) Trains models in parallel on bootstrap samples", "B) Trains them one after another, each on the "
        "errors of the last", "C) Removes units at random", "D) Adds the squared weights to the loss"]
    assert [value for _, value in before] == item.options  # the values stay the options (graded as before)

    wrong = Checked("C", grade_answer(item, "C", embedder, QuizSettings()))  # by letter, as the API may send
    marked = dict((value, label) for label, value in option_choices(item, wrong))
    assert marked[item.options[1]].endswith("✓ right answer") and marked[item.options[2]].endswith("✗ your choice")
    assert not marked[item.options[0]].endswith(("answer", "choice"))
    shown = html.unescape(_text(feedback_html(item, wrong)))
    assert "Not quite." in shown and "Your choice: C) Removes units at random ✗ wrong" in shown
    assert "Right answer: B) Trains them one after another" in shown and "✓ right" in shown
    assert "Answer: D)" not in shown and not re.search(r"(?<![\w(])[1-4]\) [A-Z]", shown)  # letters, not numbers

    right = Checked(item.answer, grade_answer(item, item.answer, embedder, QuizSettings()))
    assert dict((v, lab) for lab, v in option_choices(item, right))[item.answer].endswith("✓ your choice, right")
    assert "Your choice: B) Trains them" in html.unescape(_text(feedback_html(item, right)))


def test_feedback_renders_markdown_safely_and_says_the_explanation_once(embedder: Any) -> None:
    from rag.quiz import grade_answer
    from rag.settings import QuizSettings
    from ui.quiz_state import Checked
    from ui.tab_quiz import feedback_html

    item = _md_item()
    result = Checked("A", grade_answer(item, "A", embedder, QuizSettings()))
    out = feedback_html(item, result)
    assert "**" not in out and "```" not in out and "$" not in out  # nothing half-raw
    assert "<strong>Boosting</strong>" in out and "<strong>bootstrap</strong>" in out
    assert '<pre class="sb-code"><code>model.fit(X, y)  # &lt;b&gt;not bold&lt;/b&gt;</code></pre>' in out
    assert "η" in out and "k=5" in out  # math as text with its symbols
    assert "<script" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    # The explanation is the quoted sentence: said once (as the quote), not twice.
    quote = result.grade.quote
    assert "Boosting" in quote and "sb-quiz-explanation" not in out
    # the right option and the quote (the whole passage is folded away below them)
    assert _text(out.split("<details")[0]).count("each on the errors of the last") == 2
    # An explanation that says something else is shown, once.
    other = replace(item, explanation="Boosting reduces bias; bagging reduces variance.")
    out = feedback_html(other, Checked("A", grade_answer(other, "A", embedder, QuizSettings())))
    assert out.count("reduces bias") == 1 and "sb-quiz-explanation" in out


def test_the_cli_feedback_names_the_letter_and_says_the_explanation_once(embedder: Any) -> None:
    from rag.quiz import grade_answer
    from rag.settings import QuizSettings
    from ui.render import grade_feedback

    item = _md_item()
    grade = grade_answer(item, "A", embedder, QuizSettings())
    text = grade_feedback(grade, item.options)
    assert "Answer: B) Trains them one after another" in text
    assert text.count("each on the errors of the last") == 2  # the answer and the quote, no explanation line
    assert "Answer: Trains" in grade_feedback(grade)  # without the options: no letter


# --- what a student reads while waiting, and when the questions are ready (items 8 and 9) ----------------
def test_the_ready_line_is_for_students_and_drops_go_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from ui.quiz_state import _generated_note

    with caplog.at_level("INFO", logger="ui.quiz_state"):
        assert _generated_note(3, 3, 2) == "3 questions ready."
        short = _generated_note(1, 5, 9)
    assert short.startswith("1 question ready (you asked for 5)")
    for note in ("3 questions ready.", short):
        assert not re.search(r"validat|dropped|generated|item", note), note
    assert "2 generated item(s) failed validation" in caplog.text and "9 generated" in caplog.text


def test_start_quiz_says_ready_without_internal_counts(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    st = start_quiz(svc, quiz_sessions(), "regularization", "mcq", 2)
    assert st.message == "2 questions ready." and "validation" not in view(st).status_html


def test_a_background_job_reports_its_steps_and_its_result() -> None:
    import threading

    from ui.quiz_state import Background, quiz_step
    from ui.render import working_html

    gate = threading.Event()

    def work(progress: Callable[[str, int, int], None]) -> str:
        progress("writing question 2 of 3", 1, 3)
        gate.wait(10)
        return "made"

    job = Background(work)
    assert not job.wait(0.2) and job.step == ("writing question 2 of 3", 1, 3)
    assert quiz_step(*job.step) == "Making question 2 of 3… (1 ready)"
    shown = working_html("Making a quiz on “x”", quiz_step(*job.step), done=1, total=3, elapsed=20.0)
    assert 'aria-valuemax="3" aria-valuenow="1"' in shown and "width:33%" in shown and "sb-work-busy" in shown
    assert "20 s so far · about 40 s left" in shown and "&lt;" not in shown
    assert quiz_step("writing question 1 of 3", 0, 3) == "Making question 1 of 3… (0 ready)"
    assert quiz_step("done", 3, 3).startswith("Saving")
    gate.set()
    assert job.wait(5) and job.result() == "made"

    def fails(progress: Callable[[str, int, int], None]) -> str:
        raise ValueError("boom")

    bad = Background(fails)
    assert bad.wait(5)
    with pytest.raises(ValueError, match="boom"):
        bad.result()
    assert "width:0%" in working_html("Writing a guide", "…") and "left" not in working_html("W", "…", elapsed=9)


# --- export ------------------------------------------------------------------------------------------------
def test_export_files_parse_back(quiz_svc: Callable[..., Any], tmp_path: Path) -> None:
    svc = quiz_svc()
    st = start_quiz(svc, quiz_sessions(), "L1/L2 regularization", "mcq", 2)
    assert st.error == "", st.error
    items = list(st.items)

    csv_path = Path(export_quiz(st, "CSV", tmp_path) or "")
    assert csv_path.parent == tmp_path and csv_path.suffix == ".csv"
    assert re.fullmatch(r"studybot-quiz-[a-z0-9-]+-[0-9a-f]{1,12}\.csv", csv_path.name), csv_path.name
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["question"] for r in rows] == [i.question for i in items]
    assert [r["answer"] for r in rows] == [i.answer for i in items]
    assert [r["options"].split(" | ") for r in rows] == [i.options for i in items]
    assert rows[0]["source"] == items[0].citation.source

    txt = Path(export_quiz(st, "Anki text (.txt)", tmp_path) or "")
    lines = txt.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#separator:tab"
    notes = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    assert len(notes) == 2 and all(len(n) == 2 for n in notes)
    assert all("<b>" in back for _, back in notes)

    apkg = Path(export_quiz(st, "Anki deck (.apkg)", tmp_path) or "")
    assert zipfile.is_zipfile(apkg)
    # The state comes from the browser: a hostile topic or id never becomes a path.
    evil = replace(st, topic="../../../etc/passwd", id="../../x")
    out = Path(export_quiz(evil, "no such format", tmp_path) or "")
    assert out.parent == tmp_path and out.name == "studybot-quiz-etc-passwd-quiz.csv"
    assert set(EXPORT_FORMATS.values()) == {".csv", ".apkg", ".txt"}
    # nothing to export before a quiz
    assert export_quiz(QuizState(), "CSV", tmp_path) is None


def test_export_default_dir_is_private(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(good("flashcard"))
    st = start_quiz(svc, quiz_sessions(), "regularization", "flashcard", 1)
    path = Path(export_quiz(st, "CSV") or "")
    assert path.is_file() and path.parent.name.startswith("studybot-quiz-")


# --- errors and escaping -----------------------------------------------------------------------------------
def test_unknown_topic_shows_one_sentence(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()  # no replies: any model call fails the test
    sessions = quiz_sessions()
    st = start_quiz(svc, sessions, "medieval French <i>poetry</i>", "mcq", 3)
    assert st.items == () and st.error.startswith("The handbooks have nothing on")
    v = view(st)
    assert "medieval French &lt;i&gt;poetry&lt;/i&gt;" in v.status_html and "<i>" not in v.status_html
    assert "Traceback" not in v.status_html and not v.can_check and not v.show_options
    assert svc.llm.calls == [] and len(sessions) == 0

    for bad in (0, 11, "many"):
        st = start_quiz(svc, sessions, "regularization", "mcq", bad)
        assert st.items == () and ("between 1 and 10" in st.error or "number from 1 to 10" in st.error)
    st = start_quiz(svc, sessions, "regularization", "essay", 2)
    assert "Unknown question type" in st.error
    assert svc.llm.calls == []


XSS_DOC = (
    "# Zebra boosting\n\n## Striped learners\n\n"
    "Zebra boosting trains striped weak learners in alternating order <script>alert('xss')</script> and "
    "combines their votes with stripe weights. Each zebra learner sees the residual stripes of the previous "
    "one, so the ensemble of zebra learners reduces bias step by step <img src=x onerror=alert(1)>.\n"
)


def test_document_text_is_escaped_in_question_and_feedback(corpus_settings: Settings, embedder: Any,
                                                           tmp_path: Path) -> None:
    from ui.service import StudyService

    doc = tmp_path / "zebra.md"
    doc.write_text(XSS_DOC, encoding="utf-8")

    def glossary(messages: list[dict[str, str]]) -> str:
        if "Zebra boosting" not in messages[-1]["content"]:
            return glossary_of(messages)
        return json.dumps({"terms": [{"term": "<b>Zebra</b> boosting", "definition":
                                      "trains striped weak learners in alternating order <script>alert('xss')</script>"}]})

    llm = PassageLLM(glossary=glossary, texts=[XSS_DOC.replace("Zebra boosting trains", "<b>Zebra</b> boosting trains")])
    svc = StudyService(corpus_settings, llm=llm, embedder=embedder)
    llm.read([c.text for c in svc.retriever.chunks.values()])
    assert [r.ok for r in svc.add_documents([doc])] == [True]
    st = start_quiz(svc, quiz_sessions(), "zebra boosting striped learners", "mcq", 1)
    assert st.error == "", st.error
    item = _item(st)
    assert item.citation.source == "uploads/zebra.md" and "<script>" in item.citation.text
    v = view(st)
    # the radio shows options as text (its labels are not HTML), "A) ..." before each
    assert item.answer in [o for _, o in v.options] and "<script>" in item.answer
    assert any(label.endswith(item.answer) and label[1:3] == ") " for label, _ in v.options)
    assert "<b>Zebra" not in v.question_html and "&lt;b&gt;Zebra&lt;/b&gt; boosting" in v.question_html

    wrong = next(o for o in item.options if o != item.answer)
    st = check_answer(svc, st, wrong)
    html_out = view(st).feedback_html
    assert "<script" not in html_out and "<img" not in html_out and "<b>Zebra" not in html_out
    assert "&lt;script&gt;alert(&#x27;xss&#x27;)&lt;/script&gt;" in html_out  # the key and passage, as text
    assert "uploads/zebra.md" in html_out and "Striped learners" in html_out


# --- the tab in the app ----------------------------------------------------------------------------------
class HeldMCQ(PassageLLM):
    """PassageLLM whose MCQ work (its glossary calls) waits for :attr:`release`: a streamed MCQ quiz's first
    question (a flashcard, nothing being banked) is shown while its second is still being made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()

    def generate(self, messages: list[dict[str, str]], request: Request) -> Any:
        if request.json_schema == GLOSSARY_SCHEMA:
            assert self.release.wait(120), "the test never released the model"
        return super().generate(messages, request)


@pytest.fixture
def served(corpus_settings: Settings, embedder: Any) -> Iterator[dict[str, Any]]:
    from ui.service import StudyService

    llm = HeldMCQ([good("flashcard") for _ in range(4)])
    svc = StudyService(corpus_settings, llm=llm, embedder=embedder)
    llm.read([c.text for c in svc.retriever.chunks.values()])
    try:
        with served_app(svc) as served:
            yield {**served, "llm": llm, "svc": svc}
    finally:
        llm.release.set()


def test_tab_is_in_the_app_with_its_ids_and_queue(corpus_service: Any) -> None:
    from ui.app import build_app

    app = build_app(corpus_service)
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    for name in ("topic", "type", "count", "start", "question", "options", "answer", "check", "feedback",
                 "next", "score", "more", "export", "export-format", "status", "making", "bank", "bank-sections"):
        assert f"sb-quiz-{name}" in ids, name
    fns = {fn.api_name: fn for fn in app.fns.values()}
    assert fns["quiz_start"].concurrency_id == "llm" and fns["quiz_more"].concurrency_id == "llm"
    assert "quiz_check" in fns and "quiz_next" in fns
    # Next may wait for a question being made: never in the model's queue, never one at a time for everybody.
    assert fns["quiz_next"].concurrency_id != "llm" and fns["quiz_next"].concurrency_limit is None


def test_quiz_through_the_served_app(served: dict[str, Any]) -> None:
    """The quiz streams through the app: /quiz_start returns once the first question exists (here a flashcard:
    an MCQ quiz with nothing in the question bank starts with one) while the second is still being made, and
    /quiz_next waits for it. (Before streaming, /quiz_start returned every question at once.)"""
    client, llm = served["client"], served["llm"]
    out = client.predict("regularization", "mcq", 2, "CSV", api_name="/quiz_start")
    # The client returns the outputs that carry data (no state, no buttons):
    # question, options, answer box, feedback, score, status, export, the progress display of the rest.
    assert len(out) == 8
    question_html, options, answer_box, feedback, score_html, status, export, making = out
    assert "Card 1 of 2" in question_html and "ready" not in status and feedback == "" and score_html == ""
    assert options["visible"] is False and answer_box["visible"] is True
    assert 'class="sb-work"' in making and "Question 2 of 2 is being made" in making and "1 of 2 ready" in making
    assert export["interactive"] is True and export["value"].endswith(".csv")
    with open(export["value"], newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 1  # the questions so far

    # The flashcard is answered while the MCQ is made: turned over, and Next is offered for the one to come.
    out = client.predict(None, "", "CSV", api_name="/quiz_check")
    assert 'data-verdict="revealed"' in out[3] and out[4] == "" and "1 of 2 answered, 0 correct" in out[5]
    llm.release.set()
    out = client.predict("CSV", api_name="/quiz_next")  # waits until question 2 is made
    assert "Question 2 of 2" in out[0] and out[3] == "" and out[1]["value"] is None
    assert out[1]["visible"] is True and len(out[1]["choices"]) == 4 and 'class="sb-work"' not in out[7]
    with open(out[6]["value"], newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 2

    # The key is the asked term's definition in the glossaries the quiz was built from.
    known = served["svc"].glossary.known(list(served["svc"].retriever.chunks.values()))

    def key(question_html: str, choices: list[Any]) -> str:
        term = re.search(r"Which of these best describes (.+?)\?", html.unescape(_text(question_html)))
        assert term
        defs = {normalize(e.definition) for e in known if e.term == term.group(1)}
        return next(value for _, value in choices if normalize(value) in defs)

    right = key(out[0], out[1]["choices"])
    out = client.predict(right, "", "CSV", api_name="/quiz_check")
    assert 'data-verdict="correct"' in out[3] and "Score: 1/2" in out[4] and "2 of 2 answered, 1 correct" in out[5]
    assert out[1]["interactive"] is False and out[1]["value"] == right

    # The client keeps its session: "more questions" adds a round to the same quiz (4 questions to export
    # once its second is made).
    out = client.predict("Anki text (.txt)", api_name="/quiz_more")
    assert re.search(r"(Card|Question) 1 of 2", out[0]) and out[4] == ""
    checked = client.predict(None, "", "Anki text (.txt)", api_name="/quiz_check")
    assert checked[3] and "Score" not in checked[4]
    out = client.predict("Anki text (.txt)", api_name="/quiz_next")
    assert "2 of 2" in out[0]
    # The export is rewritten by whichever of the two saw the round's second question arrive.
    exports = [o[6]["value"] for o in (checked, out) if isinstance(o[6], dict) and o[6].get("value")]
    assert exports and exports[-1].endswith(".txt")
    notes = [ln for ln in Path(exports[-1]).read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    assert len(notes) == 4 and all(ln.count("\t") == 1 for ln in notes)
