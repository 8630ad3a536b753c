"""Glossary MCQs: the checks on the model's (term, definition) entries, the entries a passage states itself,
and the rules that keep a distractor wrong for the key term (rag.quiz.glossary, rag.quiz.mcq)."""

from __future__ import annotations

import json
import random
from typing import Any

from rag.quiz.glossary import (
    SCHEMA,
    Glossary,
    entry_rejection,
    list_introduction,
    make_entry,
    parse_entries,
    stated_entries,
    whole_clauses,
)
from rag.quiz.mcq import (
    already_asked,
    asked_terms,
    assemble,
    choose_distractors,
    distractor_rejection,
    matching_rejection,
    question_for,
)
from rag.types import Chunk
from tests.fakes import ScriptedLLM

# lucene-like idf for the words these tests use: common words low, technical terms high
_IDF = {"model": 1.1, "learn": 1.1, "error": 2.02, "regular": 2.2, "variance": 2.2, "l1": 2.8, "l2": 2.97,
        "dropout": 2.72, "bagg": 3.94, "boost": 3.17, "r2": 3.5, "score": 2.3, "r-squared": 3.6, "squared": 2.6,
        "ridg": 3.8, "lasso": 3.8, "adam": 3.06, "gradient": 1.48, "descent": 2.72, "stochastic": 3.94,
        "encoder": 3.0, "decoder": 3.1, "encoder-decoder": 3.5, "penalty": 3.41, "term": 2.88, "lambda": 3.56,
        "loss": 2.0}


def idf(word: str) -> float:
    return _IDF.get(word, 3.0)


def chunk(text: str, section: str = "Regularization", cid: str = "c1") -> Chunk:
    return Chunk(id=cid, text=text, source="h.md", title="Handbook", section=section, page=None, start=0,
                 end=len(text), content_hash=cid, ordinal=0)


REG = chunk(
    "Regularization adds a penalty to the loss function to prevent overfitting.\n"
    "- L1 (Lasso): adds the absolute values of the weights and drives some weights to exactly zero.\n"
    "- L2 (Ridge): adds the squared weights and shrinks all weights smoothly toward zero.\n"
    "Dropout randomly disables units during training so the network cannot rely on any single unit.\n"
)


def test_entry_checks() -> None:
    text = REG.text
    assert entry_rejection("Dropout", "randomly disables units during training", text, idf) is None
    assert "cut off" in (entry_rejection("Dropout", "randomly disables units during the", text, idf) or "")
    assert "not name" in (entry_rejection("Batch normalization", "normalizes the inputs of every layer", text, idf)
                          or "")
    assert "its own term" in (entry_rejection("Dropout", "dropout of units during training", text, idf) or "")
    assert "too general" in (entry_rejection("loss", "what the network minimizes during training", text, idf) or "")
    assert "does not state" in (entry_rejection("Dropout", "a Bayesian approximation of deep ensembles", text, idf)
                                or "")
    assert "English" in (entry_rejection("Dropout", "randomly disables units 训练 during training", text, idf) or "")
    assert "too short" in (entry_rejection("Dropout", "disables neurons", text, idf) or "")


def test_parse_entries_keeps_the_good_ones_and_says_why_the_others_went() -> None:
    raw = json.dumps({"terms": [
        {"term": "Dropout", "definition": "Randomly disables units during training."},
        {"term": "dropout", "definition": "Disables units so the network cannot rely on any single unit"},
        {"term": "L1", "definition": "Adds the absolute values, unlike dropout which disables units"},
    ]})
    entries, dropped = parse_entries(raw, REG, idf)
    assert [(e.term, e.definition) for e in entries] == [("Dropout", "Randomly disables units during training")]
    assert entries[0].mark == "dropout" and entries[0].chunk is REG
    assert any("repeated" in d for d in dropped) and any("another of the terms" in d for d in dropped)
    for bad in ("not JSON", "[]", '{"terms": 3}'):
        try:
            parse_entries(bad, REG, idf)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


