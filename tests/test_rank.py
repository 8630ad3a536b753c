"""Ranking the evidence and choosing the quotes (rag.answer.rank, rag.answer.select) on fixed inputs; the
model's judgements scripted."""

from __future__ import annotations

from collections.abc import Sequence

from rag.answer.rank import Candidate, Scorer, rank
from rag.answer.select import choose, quotes
from rag.settings import Settings
from rag.types import Chunk, Passage
from tests.fakes import HashEmbedder

SETTINGS = Settings().answer


def passage(i: int, text: str, section: str = "Sec") -> Passage:
    chunk = Chunk(id=f"c{i}", text=text, source=f"doc{i}.md", title=f"Doc {i}", section=section, page=None,
                  start=0, end=len(text), content_hash=f"h{i}", ordinal=i * 10)
    return Passage(chunk=chunk, score=1.0 / (i + 1), extra={"similarity": 0.5})


PASSAGES = [
    passage(0, "**Bagging vs Boosting**\n- **Bagging**: Trains models in parallel on bootstrap samples.\n"
               "- **Boosting**: Trains models sequentially, each fixing the errors of the last.", "Ensembles"),
    passage(1, "Random forests average many trees. They reduce variance compared with one deep tree.", "Forests"),
    passage(2, "Gardening needs sunlight and water. Tomatoes grow in summer.", "Garden"),
]


def scripted(scores: dict[str, float]) -> object:
    """A judge giving each candidate the score of the first key its text contains (else -3)."""
    def judge(cands: Sequence[Candidate]) -> list[float]:
        return [next((v for k, v in scores.items() if k in c.text), -3.0) for c in cands]
    return judge


def test_the_scorer_prefers_units_holding_the_questions_terms() -> None:
    cands = Scorer(SETTINGS, HashEmbedder()).candidates("How does boosting train its models?", PASSAGES)
    assert cands[0].text.endswith("each fixing the errors of the last.")
    assert cands[0].terms > 0 and all(c.score >= d.score for c, d in zip(cands, cands[1:], strict=False))
    assert cands[-1].passage == 2  # the garden passage last
    assert not any(c.text == "**Bagging vs Boosting**" for c in cands)  # a heading is no candidate
    # a list item is scored and shown with its list's introduction
    assert cands[0].text.startswith("**Bagging vs Boosting**\n- **Boosting**")


def test_a_fragment_scores_half() -> None:
    scorer = Scorer(SETTINGS, HashEmbedder())
    [frag] = scorer.candidates("boosting models", [passage(0, "Boosting models.")])
    [full] = scorer.candidates("boosting models", [passage(0, "Boosting trains models one after another.")])
    assert frag.score < full.score


def test_the_judge_reorders_the_scorers_top_units_only() -> None:
    cands = Scorer(SETTINGS, HashEmbedder()).candidates("How do random forests reduce variance?", PASSAGES)
    ranking = rank(cands, scripted({"reduce variance": 3.0}), top=3, weight=0.5)  # type: ignore[arg-type]
    assert ranking.judged == 3
    assert ranking.best is not None and "reduce variance" in ranking.best.text
    judged = [c for c in ranking.candidates if c.judge is not None]
    assert len(judged) == 3 and ranking.candidates[:3] == judged  # the judged units first
    assert [c.final for c in judged] == sorted((c.final for c in judged), reverse=True)
    assert ranking.best_judge == 3.0


def test_a_strong_scorer_lead_survives_a_weak_judge_preference() -> None:
    a = Candidate(unit=None, text="A", passage=0, section="", score=0.9, dense=0.9, terms=1.0)  # type: ignore[arg-type]
    b = Candidate(unit=None, text="B", passage=1, section="", score=0.5, dense=0.5, terms=0.0)  # type: ignore[arg-type]
    r = rank([a, b], scripted({"A": 0.0, "B": 0.4}), top=2, weight=0.5)  # type: ignore[arg-type]
    assert r.best is not None and r.best.text == "A"  # 0.9 + 0 > 0.5 + 0.2
    r = rank([a, b], scripted({"A": -2.0, "B": 2.0}), top=2, weight=0.5)  # type: ignore[arg-type]
    assert r.best is not None and r.best.text == "B"  # 0.9 - 1 < 0.5 + 1


def test_without_a_judge_the_scorers_order_stands() -> None:
    cands = Scorer(SETTINGS, HashEmbedder()).candidates("boosting", PASSAGES)
    r = rank(cands, None, top=4, weight=0.5)
    assert [c.text for c in r.candidates] == [c.text for c in cands] and r.judged == 0 and r.best_judge is None


def _ranked(question: str, scores: dict[str, float], top: int = 6):  # type: ignore[no-untyped-def]
    cands = Scorer(SETTINGS, HashEmbedder()).candidates(question, PASSAGES)
    return rank(cands, scripted(scores), top=top, weight=0.5)  # type: ignore[arg-type]


def test_more_quotes_only_when_judged_to_answer_and_close_to_the_best() -> None:
    ranking = _ranked("How do bagging and boosting differ?", {"Bagging**:": 3.0, "Boosting**:": 2.8})
    chosen = choose(ranking, max_quotes=3, min_logodds=1.0, margin=1.0)
    assert len(chosen) == 2
    assert len(choose(ranking, max_quotes=1, min_logodds=1.0, margin=1.0)) == 1
    assert len(choose(ranking, max_quotes=3, min_logodds=2.9, margin=1.0)) == 1  # the second is not sure enough
    assert len(choose(ranking, max_quotes=3, min_logodds=1.0, margin=0.0)) == 1  # nor close enough


def test_units_of_one_list_share_their_introduction_once_in_document_order() -> None:
    ranking = _ranked("How do bagging and boosting differ?", {"Boosting**:": 3.0, "Bagging**:": 2.9})
    [q] = quotes(choose(ranking, max_quotes=3, min_logodds=1.0, margin=1.0), PASSAGES)
    assert q.text == ("**Bagging vs Boosting**\n- **Bagging**: Trains models in parallel on bootstrap samples.\n"
                      "- **Boosting**: Trains models sequentially, each fixing the errors of the last.")
    assert q.citation.n == 1 and q.citation.chunk_id == "c0" and q.kinds == ("item", "item")


def test_quotes_of_two_passages_are_grouped_best_passage_first() -> None:
    ranking = _ranked("How do forests and boosting reduce errors?",
                      {"reduce variance": 3.0, "Boosting**:": 2.9})
    qs = quotes(choose(ranking, max_quotes=3, min_logodds=1.0, margin=2.0), PASSAGES)
    assert [q.citation.n for q in qs] == [2, 1]
    assert qs[0].text == "Random forests average many trees. They reduce variance compared with one deep tree."
    assert qs[0].marked().endswith("tree. [2]")


def test_a_code_quote_and_a_table_quote_get_their_marker_on_a_line_of_their_own() -> None:
    code = "Fit it:\n```python\nmodel.fit(X, y)\n```"
    table = "| A | B |\n|---|---|\n| x | 1 |"
    ps = [passage(0, code), passage(1, table)]
    cands = Scorer(SETTINGS, HashEmbedder()).candidates("fit x", ps)
    qs = quotes(cands, ps)
    assert {q.marked() for q in qs} == {code + "\n\n[1]", table + "\n\n[2]"}
