"""The quiz-type registry (rag.quiz.types): the built-in types as entries, and a fourth type registered here,
in this file only - a true-or-false statement written by a scripted model - that the CLI's choices, generation,
validation, grading, the Quiz and Review tabs, the question bank and the exports pick up with no other edit. Real ingest, embedder and
SQLite; the model is scripted (tests.fakes) and injected through the service's constructor."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.quiz import QuizError, QuizItem, QuizSession, QuizType, register, type_of, unregister
from rag.quiz.grading import grade_choice
from rag.quiz.models import string_schema
from rag.quiz.text import clean_field
from rag.quiz.types import (
    ANSWER_MAX_CHARS,
    BANK_TYPES,
    FAST_FIRST,
    QUIZ_TYPES,
    SCHEMAS,
    quiz_types,
    spoken_choices,
    type_choices,
)
from rag.settings import Settings
from rag.types import Chunk, Citation
from tests.fakes import PassageLLM, ScriptedLLM, passage_of
from tests.helpers import MODELS_CACHE
from ui import cli, tab_quiz, tab_review
from ui.quiz_export import export_items
from ui.quiz_state import QuizState, check_answer
from ui.service import StudyService

# --- the fourth type: everything it is, in one place ---------------------------------------------------------
TF_SCHEMA = {
    "type": "object",
    "properties": {"statement": string_schema(10, 200), "answer": {"type": "string", "enum": ["True", "False"]},
                   "explanation": string_schema(10, 220)},
    "required": ["statement", "answer", "explanation"],
}
TF_TEMPLATE = ('<passage from="{title} — {section}">\n{text}\n</passage>\n\n'
               "Write one statement about this passage{focus} that is either true or false, and say which.{avoid}")
TF_OPTIONS = ["True", "False"]


def parse_statement(data: dict[str, Any], name: str, chunk: Chunk) -> QuizItem:
    answer = str(data.get("answer"))
    if answer not in TF_OPTIONS:
        raise ValueError(f"the answer {answer!r} is neither True nor False")
    return QuizItem(name, clean_field(data.get("statement")), answer, clean_field(data.get("explanation")),
                    list(TF_OPTIONS), Citation.of(1, chunk))


def check_statement(item: QuizItem) -> str | None:
    return None if item.options == TF_OPTIONS and item.answer in TF_OPTIONS else "the options are not True/False"


TRUE_FALSE = QuizType(name="truefalse", label="True or false", schema=TF_SCHEMA, template=TF_TEMPLATE,
                      max_tokens=120, parse=parse_statement, check=check_statement, grade=grade_choice, choice=True,
                      noun="Statement", bank_rank=3)


@pytest.fixture
def truefalse() -> Iterator[QuizType]:
    register(TRUE_FALSE)
    yield TRUE_FALSE
    unregister(TRUE_FALSE.name)


def statement(truth: str = "True") -> Callable[[list[dict[str, str]]], str]:
    """The scripted model's reply to the true-or-false prompt: the last sentence of the passage it was given
    (the passages' first sentences are alike: "L1/L2 regularization adds the sum of ...")."""

    def reply(messages: list[dict[str, str]]) -> str:
        _, text = passage_of(messages)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.split()) >= 6]
        return json.dumps({"statement": sentences[-1], "answer": truth,
                           "explanation": "The handbook states this in these words."})

    return reply


# --- a small library, ingested for real ---------------------------------------------------------------------
L1 = ("L1 regularization adds the sum of the absolute values of the weights to the loss function. It drives "
      "many weights to exactly zero, which gives sparse models that select features. Lasso regression is the "
      "linear model trained with this penalty, and its strength is set by the lambda hyperparameter.")
L2 = ("L2 regularization adds the sum of the squared weights to the loss function. It shrinks every weight "
      "smoothly toward zero without making any of them exactly zero. Ridge regression is the linear model "
      "trained with this penalty, which also helps when features are strongly correlated.")
