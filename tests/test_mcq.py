"""Glossary MCQs that tempt: distractors of the key's kind, no length or wording tell, keys that are definitions
(rag.quiz.mcq's choice of distractors and options, rag.quiz.glossary's definition checks). No model."""

from __future__ import annotations

import json
import random
from typing import Any

from rag.quiz.glossary import (
    Glossary,
    GlossaryEntry,
    list_context,
    make_entry,
    names_list,
    parse_entries,
    stated_entries,
    strip_asides,
    use_fragment,
)
from rag.quiz.mcq import (
    LONG_OPTION,
    assemble,
    choose_distractors,
    clause_cut,
    head_word,
    option_text,
    rank,
)
from rag.quiz.text import cos
from rag.types import Chunk
from tests.fakes import ScriptedLLM
from tests.test_glossary import idf


def chunk(text: str, section: str, cid: str, source: str = "h.md") -> Chunk:
    return Chunk(id=cid, text=text, source=source, title="Handbook", section=section, page=None, start=0,
                 end=len(text), content_hash=cid, ordinal=0)


def embedded(embedder: Any, entries: list[GlossaryEntry]) -> list[GlossaryEntry]:
    """The entries with their definition and term vectors, as :class:`Glossary` keeps them."""
    vectors = embedder.embed([e.definition for e in entries] + [e.term for e in entries])
    for e, v, t in zip(entries, vectors[: len(entries)], vectors[len(entries):], strict=True):
        e.vector, e.term_vector = v, t
    return entries


OPTIMIZERS = chunk(
    "Optimizers turn gradients into weight updates:\n"
    "- SGD: updates the weights from the gradient of one random example\n"
    "- Momentum: adds a fraction of the previous update to the current one\n"
    "- AdaGrad: shrinks the step of parameters that were updated often\n"
    "- Adam: keeps a separate adaptive learning rate for every parameter\n",
    "Training > Optimizers", "opt")
# Other kinds of thing, from another handbook, whose definitions are nearer the key's in wording.
MATH = chunk(
    "- Convex optimization: guarantees that any local minimum is the global one\n"
    "- Lagrange multipliers: solve an optimization problem under equality constraints\n"
    "- Hyperparameter tuning: searches for the best learning rate of every model with Bayesian optimization\n",
    "Mathematics > Calculus", "math", source="m.md")


def optimizer_pool(embedder: Any) -> tuple[GlossaryEntry, list[GlossaryEntry]]:
    key = make_entry("Adam", "keeps a separate adaptive learning rate for every parameter", OPTIMIZERS, idf)
    siblings = [e for e in stated_entries(OPTIMIZERS, idf) if e.term != "Adam"]
    others = stated_entries(MATH, idf)
    assert [e.term for e in siblings] == ["SGD", "Momentum", "AdaGrad"]
    assert [e.term for e in others] == ["Convex optimization", "Lagrange multipliers", "Hyperparameter tuning"]
    return embedded(embedder, [key])[0], embedded(embedder, others + siblings)


def test_an_optimizer_key_gets_optimizer_distractors(embedder: Any) -> None:
    key, pool = optimizer_pool(embedder)
    # The model's entry for a term its passage lists knows the list: its siblings are of its kind.
    assert key.context == "Optimizers turn gradients into weight updates:"
    assert {e.context for e in pool if e.chunk is OPTIMIZERS} == {key.context}
    picks, passed_over = choose_distractors(key, pool)
    assert {p.term for p in picks} == {"SGD", "Momentum", "AdaGrad"} and passed_over == []
    # Without its siblings the key still gets three wrong answers (the other kinds).
    fewer, _ = choose_distractors(key, [e for e in pool if e.term != "Momentum"])
    assert len(fewer) == 3 and "Momentum" not in {p.term for p in fewer}


