"""Rule checks of a written sentence against the handbook text it should come from (no model).

A 1.5B model that answers from its own memory gives itself away: a number no excerpt states ("around 0.9"),
a marker where the content should be ("is given by the formula: [3]"), content words that are mostly in no
excerpt, or nothing beyond the question's own words. :mod:`rag.answer.verify` applies these before it asks
the model; :func:`is_refusal` recognises the model's refusal sentence.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from rag.citations import CITATION
from rag.prompts import REFUSAL
from rag.text import norm, tokenize


def content_tokens(text: str) -> set[str]:
    """Stemmed content words (the retriever's BM25 tokenizer), markers removed."""
    return set(tokenize(CITATION.sub(" ", text)))


# A number as a claim: "0.9", "20%", "7 weeks", "2x" (not the digits of a name such as "L1", "GPT-4", "F1").
_CLAIMED_NUMBER = re.compile(r"(?<![\w.\-/])\d+(?:[.,]\d+)?(?![\w.,]?\d)")
_ANY_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_LIST_MARKER = re.compile(r"(?m)^\s*\d{1,2}[.)]\s")  # "1. Fit ...": an enumeration, not a claim


def _number_value(text: str) -> float:
    return float(text.replace(",", "") if "," in text and len(text.split(",")[-1]) == 3 else text.replace(",", "."))


def unsupported_numbers(claim: str, texts: Iterable[str]) -> list[str]:
    """Numbers ``claim`` states that none of ``texts`` (the excerpts and the question) contains ("around
    0.9", "7 weeks", "10-20%")."""
    body = _LIST_MARKER.sub(" ", CITATION.sub(" ", claim))
    known: set[float] = set()
    for text in texts:
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


def placeholder_markers(text: str) -> int:
    """How many citation markers stand in for content ("is given by [2]") rather than support a claim."""
    return len(_PLACEHOLDER.findall(text))


def novel_words(claim: str, question: str) -> set[str]:
    """The claim's content words that are not the question's (a word and its inflection, "disables" and
    "disable", count as one): empty when the claim only restates the question."""
    asked = content_tokens(question)
    return {w for w in content_tokens(claim) - asked
            if not any(len(w) >= 5 and len(q) >= 5 and w[:5] == q[:5] for q in asked)}


def word_support(claim: str, question: str, texts: Iterable[str]) -> float | None:
    """The share of the claim's new content words (those not in the question) that ``texts`` contain: 0 when
    it adds no word to the question's (it restates it); None for a claim of code only."""
    if claim.lstrip().startswith("```"):
        return None
    new = novel_words(claim, question)
    if not new:
        return 0.0
    bag: set[str] = set()
    for text in texts:
        bag |= content_tokens(text)
    return len(new & bag) / len(new)


# -- the model's own refusal ----------------------------------------------------------------------------
_REFUSAL_LIKE = re.compile(
    r"(can ?not|can't|cannot|could ?n[o']t|unable to) (find|answer|locate)"
    r"|(passages|excerpts?|handbooks?|context|documents?|provided text) (do|does|did)(n't| not) "
    r"(contain|mention|provide|say|include|cover|answer|discuss|specify|state)"
    r"|no (information|mention) (about|of|on)"
    r"|not (mentioned|covered|found|provided|discussed|stated) in the (passages|excerpts?|handbooks?|context)",
)


def refusal_norm(text: str) -> str:
    """:func:`rag.text.norm` with "can't"/"can not" read as "cannot" (how refusals are compared)."""
    text = (text or "").lower().replace("’", "'").replace("can't", "cannot").replace("can not", "cannot")
    return norm(text)


def is_refusal(reply: str) -> bool:
    """Whether the model's reply declines to answer (the refusal sentence or something close to it)."""
    text = refusal_norm(re.sub(r"\[[^\]]*\]", " ", reply))
    target = refusal_norm(REFUSAL)
    if not text:
        return True
    if text.startswith(target) or target in text or difflib.SequenceMatcher(None, text, target).ratio() >= 0.8:
        return True
    return bool(_REFUSAL_LIKE.search(reply.lower().replace("’", "'")))
