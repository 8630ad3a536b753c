"""The Chat tab's turn logic (ui/tab_chat.py) on a scripted model: questions sent while one is answered wait
in the conversation and are answered in order; what an answer shows only grows; each turn keeps its own
sources; a refusal is one sentence and the sources panel agrees with it; the time shown is the student's wait.
The same behaviour in a real browser on the real model: tests/test_browser_chat.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rag.settings import Settings
from tests.fakes import FakeRetriever, HashEmbedder, ScriptedLLM, reader
from ui import render, tab_chat
from ui.sessions import SessionStore

L1 = "L1 drives some weights to zero [1]."
DROPOUT = "Dropout disables units during training [3]."
STAGE_LINES = {f"_{text}_" for text in render.STAGE_TEXT.values()}


Store = SessionStore[tab_chat.Conversation]


def _sessions(tmp_path: Path, replies: list[str], similarity: float = 0.6) -> tuple[Any, Store, ScriptedLLM]:
    from ui.service import StudyService

    llm = ScriptedLLM(replies, judge=reader(("drives some weights", "Dropout")))
    settings = Settings(storage={"home": tmp_path / "home"}, answer={"max_quotes": 3, "quote_margin": 10.0})
    svc = StudyService(settings, llm=llm, retriever=FakeRetriever(similarity), embedder=HashEmbedder())
    return svc, tab_chat.chat_sessions(svc), llm


def _answers(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


def _shown(content: str) -> str:
    """A message without its stage line (the one line allowed to change)."""
    return "\n\n".join(p for p in content.split("\n\n") if p not in STAGE_LINES)


def _drain(svc: Any, sessions: Store, state: dict[str, Any]) -> list[tuple[Any, ...]]:
    return list(tab_chat.answer_next(svc, sessions, state))


def test_a_question_sent_while_another_is_answered_waits_and_is_answered_next(tmp_path: Path) -> None:
    svc, sessions, llm = _sessions(tmp_path, [L1, "What does dropout do during training?", DROPOUT])
    sent = tab_chat.enqueue(sessions, "What does L1 do to the weights?", {})
    state = sent[2]
    assert _answers(sent[0]) == [f"_{render.STAGE_TEXT['queued']}_"] and sent[3] == ""  # shown at once, box empty
    first = tab_chat.answer_next(svc, sessions, state)
    next(first)  # the first answer is under way...
    again = tab_chat.enqueue(sessions, "and what about dropout?", state)  # ...when the second is sent
    assert [m["content"] for m in again[0] if m["role"] == "user"] == ["What does L1 do to the weights?",
                                                                       "and what about dropout?"]
    assert _answers(again[0])[1] == f"_{render.STAGE_TEXT['waiting']}_"
    outs = [out for out in first if isinstance(out[0], list)]
    assert _answers(outs[0][0])[1] == f"_{render.STAGE_TEXT['waiting']}_"  # shown waiting while the first is answered
    assert _answers(outs[-1][0])[1] == f"_{render.STAGE_TEXT['queued']}_"  # then next in line for the model
    outs = _drain(svc, sessions, state)
    answers = _answers(outs[-1][0])
    assert "L1 drives some weights to zero" in answers[0] and "Dropout disables units" in answers[1]
    assert [t["question"] for t in state["turns"]] == ["What does L1 do to the weights?", "and what about dropout?"]
    assert "What does L1 do" in llm.calls[1]["messages"][-1]["content"]  # the follow-up read against the first
    assert _drain(svc, sessions, state)[0] == (tab_chat.gr.skip(),) * 3  # nothing left to answer


def test_questions_that_reach_the_server_out_of_order_are_put_back_in_the_order_sent(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [])
    state = tab_chat.enqueue(sessions, "second", {}, sent_at=2_000_000_000_500)[2]
    tab_chat.enqueue(sessions, "first", state, sent_at=2_000_000_000_000)
    tab_chat.enqueue(sessions, "first", state, sent_at=2_000_000_000_300)  # a double click: asked once
    assert [t["question"] for t in state["turns"]] == ["first", "second"]


def test_what_an_answer_shows_only_grows_and_each_turn_keeps_its_own_sources(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [L1, "What does dropout do during training?", DROPOUT])
    state = tab_chat.enqueue(sessions, "What does L1 do to the weights?", {})[2]
    tab_chat.enqueue(sessions, "and dropout?", state)
    seen: list[list[str]] = []
    for out in _drain(svc, sessions, state) + _drain(svc, sessions, state):
        if isinstance(out[0], list):
            seen.append(_answers(out[0]))
    stages = [a[0] for a in seen if a[0] in STAGE_LINES]
    assert f"_{render.STAGE_TEXT['retrieving']}_" in stages and f"_{render.STAGE_TEXT['ranking']}_" in stages
    for turn in (0, 1):
        texts = [_shown(a[turn]) for a in seen if len(a) > turn and a[turn] not in STAGE_LINES]
        for before, after in zip(texts, texts[1:], strict=False):
            assert after.startswith(before), (before, after)  # nothing drawn is redrawn differently
    first, second = seen[-1]
    assert "#src-1-" in first and "#src-2-" not in first and "#src-2-" in second and "#src-1-" not in second
    panel = tab_chat.sources_panel(state["turns"])
    assert 'id="src-1-1"' in panel and 'id="src-2-3"' in panel and 'data-busy="0"' in panel
    assert '<section class="sb-turn-src" data-turn="1" hidden>' in panel  # the latest turn's are shown
    assert any(s["cited"] for s in state["turns"][0]["sources"])


def test_the_follow_up_says_it_is_being_read_against_the_conversation(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [L1, "What does dropout do during training?", DROPOUT])
    state = tab_chat.enqueue(sessions, "What does L1 do to the weights?", {})[2]
    _drain(svc, sessions, state)
    tab_chat.enqueue(sessions, "and dropout?", state)
    first = next(tab_chat.answer_next(svc, sessions, state))
    assert _answers(first[0])[1] == f"_{render.STAGE_TEXT['reading']}_"


def test_a_refusal_is_one_sentence_and_the_panel_agrees(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [], similarity=0.05)  # nothing close: refused on retrieval alone
    state = tab_chat.enqueue(sessions, "What is the weather on Mars today?", {})[2]
    outs = _drain(svc, sessions, state)
    answer = _answers(outs[-1][0])[0]
    assert answer == render.REFUSED_NOTE
    assert "can't find" not in answer  # the model's refusal sentence is not said again
    panel = outs[-1][1]
    assert "Not answered" in panel and render.EMPTY_SOURCES not in panel
    assert tab_chat.NO_PASSAGE in panel and "Not answered: no passage in the handbooks is close to" in panel


def test_the_time_shown_is_the_time_the_student_waited(tmp_path: Path, monkeypatch: Any) -> None:
    svc, sessions, _ = _sessions(tmp_path, [L1])
    clock = [1_000.0]
    monkeypatch.setattr(tab_chat.time, "time", lambda: clock[0])
    state = tab_chat.enqueue(sessions, "What does L1 do to the weights?", {}, sent_at=999_000.0)  # 1 s on the way
    state = state[2]
    clock[0] += 12.0  # waiting behind another student's question, then answered
    outs = _drain(svc, sessions, state)
    assert state["turns"][0]["waited_s"] == 13.0
    assert re.search(r"You waited 13\.0 s\.", outs[-1][1])


def test_clearing_the_conversation_stops_its_answer(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [L1])
    state = tab_chat.enqueue(sessions, "What does L1 do to the weights?", {})[2]
    answering = tab_chat.answer_next(svc, sessions, state)
    next(answering)
    tab_chat.drop(sessions, state["id"])  # "New conversation"
    assert list(answering) == []  # nothing more is shown of it
    assert tab_chat.conversation(sessions, {})["id"] != state["id"]


def test_saved_titles_are_cut_at_a_word_to_fit(tmp_path: Path) -> None:
    svc, sessions, _ = _sessions(tmp_path, [])
    long = "How do I choose between bagging and boosting when my dataset is small, noisy and imbalanced?"
    svc.study.save_conversation("ann", "c1", [{"question": long, "answer": "", "sources": []}])
    [(label, cid)] = tab_chat.saved_choices(svc, "ann")
    title = label.rsplit(" · ", 1)[0]
    assert cid == "c1" and title.endswith(" …") and len(title) <= tab_chat.TITLE_CHARS + 2
    assert long.startswith(title[:-2])


def test_a_refusal_for_a_term_no_handbook_mentions_says_which() -> None:
    turn = {"question": "What is the Mahalanobis distance?", "refused": True, "missing_terms": ["Mahalanobis"],
            "sources": [], "waited_s": 2.5}
    assert tab_chat._status(turn) == "Not answered: no handbook mentions Mahalanobis. You waited 2.5 s."
    message = tab_chat._turn_messages([turn])[1]["content"]
    assert message == f"{render.REFUSED_NOTE}\n\n_No handbook mentions Mahalanobis._"