def test_a_term_of_the_same_head_word_is_preferred(embedder: Any) -> None:
    reg = chunk("Huber loss is quadratic for small errors and linear for large ones.", "Regression losses", "hub")
    key = make_entry("Huber loss", "quadratic for small errors and linear for large ones", reg, idf)
    other = chunk("- Hinge loss: penalises predictions inside the margin of the decision boundary\n"
                  "- Focal loss: down-weights the examples a classifier already gets right\n"
                  "- Early stopping: ends training when the validation error starts to rise\n"
                  "- Dropout: randomly disables units during training\n"
                  "- Weight decay: shrinks large weights a little at every update\n", "Deep learning", "dl", "d.md")
    pool = embedded(embedder, stated_entries(other, idf))
    key = embedded(embedder, [key])[0]
    assert head_word("Huber Loss") == head_word("Focal loss (FL)") == "loss" and head_word("Adam") == "adam"
    assert [e.term for e in rank(key, pool)][:2] in (["Hinge loss", "Focal loss"], ["Focal loss", "Hinge loss"])


def test_a_key_repeating_its_term_gets_distractors_that_do_too(embedder: Any) -> None:
    key = make_entry("Cross-entropy loss", "the loss of predicted class probabilities against the true labels",
                     chunk("Cross-entropy loss: the loss of predicted class probabilities against the true labels",
                           "Losses", "ce"), idf)
    other = chunk("- Mean squared error: a loss that averages the squared differences of predictions\n"
                  "- Accuracy: the share of predictions that are right over the whole test set\n"
                  "- Recall: the share of actual positives that the model finds\n", "Metrics", "m", "m.md")
    key, *pool = embedded(embedder, [key, *stated_entries(other, idf)])
    assert rank(key, pool)[0].term == "Mean squared error"


def test_options_are_of_comparable_length(embedder: Any) -> None:
    text = ("Adaptive optimizers:\n"
            "- Adam: adapts a learning rate for each parameter, from running averages of gradients and squared"
            " gradients\n"
            "- SGD: one random example per update\n"
            "- RMSProp: divides the step by a running root mean square\n"
            "- AdaGrad: shrinks the steps of frequent features, which suits sparse data, and keeps every past gradient\n"
            "- Nesterov: looks ahead along the momentum\n")
    opt = chunk(text, "Optimizers", "o")
    entries = stated_entries(opt, idf)
    key = next(e for e in entries if e.term == "Adam")
    assert len(option_text(key.definition)) > LONG_OPTION * 60
    key, *pool = embedded(embedder, [key, *(e for e in entries if e is not key)])
    # A distractor much shorter than the key ranks after one of about its length.
    ranked = [e.term for e in rank(key, pool)]
    assert ranked.index("AdaGrad") < ranked.index("SGD") and ranked.index("RMSProp") < ranked.index("Nesterov")
    # A much longer distractor is cut to whole clauses near the key's length (a copy: entries are cached).
    short_key = make_entry("Nesterov", "looks ahead along the momentum", opt, idf)
    short_key.vector, short_key.term_vector = key.vector, key.term_vector
    picks, _ = choose_distractors(short_key, pool)
    adagrad = next(p for p in picks if p.term == "AdaGrad")
    assert adagrad.definition == "Shrinks the steps of frequent features"
    assert next(e for e in pool if e.term == "AdaGrad").definition.endswith("keeps every past gradient")
    # A key much longer than every distractor is cut to whole clauses: it is not the longest by far.
    item = assemble(key, [e for e in pool if e.term in ("SGD", "RMSProp", "Nesterov")], random.Random(1))
    assert item.answer == "Adapts a learning rate for each parameter" and item.answer in item.options
    assert len(item.answer) <= LONG_OPTION * max(len(o) for o in item.options if o != item.answer)


def test_whole_clauses_only() -> None:
    assert clause_cut("Train models sequentially, each correcting previous errors, reduce bias", 45) == (
        "Train models sequentially, each correcting previous errors")
    # an enumeration is never cut to its first item
    listing = "A table of True Positives (TP), True Negatives (TN), False Positives (FP), and False Negatives (FN)"
    assert clause_cut(listing, 30) == listing
    assert clause_cut("Detect edges, textures, and objects", 10) == "Detect edges, textures, and objects"
    assert clause_cut("No clause to cut here at all", 5) == "No clause to cut here at all"