def test_glossary_asks_the_model_once_per_passage(embedder: Any) -> None:
    reply = json.dumps({"terms": [{"term": "Dropout", "definition": "randomly disables units during training"}]})
    llm = ScriptedLLM([reply, "not JSON"])
    glossary = Glossary(llm, embedder, idf)
    first, raw, _ = glossary.entries(REG)
    again, raw2, _ = glossary.entries(REG)
    assert first is again and raw == reply and raw2 == "" and glossary.calls == 1
    assert llm.calls[0]["json_schema"] == SCHEMA and llm.calls[0]["messages"][-1]["content"].count("<passage") == 1
    assert len(first[0].vector) == 384
    other = chunk("Bagging trains models on bootstrap samples in parallel and averages them.", cid="c2")
    entries, _, dropped = glossary.entries(other)
    assert entries == [] and "unparseable" in dropped[0] and glossary.entries(other)[0] == []


def test_stated_entries_are_verbatim_definitions_not_labels() -> None:
    text = ("Ensembles combine models:\n"
            "- **Bagging**: Train models in parallel on bootstrapped samples, reduce variance. More text here.\n"
            "- **Boosting:** Train models sequentially, each correcting previous errors\n"
            "- Example: Random forests average many trees grown on bootstrap samples\n"
            "- Pros: Robust to overfitting in most practical settings\n"
            "- Stacking: Helps mitigate these by combining predictions\n"
            "- Blending: Weighted average where w = 0.5 for both models\n"
            "- Q3: What is the difference between bagging and boosting methods\n")
    entries = stated_entries(chunk(text, section="Ensemble Methods"), idf)
    assert [(e.term, e.definition) for e in entries] == [
        ("Bagging", "Train models in parallel on bootstrapped samples, reduce variance"),
        ("Boosting", "Train models sequentially, each correcting previous errors"),
    ]
    assert all(e.context == "Ensembles combine models:" for e in entries)
    assert list_introduction("Intro line:\n> > - L1: a\n> > - L2: b\n", len("Intro line:\n> > - L1: a\n")) == "Intro line:"
    assert list_introduction("Plain: not an item\n", 0) == ""


def entries(embedder: Any, *pairs: tuple[str, str, str, str]) -> list[Any]:
    """(term, definition, section, context) -> entries with real vectors, each in a chunk of its own."""
    out = [make_entry(t, d, chunk(f"{t}: {d}", section=s, cid=f"c{i}"), idf, ctx) for i, (t, d, s, ctx) in enumerate(pairs)]
    for e, v in zip(out, embedder.embed([e.definition for e in out]), strict=True):
        e.vector = v
    return out


def test_a_distractor_must_be_wrong_for_the_key(embedder: Any) -> None:
    key, *others = entries(
        embedder,
        ("L2 regularization", "adds the squared weights to the loss", "Penalties", ""),
        ("L1 regularization", "drives some weights to exactly zero", "Penalties", ""),  # sibling
        ("Regularization", "adds a penalty to the loss to prevent overfitting", "Penalties", ""),  # broader
        ("L2 (Ridge)", "shrinks all weights smoothly toward zero", "Penalties", ""),  # same concept, other name
        ("Weight decay", "the L2 penalty as it is applied in optimizers", "Optimizers", ""),  # defined by it
        ("Dropout", "randomly disables units during training", "L2 Regularization methods", ""),  # filed under
        ("Lasso", "a penalty that drives some weights to exactly zero", "Models", "L2 regularization kinds:"),
        ("Bagging", "trains models on bootstrap samples in parallel", "Ensembles", ""),
    )
    reasons = {o.term: distractor_rejection(key, o) for o in others}
    assert reasons["L1 regularization"] is None and reasons["Bagging"] is None
    assert "nested" in (reasons["Regularization"] or "")
    assert "related" in (reasons["L2 (Ridge)"] or "")
    assert "defined by each other" in (reasons["Weight decay"] or "")
    assert "filed under" in (reasons["Dropout"] or "") and "filed under" in (reasons["Lasso"] or "")
    # the key's passage says the distractor of the key term: rejected
    said = make_entry("Momentum", "the squared weights added to the loss", chunk("Momentum: x", cid="m"), idf)
    assert "says" in (distractor_rejection(key, said) or "")


