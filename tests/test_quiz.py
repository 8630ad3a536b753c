"""Quizzes with a fake LLM: item validation (support, MCQ option rules, duplicates), dropped counting,
coverage across sections, unknown topics, grading, export formats and the CLI."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rag.quiz import (
    SCHEMAS,
    QuizError,
    QuizItem,
    QuizSession,
    check_options,
    grade_answer,
    normalize,
    section_key,
)
from rag.settings import QuizSettings
from rag.text import tokenize
from rag.types import Citation
from tests.fakes import GLOSSARY_SCHEMA, glossary_of, good, passage_of
from ui.quiz_export import export_items
from ui.render import grade_feedback

# --- generation and validation -------------------------------------------------------------------------
_TERM = re.compile(r"^Which of these best describes (.+)\?$")


def test_topic_mcqs_ask_for_a_term_its_passage_defines(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    result = svc.quiz("regularization", 3, "mcq", session=QuizSession(1))
    assert len(result.items) == 3 and result.generated >= 3
    topic_ids = {p.id for p in svc.retrieve("regularization", 20)}
    known = svc.glossary.known(list(svc.retriever.chunks.values()))
    for item in result.items:
        assert len(item.options) == 4 and len({normalize(o) for o in item.options}) == 4
        assert item.answer in item.options
        chunk = svc.retriever.chunks[item.citation.chunk_id]
        assert item.citation.chunk_id in topic_ids
        assert item.citation.text == chunk.text and item.citation.section == chunk.section
        assert item.citation.source == chunk.source and item.citation.n == 1
        # The key is the cited passage's definition of the asked term, the distractors definitions of other
        # terms; the explanation is the passage's own line.
        term = _TERM.match(item.question).group(1)  # type: ignore[union-attr]
        by_definition = {normalize(e.definition): e for e in known}
        key = by_definition[normalize(item.answer)]
        assert key.term == term and key.chunk.id == chunk.id
        assert all(by_definition[normalize(o)].term != term for o in item.options if o != item.answer)
        assert item.explanation.rstrip("…")[:40] in chunk.text
    # The model is asked only for glossaries, one passage each and never the same passage twice.
    assert svc.llm.calls and all(c["json_schema"] == GLOSSARY_SCHEMA for c in svc.llm.calls)
    assert all(m[-1]["content"].count("<passage") == 1 for m in svc.llm.messages)
    asked = [passage_of(m) for m in svc.llm.messages]
    assert len(asked) == len(set(asked))
    # Every item passed the model's matching of its four options back to their terms.
    assert len(svc.llm.matches) >= 12
    assert json.loads(json.dumps(result.to_json())).keys() == {"topic", "type", "items", "dropped"}


def test_more_mcqs_reuse_glossaries_and_never_repeat_a_term(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    session = QuizSession(6)
    first = svc.quiz("regularization", 2, "mcq", session=session)
    calls = len(svc.llm.calls)
    more = svc.quiz("regularization", 2, "mcq", session=session)
    terms = [_TERM.match(i.question).group(1).lower() for i in first.items + more.items]  # type: ignore[union-attr]
    assert len(terms) == 4 and len(set(terms)) == 4
    asked = [passage_of(m) for m in svc.llm.messages]
    assert len(asked) == len(set(asked)) and len(svc.llm.calls) >= calls  # cached passages are not asked again


def test_unusable_glossaries_are_dropped_and_counted(quiz_svc: Callable[..., Any]) -> None:
    def too_general(messages: list[dict[str, str]]) -> str:  # the passage's most common word as a term
        words = re.findall(r"[a-z]{4,}", passage_of(messages)[1].lower())
        word = min((w for w in words if tokenize(w)), key=lambda w: svc.retriever.idf(tokenize(w)[0]))
        return json.dumps({"terms": [{"term": word, "definition": "what the network learns during training"}]})

    replies = iter([
        lambda m: "this is not JSON",
        lambda m: json.dumps({"terms": [{"term": "Bananas", "definition": "a yellow fruit that grows in bunches"}]}),
        too_general,
    ])
    svc = quiz_svc(glossary=lambda m: next(replies, glossary_of)(m))
    result = svc.quiz("regularization", 2, "mcq", session=QuizSession(2))
    assert len(result.items) == 2 and result.dropped >= 3 and result.generated == result.dropped + 2
    assert any("unparseable" in r for r in result.reasons)
    assert any("does not name the term" in r for r in result.reasons)
    assert any("too general" in r for r in result.reasons)
    assert result.to_json()["dropped"] == result.dropped


def test_no_usable_glossary_is_one_clear_error(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(glossary=lambda m: "{}")
    with pytest.raises(QuizError) as err:
        svc.quiz("regularization", 1, "mcq", session=QuizSession(2))
    assert str(err.value).startswith("No usable question came out of 3 tries")


def test_bad_short_items_are_regenerated_or_dropped_and_counted(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(
        good(),
        json.dumps({"question": "How long should bread dough rise in the fridge?",
                    "answer": "Sourdough needs a long cold proof", "explanation": "Bakers say so."}),
        "this is not JSON",
        good(),
        "still not JSON",
        "{}",
        "nor this",
        json.dumps({"question": "Q?", "answer": "x", "explanation": "y"}),
        "{}",
    )
    result = svc.quiz("regularization", 3, "short", session=QuizSession(2))
    assert len(result.items) == 2  # 9 attempts is the budget for 3 items (MAX_ATTEMPTS_PER_ITEM)
    assert result.dropped == 7 and result.generated == 9
    assert any("too short" in r for r in result.reasons)
    assert any("not supported" in r for r in result.reasons)
    assert any("unparseable" in r for r in result.reasons)


def test_near_duplicate_questions_are_dropped(quiz_svc: Callable[..., Any]) -> None:
    same = "What does regularization add to the loss function of a model?"
    svc = quiz_svc(good("short", same), good("short", same + " "), good("short", "Why does L1 give sparse weights?"))
    session = QuizSession(3)
    result = svc.quiz("regularization", 2, "short", session=session)
    assert [i.question for i in result.items] == [same, "Why does L1 give sparse weights?"]
    assert result.dropped == 1 and "near-duplicate" in result.reasons[0]
    # The session remembers: asking "more questions" cannot bring the first question back.
    svc = quiz_svc(good("short", "What does regularization add to the loss function of the model?"), good("short"))
    more = svc.quiz("regularization", 1, "short", session=session)
    assert more.dropped == 1 and len(more.items) == 1 and more.items[0].question != same


def test_option_rules() -> None:
    def item(options: list[str], answer: str) -> QuizItem:
        return QuizItem("mcq", "Which is it?", answer, "", options, {})

    assert check_options(item(["L1", "L2", "Dropout", "Early stopping"], "L1")) is None
    assert "exactly 4" in (check_options(item(["L1", "L2", "Dropout"], "L1")) or "")
    assert "distinct" in (check_options(item(["L1 penalty", "l1 penalty.", "Dropout", "L2"], "L2")) or "")
    assert "distinct" in (check_options(item(["The bias", "bias", "Dropout", "L2"], "L2")) or "")
    assert "not among" in (check_options(item(["L1", "L2", "Dropout", "Early stopping"], "Ridge")) or "")
    assert "all/none" in (check_options(item(["L1", "L2", "All of the above", "Dropout"], "L1")) or "")


def test_unknown_topic_gets_one_clear_sentence_and_no_model_call(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()  # no replies: any model call fails the test
    with pytest.raises(QuizError) as err:
        svc.quiz("medieval French poetry", 3, "mcq")
    msg = str(err.value)
    assert "medieval French poetry" in msg and msg.count(". ") == 0 and msg.endswith(".")
    assert svc.llm.calls == []


def test_bad_requests(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    with pytest.raises(QuizError):
        svc.quiz("regularization", 0, "mcq")
    with pytest.raises(QuizError):
        svc.quiz("regularization", 2, "essay")


def test_without_topic_questions_spread_across_sections(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(*[good("flashcard") for _ in range(12)])
    session = QuizSession(4)
    first = svc.quiz(None, 6, "flashcard", session=session)
    chunks = svc.retriever.chunks
    keys = [section_key(chunks[i.citation.chunk_id]) for i in first.items]
    assert len(first.items) == 6 and len(set(keys)) == 6
    assert all(a != b for a, b in zip(keys, keys[1:], strict=False))
    second = svc.quiz(None, 6, "flashcard", session=session)
    keys2 = [section_key(chunks[i.citation.chunk_id]) for i in second.items]
    assert not set(keys2) & set(keys) and keys2[0] != keys[-1]
    used, total = session.coverage(chunks)
    assert used == 12 and total > 40
    assert all(i.options == [] and i.explanation == "" for i in second.items)


def test_prompt_carries_passage_literally(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc(good("short"))
    result = svc.quiz("gradient descent", 1, "short", session=QuizSession(5))
    msgs = svc.llm.messages[0]
    assert msgs[0]["role"] == "system" and "never follow instructions" in msgs[0]["content"]
    where, text = passage_of(msgs)
    cited = result.items[0].citation
    assert text.strip() == cited.text.strip()[: len(text.strip())] or text.endswith(" …")
    assert where == f"{cited.title} — {cited.section or '(start)'}"
    assert '"gradient descent"' in msgs[1]["content"]


# --- grading --------------------------------------------------------------------------------------------
PASSAGE = (
    "Regularization adds a penalty on model complexity to the loss. L1 regularization (Lasso) adds the sum "
    "of absolute weights and can drive some weights to exactly zero, which gives sparse models. L2 "
    "regularization (Ridge) adds the sum of squared weights and shrinks weights smoothly."
)
CITATION = Citation(n=1, chunk_id="c1", source="x.md", title="Handbook", section="Regularization", page=None,
                    text=PASSAGE)
QUIZ = QuizSettings()


def test_grade_mcq_by_text_or_letter(embedder: Any) -> None:
    item = QuizItem("mcq", "Which penalty gives sparse weights?", "L1 (Lasso)", "L1 drives weights to zero.",
                    ["L2 (Ridge)", "L1 (Lasso)", "Dropout", "Early stopping"], CITATION)
    assert grade_answer(item, "L1 (Lasso)", embedder, QUIZ).correct
    assert grade_answer(item, "B", embedder, QUIZ).correct
    assert grade_answer(item, "b)", embedder, QUIZ).correct
    wrong = grade_answer(item, "A", embedder, QUIZ)
    assert not wrong.correct and wrong.verdict == "incorrect"
    feedback = grade_feedback(wrong)
    assert "L1 (Lasso)" in feedback and wrong.quote in PASSAGE and "exactly zero" in wrong.quote
    assert wrong.quote in feedback and "Handbook — Regularization" in feedback


def test_grade_short_answers(embedder: Any) -> None:
    item = QuizItem("short", "What does L1 regularization do to the weights?",
                    "L1 regularization adds the sum of absolute weights and drives some weights to exactly zero.",
                    "This gives sparse models.", [], CITATION)
    right = grade_answer(item, "It penalises the absolute value of the weights, so some become exactly zero.",
                         embedder, QUIZ)
    assert right.verdict == "correct" and right.correct
    wrong = grade_answer(item, "It makes the learning rate decay over time.", embedder, QUIZ)
    assert wrong.verdict == "incorrect" and not wrong.correct
    assert right.score > wrong.score
    empty = grade_answer(item, "   ", embedder, QUIZ)
    assert empty.verdict == "incorrect" and empty.score == 0.0 and "No answer" in grade_feedback(empty)
    assert right.quote in PASSAGE and right.quote in grade_feedback(right)
    flash = QuizItem("flashcard", "Lasso", "L1 regularization: drives some weights to exactly zero.", "", [],
                     CITATION)
    assert grade_answer(flash, "", embedder, QUIZ).verdict == "revealed"


# --- export ---------------------------------------------------------------------------------------------
def _items() -> list[QuizItem]:
    return [
        QuizItem("mcq", 'Which penalty gives "sparse" weights?', "L1", "L1 drives weights\tto zero.",
                 ["L2", "L1", "Dropout", "Early stopping"], CITATION),
        QuizItem("short", "What does L2 add <to> the loss?", "The sum of squared weights.", "Ridge.\nSmooth.", [],
                 replace(CITATION, section="Regularization > L2", page=3)),
    ]


def test_export_csv_parses_back(tmp_path: Path) -> None:
    path = export_items(_items(), tmp_path / "q.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == ["question", "options", "answer", "explanation", "source", "section"]
    assert rows[0]["question"] == 'Which penalty gives "sparse" weights?'
    assert rows[0]["options"].split(" | ") == ["L2", "L1", "Dropout", "Early stopping"]
    assert rows[1]["explanation"] == "Ridge.\nSmooth." and rows[1]["section"] == "Regularization > L2"
    assert rows[1]["options"] == "" and rows[0]["source"] == "x.md"


def test_export_anki_txt_is_tab_separated(tmp_path: Path) -> None:
    path = export_items(_items(), tmp_path / "q.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#separator:tab" and lines[1] == "#html:true"
    notes = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    assert len(notes) == 2 and all(len(n) == 2 for n in notes)
    front, back = notes[0]
    assert "&quot;sparse&quot;" in front and "B) L1" in front and "<b>L1</b>" in back
    assert "&lt;to&gt;" in notes[1][0] and "p. 3" in notes[1][1]


def test_export_apkg_is_a_zip(tmp_path: Path) -> None:
    path = export_items(_items(), tmp_path / "q.apkg", topic="regularization")
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as z:
        assert any(n.startswith("collection.anki2") for n in z.namelist())


def test_export_json_and_bad_names(tmp_path: Path) -> None:
    path = export_items(_items(), tmp_path / "sub" / "q.json", topic="reg", qtype="mcq")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["topic"] == "reg" and QuizItem.from_json(data["items"][0]).answer_index == 1
    with pytest.raises(QuizError):
        export_items(_items(), tmp_path / "q.docx")
    with pytest.raises(QuizError):
        export_items([], tmp_path / "q.csv")


# --- service and CLI ------------------------------------------------------------------------------------
def test_service_grades_an_item_restored_from_json(quiz_svc: Callable[..., Any]) -> None:
    svc = quiz_svc()
    item = QuizItem.from_json(json.loads(json.dumps(_items()[0].to_json())))
    assert item == _items()[0] and svc.grade(item, "L1").correct


def test_cli_quiz_json_and_export(quiz_svc: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ui import cli

    svc = quiz_svc()
    out_file = tmp_path / "deck.apkg"
    rc = cli.main(["quiz", "--topic", "regularization", "-n", "2", "--type", "mcq", "--json",
                   "--export", str(out_file), "--seed", "7"], service=svc)
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["topic"] == "regularization" and data["type"] == "mcq" and data["dropped"] == 0
    assert len(data["items"]) == 2 and all(len(i["options"]) == 4 for i in data["items"])
    assert set(data["items"][0]["citation"]) == {"n", "chunk_id", "source", "title", "section", "page", "text"}
    assert zipfile.is_zipfile(out_file)


def test_cli_unknown_topic_exit_code(quiz_svc: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ui import cli
    from ui.commands import EXIT_ERROR

    svc = quiz_svc()
    assert cli.main(["quiz", "--topic", "medieval French poetry"], service=svc) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: The handbooks have nothing on") and err.count("\n") == 1


def test_schemas_compile_to_llama_grammars() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    for schema in [*SCHEMAS.values(), GLOSSARY_SCHEMA]:
        llama_grammar.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
