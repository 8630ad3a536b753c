"""Multiple-choice items from glossaries (:mod:`rag.quiz.glossary`): "Which of these best describes <term>?",
the key being the term's definition from its passage, the three distractors definitions of other terms.

A definition of another concept is wrong for this one unless the two concepts overlap, so a candidate
distractor is rejected (:func:`distractor_rejection`) when:

* the terms nest ("regularization" / "L1 regularization"), are the same, or share a rare word ("R² score" /
  "R-squared (R2)");
* a definition of either (from any passage read) names the other term (Adam, "a variant of stochastic
  gradient descent", is described by "gradient descent"'s definition too; "L1 regularization", "a penalty
  term that sums the absolute values", by "penalty"'s);
* either passage's section, or the line that introduces either list item, names the other term (dropout,
  under "Regularization Techniques", is not a wrong answer to "what is regularization?");
* the two definitions are near-paraphrases (embedding similarity);
* the passage's lines about the key term state it: its key terms are mostly in them.

The most similar definitions that pass are used (the plausible wrong answers). Then the model matches each
of the four definitions back to one of the four terms (:func:`matching_rejection`). It replaced an earlier
check in which the model picked the answer from the key's passage in two option orders: with glossary items
that check rejected good ones (a sibling's definition in the same passage drew the pick) and cost two
passage-long prompts per item (bench/quiz.py, 4 topics: 8 valid of 48, 60 s per valid item, with both).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from rag import prompts
from rag.llm import LLM
from rag.quiz.glossary import DEFINITION_MIN_OVERLAP, GlossaryEntry, term_words
from rag.quiz.models import QuizItem
from rag.quiz.text import best_quote, cos, term_overlap
from rag.types import Citation
from rag.units import split_units

DISTRACTORS = 3
LETTERS = "ABCD"
PICK_SCHEMA = {"type": "string", "enum": list(LETTERS)}  # one letter: the model's term match
EXPLANATION_MAX_CHARS = 220
# 0.85: only near-copies are caught here. Definitions of sibling concepts, which make good distractors,
# scored up to 0.83 ("Model is too simple" / "... too complex" for bias / variance; "Adds the square of
# weights ..." / "Adds weights², ..." 0.69; bagging / boosting 0.60), while two names of one concept
# ("A metric that measures the variance explained ..." / "Proportion of variance ... explained ...", R²)
# scored 0.38, and even "trains models on bootstrap samples in parallel" / "it trains the models on ..." only
# 0.77: MiniLM does not tell paraphrases apart at this length; the term checks and the passage check do.
MAX_SIMILARITY = 0.85
# A distractor whose key terms the key term's lines hold as fully as a definition must be held by its own
# passage (DEFINITION_MIN_OVERLAP) is stated of the key term too.
MAX_SUPPORT_BY_KEY_LINES = DEFINITION_MIN_OVERLAP


_QUESTION = re.compile(r"^Which of these best describes (.+)\?$")


def question_for(entry: GlossaryEntry) -> str:
    return f"Which of these best describes {entry.term}?"


def asked_terms(questions: Sequence[str]) -> list[frozenset[str]]:
    """The terms (as word sets) of the glossary MCQs among ``questions``."""
    return [term_words(m.group(1)) for q in questions if (m := _QUESTION.match(q.strip()))]


def already_asked(entry: GlossaryEntry, asked: Sequence[frozenset[str]]) -> bool:
    """Whether an MCQ on this term, or on a term nested with it ("L1" / "L1 regularization") or its acronym
    ("CNN" / "Convolutional Neural Networks"), was asked."""
    return any(entry.words <= w or w <= entry.words for w in asked if w)


def key_lines(passage: str, key: GlossaryEntry, other: GlossaryEntry) -> str:
    """The passage's units (sentences, list items) that name the key term and not the other one; all units
    that do not name the other term when none names the key term."""
    free = [u.text for u in split_units(passage) if not other.named_in(u.text)]
    about = [u for u in free if key.named_in(u)]
    return " ".join(about or free)


def distractor_rejection(key: GlossaryEntry, other: GlossaryEntry, known: Sequence[GlossaryEntry] = ()
                         ) -> str | None:
    """Why ``other``'s definition cannot be a wrong answer to "what is ``key.term``?" (None when it can).
    ``known``: other glossary entries, whose definitions of either term also count."""
    a, b = key.words, other.words
    if not b or a <= b or b <= a or key.distinctive & other.distinctive:
        return f"{other.term!r} is the same, a nested or a related term"
    defs_a = [key.definition] + [e.definition for e in known if e.words == a]
    defs_b = [other.definition] + [e.definition for e in known if e.words == b]
    if any(other.named_in(d) for d in defs_a) or any(key.named_in(d) for d in defs_b):
        return f"{key.term!r} and {other.term!r} are defined by each other"
    if (other.named_in(f"{key.chunk.section}\n{key.context}")
            or key.named_in(f"{other.chunk.section}\n{other.context}")):
        return f"{key.term!r} and {other.term!r} are filed under each other"
    if key.vector and other.vector and cos(key.vector, other.vector) >= MAX_SIMILARITY:
        return f"{other.term!r} is defined almost the same way"
    if term_overlap(other.definition, key_lines(key.chunk.text, key, other)) >= MAX_SUPPORT_BY_KEY_LINES:
        return f"the passage says {other.term!r}'s definition of {key.term!r} too"
    return None


def choose_distractors(key: GlossaryEntry, candidates: Sequence[GlossaryEntry]
                       ) -> tuple[list[GlossaryEntry], list[str]]:
    """Up to three distractors for ``key`` from ``candidates``, most similar first, no two of them about the
    same term or near-paraphrases of each other; and why the others were passed over."""
    ranked = sorted(candidates, key=lambda c: -cos(key.vector, c.vector) if key.vector and c.vector else 0.0)
    picks: list[GlossaryEntry] = []
    reasons: list[str] = []
    for cand in ranked:
        if len(picks) == DISTRACTORS:
            break
        reason = distractor_rejection(key, cand, candidates)
        if reason is None and any(distractor_rejection(p, cand, candidates) for p in picks):
            reason = f"{cand.term!r} overlaps another distractor"
        if reason:
            reasons.append(reason)
        else:
            picks.append(cand)
    return picks, reasons


def match_messages(definition: str, terms: Sequence[str]) -> list[dict[str, str]]:
    lettered = "\n".join(f"{LETTERS[i]}) {t}" for i, t in enumerate(terms))
    user = prompts.render(prompts.load("quiz_match"), definition=definition, terms=lettered)
    return [{"role": "system", "content": prompts.load("quiz_match_system")}, {"role": "user", "content": user}]


def matching_rejection(key: GlossaryEntry, distractors: Sequence[GlossaryEntry], llm: LLM) -> str | None:
    """The four definitions matched back to the four terms by the model (one letter per definition, no
    passage: what a student who knows the field would do). A distractor it gives to the key term is one a
    student could defend, a key it gives to another term one a student could miss: either rejects the item.
    The key's term is B, and each letter is the right one for one definition: a model that always answers A
    passes nothing."""
    entries = [key, *distractors]
    terms = [e.term for e in entries]
    order = terms[-1:] + terms[:-1]  # entry i's own term is letter i + 1 (mod 4): each letter right once
    for i, entry in enumerate(entries):
        raw = llm.complete(match_messages(entry.definition, order), max_tokens=4, temperature=0.0,
                           json_schema=PICK_SCHEMA)
        letter = raw.strip().strip('"').strip().upper()[:1]
        picked = order[LETTERS.index(letter)] if len(letter) == 1 and letter in LETTERS[: len(order)] else None
        if i == 0 and picked != key.term:
            return f"the model gives the key's definition to {picked!r}, not {key.term!r}"
        if i > 0 and picked == key.term:
            return f"the model gives {entry.term!r}'s definition to the key term {key.term!r}"
    return None


def _option(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:]


def assemble(key: GlossaryEntry, distractors: Sequence[GlossaryEntry], rng: random.Random) -> QuizItem:
    """The item: the question, the four options in random order, the passage line that states the key as
    the explanation, and the key's passage as the citation."""
    options = [_option(key.definition), *(_option(d.definition) for d in distractors)]
    answer = options[0]
    rng.shuffle(options)
    return QuizItem(
        type="mcq",
        question=question_for(key),
        answer=answer,
        explanation=best_quote(key.chunk.text, f"{key.term} {key.definition}", EXPLANATION_MAX_CHARS),
        options=options,
        citation=Citation.of(1, key.chunk),
    )
