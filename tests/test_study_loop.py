"""The study loop on a real SQLite file and the real ingested corpus (scripted model): weak-spot choice and
weak-spot quizzes, the Review and Progress tabs' flows, quiz answers as reviews, saved conversations in the
Chat tab, study guides with citation validation, and the MCQ option checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rag.quiz import QuizError, QuizItem, QuizSession
from rag.quiz.validation import cut_off
from rag.study.store import StudyStore, top_section
from rag.types import Chunk, Citation
from tests.fakes import PassageLLM
from ui import tab_review
from ui.quiz_state import check_answer, quiz_sessions, start_quiz
from ui.render import guide_markdown
from ui.tab_progress import progress_data, summary_html

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def card(q: str, section: str, source: str = "doc.md", chunk: str = "c1") -> QuizItem:
    cite = Citation(n=1, chunk_id=chunk, source=source, title="Doc", section=section, page=None, text="Some text.")
    return QuizItem(type="flashcard", question=q, answer="an answer", explanation="", options=[], citation=cite)


def chunk_item(c: Chunk, q: str) -> QuizItem:
    return QuizItem(type="flashcard", question=q, answer=c.text.split(".")[0], explanation="", options=[],
                    citation=Citation.of(1, c))


# --- weak spots --------------------------------------------------------------------------------------------
def test_weak_spots_are_the_reviewed_sections_below_target_retention(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    ids = store.add_items("ann", [card("A1?", "Bagging > Random forests"), card("A2?", "Bagging > OOB"),
                                  card("B1?", "Boosting"), card("C1?", "PCA"), card("D1?", "SVM")], now=T0)
    a1, a2, b1, c1, _d1 = ids
    store.review("ann", a1, "again", now=T0)
    store.review("ann", a2, "again", now=T0)
    store.review("ann", b1, "good", now=T0)
    store.review("ann", c1, "hard", now=T0)
    later = T0 + timedelta(days=3)
    weak = store.weak_sections("ann", now=later)
    # Bagging (two forgotten cards, both subsections counted in their top-level section) is the weakest;
    # PCA (hard) is weak; Boosting was remembered (good) and SVM was never reviewed: neither is a weak spot.
    assert [w["section"] for w in weak] == ["Bagging", "PCA"]
    mastery = {m["section"]: m for m in store.mastery("ann", now=later)}
    assert mastery["Bagging"]["cards"] == 2 and mastery["Bagging"]["right"] == 0.0
    assert mastery["Boosting"]["right"] == 1.0 and mastery["SVM"]["right"] is None
    assert mastery["Bagging"]["mastery"] == 0.0 and mastery["Boosting"]["mastery"] == 1.0
    assert mastery["Bagging"]["retrievability"] < mastery["Boosting"]["retrievability"]
    assert mastery["SVM"]["mastery"] == 0.0 and mastery["SVM"]["retrievability"] is None
    assert store.weak_sections("bob") == []  # another user has no history


def test_activity_counts_reviews_per_day_and_due_cards_ahead(tmp_path: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite3")
    ids = store.add_items("ann", [card(f"Q{i}?", "S") for i in range(3)], now=T0)
    store.review("ann", ids[0], "good", now=T0)
    store.review("ann", ids[1], "easy", now=T0)
    act = store.activity("ann", now=T0)
    assert act["reviews"][-1] == {"day": "2026-12-01", "count": 2} and len(act["reviews"]) == 14
    # Today: the unreviewed card and the "good" one (a new card's first learning step is minutes); the
    # "easy" one graduates to days ahead.
    assert act["due"][0]["day"] == "2026-12-01" and act["due"][0]["count"] == 2
    assert sum(d["count"] for d in act["due"][1:]) == 1
    assert store.next_due("ann") == T0 and store.next_due("bob") is None


def test_top_section_is_the_first_part_of_the_path() -> None:
    assert top_section("Section 8 — Ensembles > Bagging > OOB") == "Section 8 — Ensembles"
    assert top_section("", "notes.md") == "notes.md"


def test_weak_quiz_draws_only_on_weak_sections_and_never_repeats(quiz_svc: Any) -> None:
    svc = quiz_svc()
    chunks = [c for c in svc.retriever.chunks.values() if c.section and len(c.text) > 300]
    weak_chunk, strong_chunk = chunks[0], next(c for c in chunks if top_section(c.section) != top_section(chunks[0].section))
    ids = svc.record_quiz("ann", [chunk_item(weak_chunk, "What is the first idea of this section?"),
                                  chunk_item(strong_chunk, "What is the other section about?")])
    svc.study.review("ann", ids[0], "again")
    svc.study.review("ann", ids[1], "easy")
    result, weak = svc.weak_quiz("ann", 2, "mcq", session=QuizSession(3))
    assert [w["section"] for w in weak] == [top_section(weak_chunk.section)]
    assert result.items and all(
        (i.citation.source, top_section(i.citation.section)) == (weak_chunk.source, top_section(weak_chunk.section))
        for i in result.items)
    before = set(svc.study.questions("ann"))
    assert not before & {i.question for i in result.items}  # no item the student already has
    with pytest.raises(QuizError, match="No weak spots for bob"):
        svc.weak_quiz("bob", 1)


def test_cli_quiz_weak_records_new_cards(quiz_svc: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli import main

    svc = quiz_svc()
    c = next(c for c in svc.retriever.chunks.values() if c.section and len(c.text) > 300)
    [iid] = svc.record_quiz("cli", [chunk_item(c, "An old card?")])
    svc.study.review("cli", iid, "again")
    assert main(["quiz", "--weak", "--user", "cli", "-n", "1", "--json"], service=svc) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["topic"].startswith("weak spots: ") and len(out["items"]) == 1
    assert len(svc.study.questions("cli")) == 2
    assert main(["quiz", "--weak", "--topic", "x"], service=svc) == 2


# --- the Quiz tab records cards and reviews; the Review and Progress tabs ---------------------------------
def test_quiz_answers_become_reviews_and_the_review_tab_grades_due_cards(quiz_svc: Any) -> None:
    svc = quiz_svc()
    st = start_quiz(svc, quiz_sessions(), "regularization", "mcq", 2, user="ann")
    assert st.error == "" and len(st.card_ids) == 2
    assert len(svc.study.due("ann")) == 2  # new cards are due at once
    st = check_answer(svc, st, st.items[0].answer)  # right: rated good, no longer due
    due = svc.study.due("ann")
    assert [d.item_id for d in due] == [st.card_ids[1]]

    rs = tab_review.load(svc, "ann")
    v = tab_review.view(svc, "ann", rs)
    assert rs.item_id == st.card_ids[1] and v.can_reveal and not v.can_rate and v.answer_html == ""
    assert "1 card due" in v.question_html
    assert "Show the answer first" in tab_review.rate(svc, "ann", rs, "good").message
    rs = tab_review.reveal(rs)
    v = tab_review.view(svc, "ann", rs)
    assert v.can_rate and "Cited passage" in v.answer_html and st.items[1].citation.source in v.answer_html
    rs = tab_review.rate(svc, "ann", rs, "hard")
    assert rs.item_id is None and "you will see that card again in " in rs.message and "UTC" not in rs.message
    v = tab_review.view(svc, "ann", rs)
    assert "Nothing is due now" in v.status_html and not v.can_reveal
    assert tab_review.view(svc, "bob", tab_review.load(svc, "bob")).status_html.count("No cards yet") == 1

    data = progress_data(svc, "ann")
    assert list(data["mastery"].columns) == ["section", "mastery"] and len(data["mastery"]) >= 1
    assert int(data["reviews"]["reviews"].sum()) == 2 and len(data["due"]) == 14
    assert 'data-reviews="2"' in summary_html(data, "ann")
    empty = summary_html(progress_data(svc, "bob"), "bob")
    assert "Nothing studied yet" in empty and "bob" not in empty  # no internal user name


# --- saved conversations ------------------------------------------------------------------------------------
def test_saved_conversations_round_trip_through_the_chat_tab(quiz_svc: Any) -> None:
    from ui.tab_chat import chat_sessions, reopen, save_turns, saved_choices

    svc = quiz_svc()
    sessions = chat_sessions(svc)
    source = {"n": 1, "chunk_id": "x", "source": "a.md", "title": "A", "section": "S", "page": None,
              "text": "L1 zeroes weights.", "cited": True}
    state = {"id": "conv-1", "turns": [
        {"question": "What does L1 do?", "answer": "It zeroes weights [1].", "sources": [source], "refused": False},
        {"question": "and L2?", "standalone": "What does L2 do?", "answer": "", "pending": True}]}
    save_turns(svc, "ann", state)  # the pending turn is not saved
    [(label, cid)] = saved_choices(svc, "ann")
    assert cid == "conv-1" and label.startswith("What does L1 do?")
    assert saved_choices(svc, "bob") == [] and reopen(svc, sessions, "bob", "conv-1") is None
    st = reopen(svc, sessions, "ann", "conv-1")
    assert st is not None and st["turns"][0]["sources"][0]["text"] == "L1 zeroes weights."
    chat = sessions.get_or_create("conv-1").chat
    assert [t.question for t in chat.history] == ["What does L1 do?"]  # follow-ups read against it
    assert svc.study.delete_conversation("ann", "conv-1") and saved_choices(svc, "ann") == []


# --- study guides ------------------------------------------------------------------------------------------
def _guide_reply(messages: list[dict[str, str]]) -> str:
    import re

    passages = re.findall(r'<passage n="(\d+)" from="[^"]*">\n(.*?)\n</passage>', messages[-1]["content"], re.S)
    n, text = passages[0]
    sentence = next(s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.split()) >= 6)
    words = re.sub(r"[*#|`>_]", " ", sentence).split()[:16]
    while words[-1].lower() in {"the", "of", "a", "to", "and", "in", "is"}:
        words.pop()
    return json.dumps({
        "terms": [{"term": words[0], "definition": " ".join(words), "passage": int(n)},
                  {"term": "Quantum", "definition": "Quantum annealing trains it in 42 ms", "passage": int(n)}],
        "summary": [{"sentence": " ".join(words) + ".", "passage": int(n)}],
        "questions": [{"question": "What does the handbook say about this?", "passage": int(n)},
                      {"question": "How does Kubernetes autoscaling relate to it?", "passage": int(n)}]})


def test_a_study_guide_cites_every_line_and_drops_what_its_passages_do_not_state(quiz_svc: Any) -> None:
    svc = quiz_svc(_guide_reply, "yes", "yes")  # the guide, then the model's yes for each kept claim
    guide = svc.guide("regularization")
    assert guide.terms and guide.summary and guide.questions
    assert all(1 <= line.n <= len(guide.citations) for line in guide.lines)
    assert {t.term for t in guide.terms} != {"Quantum"} and "Quantum" not in {t.term for t in guide.terms}
    assert all("Kubernetes" not in q.text for q in guide.questions)
    assert guide.dropped == 2  # the invented number and the term no passage names
    md = guide_markdown(guide.to_json())
    assert md.startswith("# Study guide: regularization") and "## Key terms" in md and "## Sources" in md
    assert "## Likely interview questions" in md and " [1]" in md
    calls = svc.llm.calls
    assert calls[0]["json_schema"]["properties"]["questions"]["maxItems"] == 3


def test_guide_on_an_unknown_topic_is_one_sentence(quiz_svc: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli import main

    svc = quiz_svc()
    assert main(["guide", "medieval french poetry"], service=svc) == 2
    err = capsys.readouterr().err
    assert "nothing on" in err and err.count("\n") == 1


def test_guide_markdown_escapes_document_text() -> None:
    guide = {"topic": "<b>x</b>", "terms": [{"term": "[a](http://e)", "text": "<script>1</script>", "n": 1}],
             "summary": [], "questions": [], "dropped": 0,
             "citations": [{"n": 1, "source": "a.md", "title": "T", "section": "S", "page": None, "text": ""}]}
    md = guide_markdown(guide)
    assert "<script>" not in md and "<b>" not in md and "[a](http" not in md and "a.md" in md


# --- MCQ checks --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "cut"), [
    ("It is not reliant on", True), ("Reduces variance of the", True), ("Shrinks weights (toward zero", True),
    ("x" * 90, True), ("x" * 87, True), ("x" * 86, False), ("Feature reuse across", True),
    ("Shrinks weights toward zero", False), ("L1 gives sparse weights.", False),
    ("Bagging and boosting", False),
])
def test_cut_off_answers_are_recognised(text: str, cut: bool) -> None:
    assert cut_off(text, 90) is cut


def test_an_item_whose_options_the_model_matches_to_the_wrong_terms_is_rewritten(quiz_svc: Any) -> None:
    from tests.fakes import match_from_lines

    calls = {"n": 0}

    def confused_once(definition: str, terms: list[tuple[str, str]], lines: Sequence[str]) -> str:
        calls["n"] += 1
        right = match_from_lines(definition, terms, lines)
        return right if calls["n"] > 1 else next(k for k, _ in terms if k != right)  # the key given away, once

    svc = quiz_svc(match=confused_once)
    result = svc.quiz("regularization", 1, "mcq", session=QuizSession(2))
    assert len(result.items) == 1 and "the model gives the key's definition to" in " ".join(result.reasons)
    assert isinstance(svc.llm, PassageLLM) and len(svc.llm.matches) >= 5


def test_a_conversation_saved_before_quotes_shows_its_lead_as_a_quote() -> None:
    from ui.tab_chat import _turn_messages

    cite = {"n": 1, "chunk_id": "x", "source": "a.md", "title": "A", "section": "S", "page": None,
            "text": "L1 zeroes weights."}
    old = {"question": "What does L1 do?", "answer": "It zeroes weights [1].", "refused": False,
           "lead": {"text": "L1 zeroes weights.", "citations": [cite]}, "sources": [{**cite, "cited": True}]}
    new = {"question": "And L2?", "answer": "> L2 shrinks them. [2]\n\nIt shrinks them [2].", "refused": False,
           "quotes": [{"text": "L2 shrinks them.", "citation": {**cite, "n": 2}}], "explanation": "It shrinks them [2].",
           "sources": [{**cite, "n": 2, "cited": True}]}
    first, second = (m["content"] for m in _turn_messages([old, new]) if m["role"] == "assistant")
    # Each turn's [n] opens that turn's own source (#src-<turn>-<n>), older turns' too.
    assert first.startswith("> L1 zeroes weights. [\\[1\\]](#src-1-1") and first.endswith('(#src-1-1 "source 1").')
    assert second.startswith("> L2 shrinks them. [\\[2\\]](#src-2-2") and second.count("L2 shrinks them.") == 1