def test_a_paraphrase_of_the_key_is_not_a_distractor(embedder: Any) -> None:
    key, twin = entries(embedder, ("Bagging", "trains models on bootstrap samples in parallel", "A", ""),
                        ("Bootstrap aggregation", "Trains models on bootstrap samples in parallel.", "B", ""))
    assert "almost the same" in (distractor_rejection(key, twin) or "")


# A key (bagging) and three terms that make good distractors for it.
ENSEMBLE = (
    ("Bagging", "trains models on bootstrap samples in parallel and averages them", "Ensembles", ""),
    ("Boosting", "trains models one after another, each fixing the errors of the last", "Ensembles", ""),
    ("Stacking", "combines diverse models through a meta-learner", "Ensembles", ""),
    ("Dropout", "randomly disables units during training", "Neural networks", ""),
)


def test_assembled_item(embedder: Any) -> None:
    key, *others = entries(embedder, *ENSEMBLE,
                           ("Bagging ensembles", "trees trained on bootstrap samples", "Ensembles", ""))  # nested
    picks, passed = choose_distractors(key, others)
    assert {p.term for p in picks} == {"Boosting", "Stacking", "Dropout"} and len(passed) == 1
    item = assemble(key, picks, random.Random(0))
    assert item.question == "Which of these best describes Bagging?" == question_for(key)
    assert item.answer == "Trains models on bootstrap samples in parallel and averages them"
    assert sorted(item.options) == sorted([item.answer, "Trains models one after another, each fixing the errors "
                                           "of the last", "Combines diverse models through a meta-learner",
                                           "Randomly disables units during training"])
    assert item.citation.chunk_id == key.chunk.id and item.citation.n == 1
    asked = asked_terms([item.question, "What is a tensor?"])
    assert asked == [frozenset({"bagg"})] and already_asked(others[3], asked)
    assert not already_asked(others[0], asked)


def test_the_model_matches_each_definition_back_to_its_term(embedder: Any) -> None:
    key, *others = entries(embedder, *ENSEMBLE)
    right = ['"B"', '"C"', '"D"', '"A"']  # A) Dropout B) Bagging C) Boosting D) Stacking
    llm = ScriptedLLM(right)
    assert matching_rejection(key, others, llm) is None and len(llm.calls) == 4
    first = llm.calls[0]["messages"][-1]["content"]
    assert "Description: trains models on bootstrap samples in parallel and averages them" in first
    assert "A) Dropout\nB) Bagging\nC) Boosting\nD) Stacking" in first
    assert llm.calls[0]["json_schema"] == {"type": "string", "enum": ["A", "B", "C", "D"]}
    # an "always A" model passes nothing
    assert "not 'Bagging'" in (matching_rejection(key, others, ScriptedLLM(['"A"'] * 4)) or "")
    # a distractor's definition given to the key term
    got = matching_rejection(key, others, ScriptedLLM(['"B"', '"C"', '"B"']))
    assert got is not None and "'Stacking''s definition to the key term 'Bagging'" in got


def test_a_definition_cut_off_by_the_grammar_keeps_its_whole_clauses() -> None:
    cut = "Centralized repository for features, consistent features between training and serving, feature reuse across"
    assert whole_clauses(cut) == "Centralized repository for features, consistent features between training and serving"
    assert whole_clauses("Randomly disables units during training") == "Randomly disables units during training"
    assert whole_clauses("Stops at, the") == "Stops at, the"  # nothing whole to keep: left for the checks to reject


def test_a_term_and_its_acronym_are_one_term() -> None:
    cnn = make_entry("CNN", "networks for grid-like data", chunk("CNN: x", cid="a"), idf)
    long = make_entry("Convolutional Neural Networks", "designed for grid-like data", chunk("x", cid="b"), idf)
    assert "nested" in (distractor_rejection(long, cnn) or "")
    assert already_asked(cnn, asked_terms([question_for(long)])) and already_asked(long, asked_terms([question_for(cnn)]))
    pca = make_entry("Principal Component Analysis (PCA)", "projects data onto directions of maximum variance",
                     chunk("x", cid="c"), idf)
    assert "pca" in pca.words and "nested" in (distractor_rejection(pca, make_entry("PCA", "linear projection method",
                                                                                     chunk("x", cid="d"), idf)) or "")
