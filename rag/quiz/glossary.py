"""A passage's glossary: the key terms it defines, each with a short definition in its own words, written by
the model as schema-constrained JSON and checked against the passage before anything uses it.

Multiple-choice questions are built from glossaries (:mod:`rag.quiz.mcq`): "Which of these best describes
<term>?", the key being the term's definition and the distractors definitions of *other* terms. Asked to
write distractors itself, the 1.5B model wrote ones the passage also supports (11 of 18 items judged
trustworthy, bench/quiz.py); a definition of another concept is wrong for this one by construction, and the
checks in :mod:`rag.quiz.mcq` catch the cases where it is not (a broader term, a synonym, a sentence of the
passage that says it of the key term).

A definition says what the term is: one that says what it is for or how much it matters ("Chain rule:
Critical for backpropagation", the issue's blind read) is replaced by the passage's own "<term> is ..."
sentence when it has one, and dropped when not; so is a list of names ("REINFORCE, PPO, A2C/A3C"). Example
asides ("Guarantees global minima (e.g., SVMs)") are cut: they set an option apart from the others.

Glossaries are cached per chunk (chunk ids change with their text), so a later quiz on the same passages
asks the model nothing.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag import prompts
from rag.backends.embeddings import TextEmbedder
from rag.llm import LLM
from rag.quiz.models import ANSWER_MAX_CHARS, string_schema
from rag.quiz.text import clean_field, key_terms, normalize, term_overlap
from rag.quiz.validation import cut_off
from rag.text import clip
from rag.types import Chunk
from rag.units import split_units

# A passage's glossary: at most this many terms (the schema's maxItems), each at most TERM_MAX_CHARS long (a term
# that fills it was cut off). Both set by hand with the glossary MCQs (2026-12-04), not tuned.
TERMS_PER_PASSAGE = 3
TERM_MAX_CHARS = 40  # set by hand, as above
DEFINITION_MAX_CHARS = ANSWER_MAX_CHARS["mcq"]
# The passage's clip in the glossary prompt: the quiz prompts' (rag.quiz.generation.MAX_PASSAGE_CHARS, set by
# hand, cutting none of the handbooks' chunks).
MAX_PASSAGE_CHARS = 1200
# 3 entries of at most 40 + 110 characters (~45 tokens each) and the JSON around them.
MAX_TOKENS = 200
# 0.65: the share of a definition's key terms in the passage lines about its term (term_lines). Of 57 entries
# the model wrote for 17 passages on 5 topics (regularization, gradient descent, random forests, precision and
# recall, bias-variance), the 21 under 0.6 of the whole passage were all the model's own words ("gradient
# descent: an optimization algorithm used to minimize a function ...", "Bootstrap Samples: A method of
# training a machine learning model ..."). A whole-passage check let through "Regularization: Prevents
# co-adaptation of neurons and reduces overfitting" (dropout's line in a regularization passage, 1.0), which
# scores 0.60 on the term's lines; the faithful ones score 0.67-1.0 there, but "Min_samples_split" (0.60).
DEFINITION_MIN_OVERLAP = 0.65
# 2: a term's definition lies in the line that names it or the two after it ("**L1 Regularization
# (Lasso):**" then "- Formula: ..." and "- Use Case: ... zeroes out irrelevant weights").
LINES_AFTER_TERM = 2
# 2.05: a term whose every word is as common as "error" (2.02) or more ("model" 1.1, "learn" 1.1, "gradient"
# 1.48, "function" 1.76) is too general to quiz on; "loss" 2.11, "bias" 2.2, "L1" 2.8, "dropout" 2.72 and
# "bagging" 3.94 are not (lucene idf over the handbooks' 234 chunks).
TERM_MIN_IDF = 2.05
# 2.5: two terms that share a word this rare name one concept ("R² score" / "R-squared (R2)", "L2
# regularization" / "L2 (Ridge)"); "regularization" (2.2), "variance" (2.2) and "rate" (2.15) are shared by
# sibling terms ("L1 regularization" / "L2 regularization"), which make the best wrong answers.
SHARED_WORD_MIN_IDF = 2.5
_NON_LATIN = re.compile(r"[\u2e80-\uffff]")  # CJK and the like: the model drifting out of English ("损失函数")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "terms": {
            "type": "array", "minItems": 1, "maxItems": TERMS_PER_PASSAGE,
            "items": {"type": "object",
                      "properties": {"term": string_schema(2, TERM_MAX_CHARS),
                                     "definition": string_schema(15, DEFINITION_MAX_CHARS)},
                      "required": ["term", "definition"]},
        }
    },
    "required": ["terms"],
}


@dataclass
class GlossaryEntry:
    """A term a passage defines, with its definition (from the model, checked) and where it came from."""

    term: str
    definition: str
    chunk: Chunk
    mark: str  # the term's rarest word (stemmed): a text with it names the term ("L1" for "L1 regularization")
    distinctive: frozenset[str] = frozenset()  # its words rare enough that two terms sharing one are one concept
    context: str = ""  # for a term the passage lists, the line that introduces its list
    vector: list[float] = field(default_factory=list, repr=False)  # the definition's embedding
    term_vector: list[float] = field(default_factory=list, repr=False)  # the term's embedding (its kind)

    @property
    def key(self) -> str:
        return normalize(self.term)

    @property
    def words(self) -> frozenset[str]:
        return term_words(self.term)

    def named_in(self, text: str) -> bool:
        """Whether ``text`` names this term (has its rarest word: "L1 induces sparsity" names "L1
        regularization", "the descent direction" names "gradient descent")."""
        return self.mark in words_of(text)


def words_of(text: str) -> set[str]:
    """The key terms of a text (:func:`rag.quiz.text.key_terms`) after Unicode compatibility folding ("R²"
    is "R2"), hyphenated words also in parts ("encoder-decoder" names "encoder")."""
    text = unicodedata.normalize("NFKC", text)
    return key_terms(text) | key_terms(text.replace("-", " "))


def term_words(term: str) -> frozenset[str]:
    """A term's words, and its acronym when it has several ("convolutional neural networks" is also "cnn")."""
    return frozenset(words_of(term)) | acronym(term)


def acronym(term: str) -> frozenset[str]:
    """{the initials of a term of two or more words, lower-cased} ("Convolutional Neural Networks" -> "cnn"),
    or {} (a parenthesis is left out: "Principal Component Analysis (PCA)" -> "pca")."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*", re.sub(r"\(.*?\)", " ", term))
    return frozenset({"".join(w[0] for w in words).lower()}) if len(words) >= 2 else frozenset()


def mentions(text: str, term: str) -> bool:
    """Whether ``text`` has every word of ``term``."""
    words = words_of(term)
    return bool(words) and words <= words_of(text)


def rarest_word(term: str, idf: Callable[[str], float]) -> str:
    return max(sorted(words_of(term)), key=idf, default="")


def make_entry(term: str, definition: str, chunk: Chunk, idf: Callable[[str], float], context: str | None = None
               ) -> GlossaryEntry:
    """An entry; ``context`` None: the introduction of the list that names the term in its passage, if any
    (:func:`list_context`)."""
    words = words_of(term)
    mark = rarest_word(term, idf)
    distinctive = frozenset(w for w in words if idf(w) >= SHARED_WORD_MIN_IDF) | {mark}
    if context is None:
        context = list_context(chunk.text, mark)
    return GlossaryEntry(term, definition, chunk, mark, distinctive, context)


# --- what a definition must be: what the term is, with no aside that sets it apart ---------------------------
# An example in parentheses or after "e.g." names something the other options do not ("Guarantees global minima
# (e.g., SVMs)" against Adam: the issue's blind read); the option says the same without it.
_ASIDE = re.compile(r"\s*\((?:e\.g\.|eg\b|i\.e\.|ie\b|such as|like|for example|for instance|including|"
                    r"especially|typically|often)[^()]*\)", re.I)
_TRAILING_EXAMPLE = re.compile(r"\s*(?:[,;]\s*(?:e\.g\.|i\.e\.|such as|for example|for instance|like|including)|"
                               r"\s(?:e\.g\.|i\.e\.),?)\s[^;]*$", re.I)
# What a term is used for or how much it matters, not what it is: "Critical for backpropagation in neural
# networks" (the chain rule, the blind read), "Helps with the curse of dimensionality", "Used for
# classification", "Ideal for models outputting probabilities".
_USE_FRAGMENT = re.compile(
    r"^(?:(?:is|are)\s+)?(?:(?:very|extremely|especially|particularly|often|commonly|widely|mostly|mainly|"
    r"primarily|typically|usually|frequently|also)\s+)?(?:(?:critical|crucial|essential|important|vital|key|"
    r"useful|helpful|necessary|needed|required|ideal|great|good|best|popular|suitable|used|applied|employed|"
    r"leveraged|common)\s+(?:for|to|in|when|with|by|as|because|of|on)\b|helps?\b|useful$|used$)", re.I)
# A list of names instead of a definition ("REINFORCE, PPO, A2C/A3C", "MLflow, Kubeflow, Sagemaker Model
# Registry"): every part at most this many words, and most parts a name (capitalised, an acronym, a digit).
_NAME_PART_MAX_WORDS = 3
# "Term is/are/refers to ... ": the passage's own sentence of what a term is.
_IS_A = r"(?:\s*\([^)]*\))?\s*(?:[:—–-]\s*|,\s*)?(?:is|are|refers to|means|denotes|describes)\s+(?P<d>[^.;!?]+)"


def strip_asides(definition: str) -> str:
    """``definition`` without example asides ("(e.g., SVMs)", ", such as ...", "e.g. ..."); what is left may be
    too short for the entry checks ("Constrained optimization (e.g., SVMs with margins)")."""
    out = _TRAILING_EXAMPLE.sub("", _ASIDE.sub("", definition))
    return re.sub(r"\s{2,}", " ", out).strip(" ,;")


def use_fragment(definition: str) -> bool:
    """Whether a definition says what its term is used for or how important it is, not what it is."""
    return bool(_USE_FRAGMENT.match(definition.strip(" *_-")))


def names_list(definition: str) -> bool:
    """Whether a definition is a list of names (examples) rather than a statement of what the term is."""
    parts = [p.strip() for p in re.split(r"[,+]", definition) if p.strip()]
    if len(parts) < 2 or any(len(p.split()) > _NAME_PART_MAX_WORDS for p in parts):
        return False
    # a name has a capital or a digit (the definition's first letter is a capital anyway)
    named = [p for i, p in enumerate(parts) if re.search(r"[A-Z0-9]", p[1:] if i == 0 else p)]
    return len(named) * 2 > len(parts)


def not_a_definition(definition: str) -> str | None:
    """Why a definition cannot be an option (None when it can): it says what the term is for, or lists names."""
    if use_fragment(definition):
        return "not a definition (it says what the term is for, not what it is)"
    if names_list(definition):
        return "not a definition (a list of names)"
    return None


def stated_definition(passage: str, term: str, idf: Callable[[str], float]) -> str | None:
    """The passage's own sentence of what ``term`` is ("The chain rule is a formula for ..."): what follows
    "is"/"are"/"refers to", to its last whole clause within :data:`DEFINITION_MAX_CHARS`, when it passes the
    entry checks and is a definition; None when the passage has none."""
    plain = re.sub(r"[*_`]+", "", passage)
    name = re.escape(term.split("(")[0].strip())
    if not name:
        return None
    for m in re.finditer(rf"(?<![\w-]){name}(?![\w-]){_IS_A}", plain, re.I):
        found = strip_asides(" ".join(m.group("d").split()).rstrip(" ,"))
        while len(found) > DEFINITION_MAX_CHARS - 4 and "," in found:
            found = found[: found.rfind(",")].rstrip()
        found = found[:1].upper() + found[1:]
        if (len(found) <= DEFINITION_MAX_CHARS - 4 and not cut_off(found, DEFINITION_MAX_CHARS)
                and not_a_definition(found) is None and entry_rejection(term, found, passage, idf) is None):
            return found
    return None


def definition_or_why(term: str, definition: str, passage: str, idf: Callable[[str], float]) -> tuple[str, str | None]:
    """(the definition to use, why the entry is unusable or None): a definition that is not one ("Critical for
    backpropagation") is replaced by the passage's own sentence of what the term is when it states one
    (:func:`stated_definition`), and rejected when it does not."""
    definition = strip_asides(definition)
    reason = entry_rejection(term, definition, passage, idf)
    if reason is None and (why := not_a_definition(definition)):
        better = stated_definition(passage, term, idf)
        return (better, None) if better else (definition, why)
    return definition, reason


def terms_messages(chunk: Chunk) -> list[dict[str, str]]:
    user = prompts.render(prompts.load("quiz_terms"), title=chunk.title, section=chunk.section or "(start)",
                          text=clip(chunk.text.strip(), MAX_PASSAGE_CHARS))
    return [{"role": "system", "content": prompts.load("quiz_system")}, {"role": "user", "content": user}]


def entry_rejection(term: str, definition: str, passage: str, idf: Callable[[str], float]) -> str | None:
    """Why a (term, definition) the model wrote is not fit for a quiz (None when it is)."""
    if not term or not re.search(r"[A-Za-z]", term) or not definition:
        return "empty term or definition"
    if len(definition) < 15 or len(definition.split()) < 3:
        return "the definition is too short"
    if _NON_LATIN.search(term + definition):
        return "not in English"
    if cut_off(definition, DEFINITION_MAX_CHARS) or cut_off(term, TERM_MAX_CHARS):
        return "the definition is cut off"
    if not mentions(passage, term):
        return "the passage does not name the term"
    if mentions(definition, term) or (len(words_of(term)) == 1 and rarest_word(term, idf) in words_of(definition)):
        return "the definition names its own term"
    if max((idf(w) for w in words_of(term)), default=0.0) < TERM_MIN_IDF:
        return "the term is too general"
    if term_overlap(definition, term_lines(passage, rarest_word(term, idf))) < DEFINITION_MIN_OVERLAP:
        return "the passage does not state the definition"
    return None


def term_lines(passage: str, mark: str, after: int = LINES_AFTER_TERM) -> str:
    """The passage's units (sentences, list items, lines) that name a term (have its rarest word ``mark``),
    each with the ``after`` units that follow it (a heading's first lines, the rest of a list item)."""
    units = [u.text for u in split_units(passage)]
    keep = sorted({j for i, u in enumerate(units) if mark in words_of(u) for j in range(i, min(i + after + 1, len(units)))})
    return " ".join(units[j] for j in keep)


def whole_clauses(definition: str) -> str:
    """A definition the grammar cut off, back to its last whole clause ("Centralized repository for features,
    consistent features between training and serving, feature reuse across" -> "... training and serving")
    when one of three words or more is left; unchanged otherwise (the checks then reject it)."""
    if not cut_off(definition, DEFINITION_MAX_CHARS):
        return definition
    head = definition[: max(definition.rfind(","), definition.rfind(";"))].rstrip(" ,;")
    return head if len(head.split()) >= 3 and not cut_off(head, DEFINITION_MAX_CHARS) else definition


def parse_entries(raw: str, chunk: Chunk, idf: Callable[[str], float]) -> tuple[list[GlossaryEntry], list[str]]:
    """(the usable entries of the model's reply, why each other one was dropped); ValueError when the reply
    is not the JSON the schema asks for."""
    data = json.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("terms"), list):
        raise ValueError("no terms list")
    entries: list[GlossaryEntry] = []
    dropped: list[str] = []
    for e in data["terms"]:
        if not isinstance(e, dict):
            continue
        term = clean_field(e.get("term")).strip(" .:*`\"'")
        definition, reason = definition_or_why(term, whole_clauses(clean_field(e.get("definition")).rstrip(" .")),
                                               chunk.text, idf)
        if reason is None and any(x.key == normalize(term) for x in entries):
            reason = "a repeated term"
        others = [clean_field(x.get("term")) for x in data["terms"] if isinstance(x, dict) and x is not e]
        if reason is None and any(o and rarest_word(o, idf) in words_of(definition) for o in others):
            reason = "the definition names another of the terms"
        if reason:
            dropped.append(f"{term[:40]}: {reason}")
        else:
            entries.append(make_entry(term, definition, chunk, idf))
    return entries, dropped


class Glossary:
    """Glossary entries per chunk: the model's (checked; one call per chunk, kept, least recently used first
    out) and the ones the passage states itself (:func:`stated_entries`, no model call). Shared by the
    quizzes of one service."""

    def __init__(self, llm: LLM, embedder: TextEmbedder, idf: Callable[[str], float], *,
                 max_chunks: int = 2000) -> None:
        self.llm = llm
        self.embedder = embedder
        self.idf = idf
        self.max_chunks = max_chunks
        self._written: OrderedDict[str, list[GlossaryEntry]] = OrderedDict()
        self._stated: OrderedDict[str, list[GlossaryEntry]] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # model calls made (for benches and tests)

    def _keep(self, cache: OrderedDict[str, list[GlossaryEntry]], chunk_id: str, entries: list[GlossaryEntry]
              ) -> None:
        if entries:
            vectors = self.embedder.embed([e.definition for e in entries] + [e.term for e in entries])
            for entry, vec, term_vec in zip(entries, vectors[: len(entries)], vectors[len(entries):], strict=True):
                entry.vector, entry.term_vector = vec, term_vec
        with self._lock:
            cache[chunk_id] = entries
            while len(cache) > self.max_chunks:
                cache.popitem(last=False)

    def using(self, llm: LLM) -> Glossary:
        """The same glossaries (one cache) written by another view of the model (the question bank's, which
        yields to a student's requests: :mod:`rag.quiz.gate`)."""
        view = copy.copy(self)
        view.llm = llm
        view.calls = 0
        return view

    def written(self, chunk_id: str) -> list[GlossaryEntry] | None:
        """The model's entries for a chunk if it has been asked (None when not)."""
        with self._lock:
            return self._written.get(chunk_id)

    def entries(self, chunk: Chunk, temperature: float = 0.0) -> tuple[list[GlossaryEntry], str, list[str]]:
        """The model's entries for the chunk (it is asked on the first call): (entries, the raw reply or ""
        when cached, why entries were dropped)."""
        found = self.written(chunk.id)
        if found is not None:
            return found, "", []
        raw = self.llm.complete(terms_messages(chunk), max_tokens=MAX_TOKENS, temperature=temperature,
                                json_schema=SCHEMA)
        self.calls += 1
        try:
            entries, dropped = parse_entries(raw, chunk, self.idf)
        except (ValueError, TypeError) as exc:
            entries, dropped = [], [f"unparseable reply ({exc})"]
        self._keep(self._written, chunk.id, entries)
        return entries, raw, dropped

    def stated(self, chunk: Chunk) -> list[GlossaryEntry]:
        """The entries the chunk states as "Term: definition" lines (no model call)."""
        with self._lock:
            found = self._stated.get(chunk.id)
        if found is None:
            found = stated_entries(chunk, self.idf)
            self._keep(self._stated, chunk.id, found)
        return found

    def known(self, chunks: Sequence[Chunk]) -> list[GlossaryEntry]:
        """Every entry of these chunks that needs no model call: the stated ones, and the model's already
        written."""
        return [e for c in chunks for e in [*(self.written(c.id) or []), *self.stated(c)]]


# --- entries the passage states itself ("- **Bagging**: Train models in parallel on ...") ------------------
_STATED = re.compile(
    r"^[ \t>]*(?:[-*•+][ \t]+|\d{1,2}[.)][ \t]+)?(?:\*\*|__|\*)?(?P<term>[A-Za-z][^:*_\n]{1,38}?)(?:\*\*|__|\*)?"
    r"[ \t]*:[ \t]*(?:\*\*|__|\*)?[ \t]*(?P<definition>\S[^\n]*)$", re.M)
# Labels of a passage's own structure, not terms ("- Effect: ...", "**Example:** ..."), singular or plural.
_LABELS = frozenset([
    "goal", "use", "use when", "use case", "effect", "mechanism", "advantage", "disadvantage", "strength",
    "weakness", "drawback", "why", "when", "how", "how it works", "con", "pro", "question", "situation",
    "feature", "example", "formula", "definition", "comparison", "concept", "key concept", "remove",
    "output", "input", "note", "tip", "key point", "key idea", "idea", "intuition", "benefit", "result",
    "problem", "solution", "answer", "approach", "purpose", "summary", "challenge", "limitation",
    "application", "impact", "trade-off", "tradeoff", "step", "insight", "key insight", "interpretation",
    "analogy", "warning", "caveat", "issue", "cause", "fix", "best practice", "type", "process", "action",
    "outcome", "reason", "what", "remember", "important", "takeaway", "key takeaway", "option", "metric",
    "scenario", "context", "task", "requirement", "follow-up", "hint", "pitfall", "common mistake",
    "strategy", "usage", "core innovation", "why it's essential", "too high", "too low",
])
_NUMBERED_LABEL = re.compile(r"^(?:q|step|fold|phase|stage|part|section|round|day|week|case|example)\s*\d", re.I)
_FIRST_SENTENCE = re.compile(r"(?<=[.!])\s+(?=[A-Z(])")
# A definition that points back at the passage's text ("help mitigate these") means nothing on its own.
_BACKREF = re.compile(r"\b(?:this|these|those|it|its|they|them|their|above|below|here)\b", re.I)


_LIST_ITEM = re.compile(r"^[ \t>]*(?:[-*•+]|\d{1,2}[.)])[ \t]+")


def list_introduction(text: str, pos: int) -> str:
    """For the list item whose line starts at ``pos``: the nearest line above that is not an item (what
    introduces the list), when short enough to be an intro; "" otherwise."""
    lines = text[:pos].splitlines()
    if not _LIST_ITEM.match(text[pos:].split("\n", 1)[0]):
        return ""
    for line in reversed(lines):
        body = line.strip(" \t>")
        if body and not _LIST_ITEM.match(line):
            return body if len(body) <= 120 else ""
    return ""


def list_context(text: str, mark: str) -> str:
    """The introduction of the list whose item first names a term (has its rarest word ``mark``); "" when no
    list item names it ("Adam" in "Optimizers:\n- SGD: ...\n- Adam: ..." -> "Optimizers:")."""
    for unit in split_units(text):
        if mark in words_of(unit.text):
            return list_introduction(text, unit.start) if unit.kind == "item" else ""
    return ""


def stated_entries(chunk: Chunk, idf: Callable[[str], float]) -> list[GlossaryEntry]:
    """The "Term: definition" lines of the passage as entries, verbatim (the first sentence of each
    definition), with the same checks as the model's (:func:`entry_rejection`) plus: not a label of the
    passage's structure ("Example:", "Pros:"); no question, formula, arrow or pointer back into the passage
    ("these") in the definition, and no formula. A list item keeps the line that introduces its list as its context
    ("Regularization adds penalty to loss function:" before "- L2 (Ridge): Adds weights²")."""
    out: list[GlossaryEntry] = []
    for m in _STATED.finditer(chunk.text):
        term = m.group("term").strip(" .")
        label = " ".join(term.lower().split())
        if label in _LABELS or label.removesuffix("s") in _LABELS or _NUMBERED_LABEL.match(label) or len(term.split()) > 5:
            continue
        if ". " in term or ">" in term:  # the end of a sentence or a breadcrumb caught before the colon
            continue
        definition = _FIRST_SENTENCE.split(m.group("definition").replace("**", "").replace("`", "").strip())[0]
        definition = definition.strip(" *_").rstrip(" .")
        if not definition or definition[0] in "([{$" or any(c in definition for c in "?→$|=^"):
            continue
        if _BACKREF.search(definition):
            continue
        if len(definition) > DEFINITION_MAX_CHARS or any(e.key == normalize(term) for e in out):
            continue
        definition, reason = definition_or_why(term, definition, chunk.text, idf)
        if reason is None:
            out.append(make_entry(term, definition, chunk, idf, list_introduction(chunk.text, m.start())))
    return out
