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

Of those that pass, the ones a student who half knows the topic would take for the key are used
(:func:`rank`): things of the key's kind (another optimizer for an optimizer) and of about its length.
Kind is read from the handbooks' structure first - a sibling in the key's own list ("Optimizers:" then
"- SGD", "- Adam"), its passage, its section, a term with the same head word ("Huber loss" / "Hinge loss") -
then from the embeddings of the terms and of the definitions; the definitions' embeddings alone (the earlier
ranking) put "Guarantees global minima" and "Bayesian optimization for learning rates" first for Adam (the
issue's blind read). No option gives the key away: a distractor much shorter than the key ranks low, one
much longer is cut to whole clauses, and so is a key much longer than every distractor (:func:`assemble`);
options are written alike (:func:`option_text`), without "(e.g., ...)" asides (:mod:`rag.quiz.glossary`),
and a key that repeats a word of the asked term gets distractors that repeat it too where there are some.

Then the model matches each
of the four definitions back to one of the four terms (:func:`matching_rejection`). It replaced an earlier
check in which the model picked the answer from the key's passage in two option orders: with glossary items
that check rejected good ones (a sibling's definition in the same passage drew the pick) and cost two
passage-long prompts per item (bench/quiz.py, 4 topics: 8 valid of 48, 60 s per valid item, with both).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import replace

from rag import prompts
from rag.llm import LLM
from rag.quiz.glossary import DEFINITION_MIN_OVERLAP, GlossaryEntry, term_words, words_of
from rag.quiz.models import QuizItem
from rag.quiz.text import best_quote, cos, term_overlap
from rag.quiz.validation import cut_off
from rag.types import Citation
from rag.units import split_units

# Wrong options per MCQ: four options A-D, the usual form of a multiple-choice question (a product choice of the
# first quiz code, not tuned).
DISTRACTORS = 3
LETTERS = "ABCD"
PICK_SCHEMA = {"type": "string", "enum": list(LETTERS)}  # one letter: the model's term match
# The passage sentence shown as an MCQ's feedback (best_quote) is cut to this many characters: set by hand with the
# glossary MCQs (2026-12-04), the bound the short answer's explanation has in its schema, not measured.
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
# How a candidate distractor is ranked (rag.quiz.mcq.rank): the sum of these times its signals. Set by hand, not
# fitted: on the 13 keys whose candidates were read by hand (python -m bench.mcq_quality --kinds, 102 same-kind/
# other pairs) the ranking puts a same-kind candidate first with AUC 0.58 (same list/passage/section 0.58 each,
# term cosine 0.50, definition cosine 0.52); over the handbooks' 258 stated keys it raised items with >= 2
# distractors from the key's own section from 29% to 67% (the earlier ranking by definition cosine).
KIN_WEIGHTS: dict[str, float] = {
    "same list": 1.0,
    "same passage": 0.5,
    "same section": 0.5,
    "same head word": 1.0,
    "term cosine": 1.0,
    "definition cosine": 0.5,
    "length": 1.0,
    "repeats the term": 0.5,
}
# A distractor under this share of the key's length is penalised (rag.quiz.mcq.length_fit), and an option over
# LONG_OPTION x another's is cut to whole clauses: the blind read saw keys "by far the longest"; set by
# hand with the key-longest share (25% by chance) as the figure: 20% of the stated keys' items, 36% of the model's
# (bench.mcq_quality, 2026-12-06).
SHORT_DISTRACTOR = 0.8
LONG_OPTION = 1.3  # set by hand with SHORT_DISTRACTOR, on the figure above
# A cut option keeps at least this many words (fewer reads as a fragment: "Shrinks the steps" is the floor).
MIN_OPTION_WORDS = 3
# Clauses of at most this many words after the first are an enumeration ("Detect edges, textures, and objects"),
# never cut to its first item.
ENUMERATION_ITEM_WORDS = 3


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


def head_word(term: str) -> str:
    """The word a term ends on, stemmed, without a parenthesis ("loss" for "Huber Loss", "gd" for "Mini-Batch
    GD (MBGD)"): terms that share it name things of one kind."""
    words = re.findall(r"[A-Za-z0-9²][\w²-]*", re.sub(r"\(.*?\)", " ", term))
    last = sorted(words_of(words[-1])) if words else []
    return last[-1] if len(last) == 1 else ""


def kinship(key: GlossaryEntry, cand: GlossaryEntry) -> float:
    """How much ``cand`` is the same kind of thing as ``key`` (higher is more): a sibling in the key's own list
    or passage, its section, a term with the same head word, then embedding similarity of the terms and of
    the definitions (the weights: :data:`KIN_WEIGHTS`)."""
    w = KIN_WEIGHTS
    score = 0.0
    if cand.chunk.id == key.chunk.id and cand.context and cand.context == key.context:
        score += w["same list"]
    elif cand.chunk.id == key.chunk.id and not (cand.context and key.context):
        score += w["same passage"]  # (two lists of one passage, as under two questions of a Q&A: neither)
    elif cand.chunk.source == key.chunk.source and cand.chunk.section == key.chunk.section:
        score += w["same section"]
    head = head_word(key.term)
    if head and head == head_word(cand.term):
        score += w["same head word"]
    if key.term_vector and cand.term_vector:
        score += w["term cosine"] * cos(key.term_vector, cand.term_vector)
    if key.vector and cand.vector:
        score += w["definition cosine"] * cos(key.vector, cand.vector)
    return score


def option_text(definition: str) -> str:
    """A definition as an option: no markup or quotes around it, one space between words, no end stop, a
    capital first letter (every option alike)."""
    text = " ".join(re.sub(r"[*_`]{1,3}(?=\w)|(?<=\w)[*_`]{1,3}", "", definition).split())
    while len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    text = re.sub(r"[.;,:]+(?=[\"']?$)", "", text).strip()
    return text[:1].upper() + text[1:]


def clause_cut(text: str, target: int) -> str:
    """``text`` cut back to the whole clause (at ", " or "; ") whose length is nearest ``target``, keeping at
    least :data:`MIN_OPTION_WORDS` words and the first clause; ``text`` itself when it has no such cut or is
    nearer ``target``."""
    parts = [re.sub(r"^(?:and|or) ", "", p) for p in re.split(r"[,;] ", text)]
    if len(parts) > 2 and all(len(p.split()) <= ENUMERATION_ITEM_WORDS for p in parts[1:]):
        return text  # an enumeration ("Detect edges, textures, and objects"): its first item is not the whole
    cuts = [m.start() for m in re.finditer(r"[,;] ", text)]
    best = text
    for c in cuts:
        head = text[:c].rstrip()
        if len(head.split()) >= MIN_OPTION_WORDS and head.count("(") == head.count(")") \
                and not cut_off(head, len(text) + 10) and abs(len(head) - target) < abs(len(best) - target):
            best = head
    return best


def length_fit(key_len: int, cand_len: int) -> float:
    """The penalty for a distractor much shorter than the key (a key that is the longest option gives itself
    away; a longer distractor is cut to whole clauses instead): 0 from :data:`SHORT_DISTRACTOR` x the key's
    length up, growing with the log of the shortfall."""
    return max(0.0, math.log(SHORT_DISTRACTOR * key_len / max(cand_len, 1)))


def repeats_term(entry: GlossaryEntry, text: str) -> frozenset[str]:
    """The words of ``entry``'s term (without a parenthesis) that ``text`` repeats."""
    return frozenset(words_of(re.sub(r"\(.*?\)", " ", entry.term))) & frozenset(words_of(text))


def rank(key: GlossaryEntry, candidates: Sequence[GlossaryEntry]) -> list[GlossaryEntry]:
    """``candidates``, most tempting first: of the key's kind (:func:`kinship`), of about its length
    (:func:`length_fit`), and repeating the asked term's words when the key does (else the key alone would)."""
    key_len = len(option_text(key.definition))
    shared = repeats_term(key, key.definition)

    def score(c: GlossaryEntry) -> float:
        s = kinship(key, c) - KIN_WEIGHTS["length"] * length_fit(key_len, len(option_text(c.definition)))
        if shared and shared & words_of(c.definition):
            s += KIN_WEIGHTS["repeats the term"]
        return s

    return sorted(candidates, key=score, reverse=True)


def fit_length(entry: GlossaryEntry, target: int) -> GlossaryEntry:
    """A copy of a distractor much longer than the key (over :data:`LONG_OPTION` x ``target``) cut to the whole
    clause nearest the key's length (:func:`clause_cut`); the entry itself otherwise (entries are cached:
    never changed in place)."""
    text = option_text(entry.definition)
    if len(text) <= LONG_OPTION * target:
        return entry
    cut = clause_cut(text, target)
    return entry if cut == text else replace(entry, definition=cut)


def choose_distractors(key: GlossaryEntry, candidates: Sequence[GlossaryEntry]
                       ) -> tuple[list[GlossaryEntry], list[str]]:
    """Up to three distractors for ``key`` from ``candidates``, the most tempting first (:func:`rank`), no two
    of them about the same term or near-paraphrases of each other, a much longer one cut to whole clauses
    (:func:`fit_length`); and why the others were passed over."""
    picks: list[GlossaryEntry] = []
    reasons: list[str] = []
    for cand in rank(key, candidates):
        if len(picks) == DISTRACTORS:
            break
        reason = distractor_rejection(key, cand, candidates)
        if reason is None and any(distractor_rejection(p, cand, candidates) for p in picks):
            reason = f"{cand.term!r} overlaps another distractor"
        if reason:
            reasons.append(reason)
        else:
            picks.append(cand)
    key_len = len(option_text(key.definition))
    return [fit_length(p, key_len) for p in picks], reasons


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


def assemble(key: GlossaryEntry, distractors: Sequence[GlossaryEntry], rng: random.Random) -> QuizItem:
    """The item: the question, the four options in random order (a key much longer than every distractor cut
    to whole clauses: :data:`LONG_OPTION`), the passage line that states the key as the explanation, and the
    key's passage as the citation."""
    others = [option_text(d.definition) for d in distractors]
    answer = option_text(key.definition)
    longest = max((len(o) for o in others), default=len(answer))
    if len(answer) > LONG_OPTION * longest:
        answer = clause_cut(answer, longest)
    options = [answer, *others]
    rng.shuffle(options)
    return QuizItem(
        type="mcq",
        question=question_for(key),
        answer=answer,
        explanation=best_quote(key.chunk.text, f"{key.term} {key.definition}", EXPLANATION_MAX_CHARS),
        options=options,
        citation=Citation.of(1, key.chunk),
    )
