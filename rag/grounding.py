"""Is an answer grounded in its passages? The checks, and the policy that turns them into a refusal.

A 1.5B model answers from its own memory more often than a big one, and forgets its ``[n]`` markers. These
checks compare a reply with the numbered passages the model was given:

* lexical :func:`support`: the share of the reply's new content words that occur in the passages;
* :func:`unsupported_numbers`: numbers no passage (nor the question) states;
* :func:`novel_words`: empty when the reply only restates the question;
* :func:`placeholder_markers`: a marker where the content should be ("is given by the formula: [3]");
* semantic grounding: each reply sentence's closest passage sentence (embeddings), for paraphrases;
* :func:`attribute` / :func:`semantic_attribute`: markers for sentences that clearly come from one passage.

:class:`GroundingPolicy` applies them in order, with the thresholds of ``settings.answer``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rag.citations import CITATION, Mapped, map_citations
from rag.prompts import REFUSAL
from rag.retrieval import tokenize
from rag.settings import AnswerSettings
from rag.text import norm
from rag.types import Passage

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


def content_tokens(text: str) -> set[str]:
    """Stemmed content words (the retriever's BM25 tokenizer), markers removed."""
    return set(tokenize(CITATION.sub(" ", text)))


def attribute(text: str, passages: Sequence[Passage], min_overlap: float = 0.6, min_words: int = 3) -> tuple[str, int]:
    """Add ``[n]`` to sentences without a marker whose content words mostly (``min_overlap``) appear in
    passage n (the best such passage). Returns (text, markers added)."""
    bags = [content_tokens(p.chunk.text + " " + p.chunk.section) for p in passages]
    added = 0
    out: list[str] = []
    last = 0
    for m in _SENTENCE.finditer(text):
        sentence = m.group(0)
        out.append(text[last : m.start()])
        last = m.end()
        words = content_tokens(sentence)
        if CITATION.search(sentence) or len(words) < min_words or not bags:
            out.append(sentence)
            continue
        scores = [len(words & bag) / len(words) for bag in bags]
        best = max(range(len(bags)), key=lambda i: scores[i])
        if scores[best] < min_overlap:
            out.append(sentence)
            continue
        body = sentence.rstrip()
        trail = sentence[len(body):]
        stripped = body.rstrip(".!?")
        out.append(f"{stripped} [{best + 1}]{body[len(stripped):]}{trail}")
        added += 1
    out.append(text[last:])
    return "".join(out), added


def _shown_text(p: Passage) -> str:
    """Everything the model saw of a passage: its text and its title and section header."""
    return p.chunk.text + " " + p.chunk.title + " " + p.chunk.section


def support(answer: str, passages: Sequence[Passage], question: str = "") -> float:
    """Share of the answer's content words (beyond the question's) that occur in the passages: low values
    mean the model answered from its own memory rather than from the handbooks."""
    novel = content_tokens(answer) - content_tokens(question)
    if not novel:
        return 1.0
    bag: set[str] = set()
    for p in passages:
        bag |= content_tokens(_shown_text(p))
    return len(novel & bag) / len(novel)


# A number as a claim: "0.9", "20%", "7 weeks", "2x" (not the digits of a name such as "L1", "GPT-4", "F1").
_CLAIMED_NUMBER = re.compile(r"(?<![\w.\-/])\d+(?:[.,]\d+)?(?![\w.,]?\d)")
_ANY_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")  # "1. Fit ...": an enumeration, not a claim


def _number_value(text: str) -> float:
    return float(text.replace(",", "") if "," in text and len(text.split(",")[-1]) == 3 else text.replace(",", "."))


def unsupported_numbers(answer: str, passages: Sequence[Passage], question: str = "") -> list[str]:
    """Numbers the answer states that neither the passages nor the question contain ("around 0.9", "7
    weeks", "10-20%"): a small model that answers from memory gives itself away with them."""
    body = _LIST_MARKER.sub(" ", CITATION.sub(" ", answer))
    known: set[float] = set()
    for text in [question, *map(_shown_text, passages)]:
        known.update(_number_value(m.group(0)) for m in _ANY_NUMBER.finditer(text))
    out: list[str] = []
    for m in _CLAIMED_NUMBER.finditer(body):
        if _number_value(m.group(0)) not in known and m.group(0) not in out:
            out.append(m.group(0))
    return out


# A marker standing where the answer should be: "is given by the formula: [3]", "denoted as [1]", "has [1]
# parameters", "the formula: [n]" (the small model cites instead of stating what it does not know).
_PLACEHOLDER = re.compile(
    r"(?:\b(?:is|are|was|were|be|by|as|has|have|of|equals)|[:=])\s*(?:" + CITATION.pattern + r"|\[\s*n\s*\])",
    re.I,
)


def placeholder_markers(answer: str) -> int:
    """How many citation markers stand in for content ("is given by [2]") rather than support a claim."""
    return len(_PLACEHOLDER.findall(answer))


def novel_words(answer: str, question: str) -> set[str]:
    """The answer's content words that are not the question's (a word and its inflection, "disables" and
    "disable", count as one): empty when the reply only restates the question."""
    asked = content_tokens(question)
    return {w for w in content_tokens(answer) - asked
            if not any(len(w) >= 5 and len(q) >= 5 and w[:5] == q[:5] for q in asked)}


# -- semantic grounding (paraphrases that share few words with the passage: "Sigma" for "Σ") -------------
Embed = Callable[[list[str]], list[list[float]]]  # unit-length vectors (rag.embeddings.TextEmbedder.embed)
Grounding = list[tuple[int, int, int, float]]  # per reply sentence: (start, end, best passage index, cosine)
_MARKERLESS_MIN_WORDS = 3


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text`` with at least a few words."""
    return [m.span() for m in _SENTENCE.finditer(text)
            if len(CITATION.sub(" ", m.group(0)).split()) >= _MARKERLESS_MIN_WORDS]


def sentence_grounding(text: str, passages: Sequence[Passage], embed: Embed) -> Grounding:
    """For each sentence of the answer: (start, end, best passage index, cosine with that passage's closest
    sentence). Embeds the answer's and the passages' sentences with the retrieval embedder."""
    spans = _sentences(text)
    units: list[tuple[int, str]] = []
    for i, p in enumerate(passages):
        body = p.chunk.text
        units += [(i, body[a:b].strip()) for a, b in _sentences(body)] or [(i, body.strip())]
    if not spans or not units:
        return []
    vecs = embed([CITATION.sub(" ", text[a:b]).strip() for a, b in spans] + [u for _, u in units])
    answer_vecs, unit_vecs = vecs[: len(spans)], vecs[len(spans):]
    out = []
    for (a, b), v in zip(spans, answer_vecs, strict=True):
        sims = [sum(x * y for x, y in zip(v, u, strict=True)) for u in unit_vecs]
        j = max(range(len(sims)), key=sims.__getitem__)
        out.append((a, b, units[j][0], float(sims[j])))
    return out


def semantic_support(grounding: Grounding) -> float:
    """Mean over the answer's sentences of their best similarity to a passage sentence (1.0: no sentence)."""
    return sum(g[3] for g in grounding) / len(grounding) if grounding else 1.0


def semantic_attribute(text: str, grounding: Grounding,
                       min_similarity: float) -> tuple[str, int]:
    """Add ``[n]`` to sentences without a marker that closely paraphrase a sentence of passage n."""
    out: list[str] = []
    last = 0
    added = 0
    for a, b, best, sim in grounding:
        sentence = text[a:b]
        if CITATION.search(sentence) or sim < min_similarity:
            continue
        body = sentence.rstrip()
        stripped = body.rstrip(".!?")
        out.append(text[last:a] + f"{stripped} [{best + 1}]{body[len(stripped):]}{sentence[len(body):]}")
        last = b
        added += 1
    out.append(text[last:])
    return "".join(out), added


# -- the model's own refusal ----------------------------------------------------------------------------
_REFUSAL_LIKE = re.compile(
    r"(can ?not|can't|cannot|could ?n[o']t|unable to) (find|answer|locate)"
    r"|(passages|handbooks?|context|documents?|provided text) (do|does|did)(n't| not) "
    r"(contain|mention|provide|say|include|cover|answer|discuss|specify)"
    r"|no (information|mention) (about|of|on)"
    r"|not (mentioned|covered|found|provided|discussed) in the (passages|handbooks?|context)",
)


def refusal_norm(text: str) -> str:
    """:func:`rag.text.norm` with "can't"/"can not" read as "cannot" (how refusals are compared)."""
    text = (text or "").lower().replace("’", "'").replace("can't", "cannot").replace("can not", "cannot")
    return norm(text)


def is_refusal(reply: str, has_valid_citation: bool) -> bool:
    """Whether the model's reply declines to answer (the refusal sentence or something close to it)."""
    text = refusal_norm(re.sub(r"\[[^\]]*\]", " ", reply))
    target = refusal_norm(REFUSAL)
    if not text:
        return True
    if text.startswith(target) or difflib.SequenceMatcher(None, text, target).ratio() >= 0.8:
        return True
    if target in text and not has_valid_citation:
        return True
    return not has_valid_citation and bool(_REFUSAL_LIKE.search(reply.lower().replace("’", "'")))


# -- the policy -----------------------------------------------------------------------------------------
RefusalReason = Literal["evidence", "unknown_term", "model", "unsupported"]


@dataclass
class Verdict:
    """What the policy decided about one reply."""

    refused: bool
    reason: RefusalReason | None  # "model" (the model declined) | "unsupported" (answered from memory) | None
    mapped: Mapped  # the cleaned reply and its citations (auto-citations added when the reply had none)
    auto_cited: int = 0
    checks: dict[str, float] = field(default_factory=dict)  # the measured values, for timings and reports


class GroundingPolicy:
    """Refuse a reply that is the model's refusal or is not grounded in its passages; cite what the model
    forgot to cite. The order of the checks, and why, is in :mod:`rag.answer`'s docstring."""

    def __init__(self, settings: AnswerSettings, embed: Embed | None) -> None:
        self.settings = settings
        self.embed = embed

    def _grounding(self, text: str, passages: Sequence[Passage], cache: dict[str, Grounding | None]
                   ) -> Grounding | None:
        if text not in cache:  # each text is embedded once per reply
            cache[text] = sentence_grounding(text, passages, self.embed) if self.embed is not None else None
        return cache[text]

    def judge(self, reply: str, passages: Sequence[Passage], question: str, evidence: float,
              names_absent: Callable[[], bool]) -> Verdict:
        """``evidence``: the best dense similarity of the retrieved passages; ``names_absent()``: whether the
        question names a term the given passages do not mention (computed only when needed)."""
        s = self.settings
        mapped = map_citations(reply, passages)
        grounded = support(mapped.text, passages, question)
        checks: dict[str, float] = {"support": round(grounded, 3)}
        cache: dict[str, Grounding | None] = {}
        if is_refusal(mapped.text, bool(mapped.citations)):
            return Verdict(True, "model", mapped, checks=checks)
        numbers = unsupported_numbers(mapped.text, passages, question)
        checks["unsupported_numbers"] = len(numbers)
        if numbers or not novel_words(mapped.text, question) or placeholder_markers(reply):
            # A number no passage states ("around 0.9"), nothing beyond the question's own words, or a marker
            # where the content should be ("is given by the formula: [3]").
            return Verdict(True, "unsupported", mapped, checks=checks)
        if grounded < s.min_support:
            # Few of its words are in the passages: a paraphrase of them, or the model's own memory?
            grounding = self._grounding(mapped.text, passages, cache)
            semantic = semantic_support(grounding) if grounding is not None else 0.0
            checks["semantic_support"] = round(semantic, 3)
            if semantic < s.min_semantic_support or evidence < s.min_paraphrase_evidence or names_absent():
                return Verdict(True, "unsupported", mapped, checks=checks)
        auto = 0
        if mapped.uncited and s.auto_cite:
            text, auto = attribute(mapped.text, passages, s.min_attribution_overlap)
            grounding = self._grounding(text, passages, cache)  # the same text unless markers were added
            if grounding:
                text, more = semantic_attribute(text, grounding, s.min_attribution_similarity)
                auto += more
            if auto:
                mapped = map_citations(text, passages)
                mapped.invalid = 0
        return Verdict(False, None, mapped, auto, checks)