DROPOUT = ("Dropout randomly disables a fraction of the units of a neural network at every training step. The "
           "network cannot rely on any single unit, so it learns redundant features and overfits less. At test "
           "time every unit is kept and the activations are scaled to match training.")


@pytest.fixture
def library(tmp_path: Path, embedder: Any) -> Callable[..., StudyService]:
    """``library(llm)``: a service over one handbook (L1, L2, dropout) ingested into its own home."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "reg.md").write_text("# Regularization\n\n" + "".join(
        f"## {name}\n\n{text}\n\n" for name, text in {"L1": L1, "L2": L2, "Dropout": DROPOUT}.items()))
    settings = Settings(storage={"home": tmp_path / "home", "corpus_dir": corpus, "models_cache": MODELS_CACHE})

    def make(llm: Any) -> StudyService:
        return StudyService(settings, embedder=embedder, llm=llm)

    return make


# --- the registry ------------------------------------------------------------------------------------------
def test_the_built_in_types_are_registry_entries() -> None:
    assert list(QUIZ_TYPES) == ["mcq", "short", "flashcard"]
    assert type_choices() == [("Multiple choice", "mcq"), ("Short answer", "short"), ("Flashcard", "flashcard")]
    assert spoken_choices() == "multiple choice, short answer or flashcard"
    assert [t.many for t in quiz_types()] == ["multiple choice", "short answers", "flashcards"]
    assert list(BANK_TYPES) == ["flashcard", "short", "mcq"] and dict(FAST_FIRST) == {"mcq": "flashcard"}
    assert dict(ANSWER_MAX_CHARS) == {"mcq": 110, "short": 200, "flashcard": 240}
    assert set(SCHEMAS) == {"short", "flashcard"}  # an MCQ is made from glossaries, not from a schema of its own
    from rag.quiz.glossary import DEFINITION_MAX_CHARS  # the glossary's schema reads the MCQ type's bound

    assert ANSWER_MAX_CHARS["mcq"] == DEFINITION_MAX_CHARS
    item = QuizItem("essay", "Discuss regularization.", "It limits complexity.", "", [],
                    Citation(n=1, chunk_id="c1", source="x.md", title="T", section="S", page=None, text=L1))
    assert type_of(item).choice is False and type_of(item).noun == "Question"  # unknown: free text


def test_a_type_is_registered_once_with_a_way_to_be_made() -> None:
    with pytest.raises(QuizError, match="registered already"):
        register(QuizType(name="short", label="Short again", schema=TF_SCHEMA))
    with pytest.raises(QuizError, match="JSON schema"):
        register(QuizType(name="essay", label="Essay"))
    with pytest.raises(QuizError, match="one word"):
        register(QuizType(name="true false", label="True or false", schema=TF_SCHEMA))
    assert list(QUIZ_TYPES) == ["mcq", "short", "flashcard"]


def test_an_unregistered_type_is_refused_in_one_sentence(library: Callable[..., StudyService],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    svc = library(ScriptedLLM())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["quiz", "--type", "truefalse", "--json"], service=svc)
    assert exit_.value.code == 2
    assert "invalid choice: 'truefalse'" in capsys.readouterr().err
    with pytest.raises(QuizError) as err:
        svc.quiz("regularization", 1, "truefalse")
    assert str(err.value) == "Unknown quiz type 'truefalse': use one of mcq, short, flashcard."


# --- a fourth type, registered above and nowhere else -----------------------------------------------------------
def test_a_registered_type_is_made_graded_banked_and_exported(
        truefalse: QuizType, library: Callable[..., StudyService], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert "truefalse" in QUIZ_TYPES and "truefalse" in BANK_TYPES and SCHEMAS["truefalse"] == TF_SCHEMA
    assert ("True or false", "truefalse") in type_choices()
    maybe = json.dumps({"statement": "Dropout adds noise to training.", "answer": "Maybe", "explanation": "No."})
    # The quiz's passages are L2 and L1 (dropout is too far from "regularization"), taken in turn.
    llm = PassageLLM(["not JSON", maybe, statement(), statement("False")])
    svc = library(llm)
    assert svc.ingest().ok

    # The CLI offers it and the model writes it from the type's template and schema; the type's parser and
    # check run, and an unusable reply is dropped as for any type.
    out = tmp_path / "tf.csv"
    assert cli.main(["quiz", "--topic", "regularization", "-n", "2", "--type", "truefalse", "--json",
                     "--export", str(out), "--seed", "1"], service=svc) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["type"] == "truefalse" and len(data["items"]) == 2 and data["dropped"] == 2
    assert [i["answer"] for i in data["items"]] == ["True", "False"]
    assert all(i["options"] == TF_OPTIONS and i["type"] == "truefalse" for i in data["items"])
    call = llm.calls[2]
    assert call["json_schema"] == TF_SCHEMA and call["max_tokens"] == 120
    assert "either true or false" in call["messages"][-1]["content"]
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["options"] for r in rows] == ["True | False"] * 2 and rows[1]["answer"] == "False"

    # Graded by choice: the option or its letter.
    items = [QuizItem.from_json(i) for i in data["items"]]
    right, wrong, by_letter = svc.grade(items[0], "True"), svc.grade(items[0], "B"), svc.grade(items[1], "b")
    assert right.correct and right.mcq and not wrong.correct and wrong.verdict == "incorrect"
    assert by_letter.correct and by_letter.score == 1.0

    # The Quiz tab: offered in its type menu, shown as options to pick from under the type's noun, and a blank
    # answer asks for a pick; the Review tab letters its answer.
    st = QuizState(type="truefalse", n=2, items=tuple(items), results=(None, None), rounds=1)
    view = tab_quiz.view(st)
    assert view.show_options and not view.show_answer_box and "Statement 1 of 2" in view.question_html
    assert [value for _, value in view.options] == TF_OPTIONS
    assert "Pick one of the two options first." in tab_quiz.view(check_answer(svc, st, "")).status_html
    checked = check_answer(svc, st, "A")
    assert checked.results[0] is not None and checked.results[0].grade.correct
    assert tab_quiz.view(checked).options[0][0].endswith("✓ your choice, right")
    svc.study.add_items("ann", items[1:])
    card = tab_review.view(svc, "ann", tab_review.reveal(tab_review.load(svc, "ann")))
    assert '<b>Answer:</b> <span class="sb-quiz-letter">B)</span> False' in card.answer_html

    # Anki: the options lettered on the front, the answer with its letter on the back.
    anki = export_items(items, tmp_path / "tf.txt", qtype="truefalse")
    front, back = anki.read_text(encoding="utf-8").splitlines()[3].split("\t")
    assert front.endswith("<br>A) True<br>B) False") and back.startswith("A) <b>True</b>")

    # The bank fills it like any bank-able type, and a quiz of it is then served without a model call.
    filler = library(PassageLLM([statement(), statement()]))
    assert filler.fill_bank("regularization", ["truefalse"], limit=2).made == 2
    assert filler.bank_status().by_type.get("truefalse") == 2
    served = library(ScriptedLLM())  # no reply scripted: a model call fails the test
    quiz = served.quiz("regularization", 2, "truefalse", session=QuizSession(2))
    assert quiz.banked == 2 and served.llm.calls == []  # type: ignore[attr-defined]
    assert all(i.type == "truefalse" and sorted(i.options) == ["False", "True"] for i in quiz.items)


def test_the_cli_prints_and_asks_a_registered_type_with_its_letters(
        truefalse: QuizType, library: Callable[..., StudyService], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    svc = library(PassageLLM([statement("False")]))
    assert svc.ingest().ok
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "B")
    assert cli.main(["quiz", "--topic", "dropout", "-n", "1", "--type", "truefalse", "--ask"], service=svc) == 0
    out = capsys.readouterr().out
    assert asked == ["your answer (A-B): "] and "A) True\n   B) False" in out
    assert "Correct." in out and "score: 1/1" in out