def test_options_are_written_alike() -> None:
    assert option_text("**adds** the `squared` weights.") == "Adds the squared weights"
    assert option_text('"a quoted definition."') == "A quoted definition"
    assert option_text('Train small "student" models to mimic large "teachers."') == (
        'Train small "student" models to mimic large "teachers"')
    assert option_text("False negative - \"missing the wolf\"") == "False negative - \"missing the wolf\""


def test_asides_that_set_an_option_apart_are_dropped() -> None:
    assert strip_asides("Guarantees global minima (e.g., SVMs)") == "Guarantees global minima"
    assert strip_asides("Scales data into a fixed range (e.g., [0, 1])") == "Scales data into a fixed range"
    assert strip_asides("Reduces spatial size, e.g. max pooling over 2x2 windows") == "Reduces spatial size"
    assert strip_asides("Scales features to a range such as [0, 1]") == "Scales features to a range such as [0, 1]"
    # too little is left without the aside: the entry goes (the option would stand out either way)
    text = ("Optimization concepts:\n- Convex Optimization: Guarantees global minima (e.g., SVMs)\n"
            "- Lagrange Multipliers: Constrained optimization (e.g., SVMs with margins)\n"
            "- Policy-based methods: REINFORCE, PPO, A2C/A3C\n")
    entries = stated_entries(chunk(text, "Math", "c"), idf)
    assert [(e.term, e.definition) for e in entries] == [("Convex Optimization", "Guarantees global minima")]


def test_a_key_that_is_not_a_definition_is_replaced_or_dropped() -> None:
    assert use_fragment("Critical for backpropagation in neural networks")
    assert use_fragment("Helps with the curse of dimensionality") and use_fragment("Commonly used in NLP")
    assert not use_fragment("A critical hyperparameter that controls the step size")
    assert not use_fragment("Updates the weights against the gradient")
    assert names_list("REINFORCE, PPO, A2C/A3C") and names_list("XGBoost, LightGBM, CatBoost")
    assert not names_list("Combines momentum and RMSProp") and not names_list("Conversion rate, revenue per user")
    reply = json.dumps({"terms": [{"term": "Chain rule", "definition": "Critical for backpropagation in neural networks"},
                                  {"term": "Gradient descent", "definition": "Updates parameters iteratively"}]})
    stated = chunk("The chain rule is a formula for the derivative of a composition of functions.\n"
                   "- Chain rule: critical for backpropagation in neural networks\n"
                   "- Gradient descent: updates parameters iteratively\n", "Calculus", "cr")
    entries, dropped = parse_entries(reply, stated, idf)
    assert [(e.term, e.definition) for e in entries][0] == (
        "Chain rule", "A formula for the derivative of a composition of functions")
    assert dropped == []
    bare = chunk("- Chain rule: critical for backpropagation in neural networks\n"
                 "- Gradient descent: updates parameters iteratively\n", "Calculus", "cr2")
    entries, dropped = parse_entries(reply, bare, idf)
    assert [e.term for e in entries] == ["Gradient descent"]
    assert dropped == ["Chain rule: not a definition (it says what the term is for, not what it is)"]
    # the passage's own "Chain rule: critical for ..." line is no distractor either
    assert [e.term for e in stated_entries(bare, idf)] == ["Gradient descent"]


def test_the_list_a_term_is_in() -> None:
    assert list_context(OPTIMIZERS.text, "adam") == "Optimizers turn gradients into weight updates:"
    assert list_context("Adam is an optimizer.\n- Adam: x\n", "adam") == ""  # first named in prose
    assert list_context(OPTIMIZERS.text, "lbfgs") == ""


def test_the_glossary_keeps_term_vectors(embedder: Any) -> None:
    reply = json.dumps({"terms": [{"term": "Adam", "definition": "keeps a separate adaptive learning rate for "
                                                                 "every parameter"}]})
    glossary = Glossary(ScriptedLLM([reply]), embedder, idf)
    entries, _, _ = glossary.entries(OPTIMIZERS)
    assert cos(entries[0].term_vector, embedder.embed(["Adam"])[0]) > 0.99
    assert cos(entries[0].vector, embedder.embed([entries[0].definition])[0]) > 0.99
    assert all(e.term_vector for e in glossary.stated(OPTIMIZERS))
