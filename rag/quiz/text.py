"""Text helpers for quiz items: normalised comparison, key terms, the quote that holds an answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.text import norm, tokenize

_ARTICLE = re.compile(r"^(?:the|a|an) ")
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_PASSAGE_REF = re.compile(
    r"^(?:according to|based on|in|from) (?:the|this) (?:passage|text|handbook)s?,?\s*", re.I
)


def normalize(text: str) -> str:
    """:func:`rag.text.norm` without a leading article (for comparing options and answers)."""
    return _ARTICLE.sub("", norm(text))


def key_terms(text: str) -> set[str]:
    """Stemmed content words (the retriever's tokenizer: stop words dropped, light stemming)."""
    return set(tokenize(text or ""))


def term_overlap(text: str, reference: str) -> float:
    """Share of the key terms of ``text`` that occur in ``reference`` (0.0 when ``text`` has none)."""
    terms = key_terms(text)
    if not terms:
        return 0.0
    return len(terms & key_terms(reference)) / len(terms)


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=False)))  # vectors are normalised


def clean_field(text: Any) -> str:
    out = re.sub(r"\s+", " ", str(text or "")).strip()
    out = _PASSAGE_REF.sub("", out)
    return out[:1].upper() + out[1:] if out else out


def whole_sentences(text: str) -> str:
    """Drop a trailing unfinished sentence (a reply cut off by the schema's maxLength)."""
    if not text or text[-1] in ".!?)\"'":
        return text
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    return text[: cut + 1] if cut > 0 else text


def best_quote(passage: str, answer: str, max_chars: int = 320) -> str:
    """The passage sentence that shares most key terms with the answer (the quote shown as feedback)."""
    sentences = [s.strip(" -*#|\t") for s in _SENT.split(passage or "") if len(s.strip()) > 20]
    if not sentences:
        return (passage or "").strip()[:max_chars]
    terms = key_terms(answer)
    best = max(sentences, key=lambda s: (len(terms & key_terms(s)), -abs(len(s) - 160)))
    return best if len(best) <= max_chars else best[: max_chars - 1].rstrip() + "…"
