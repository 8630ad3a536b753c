"""Named terms: the proper nouns and acronyms a question names ("Mahalanobis", "XGBoost", "SimCLR's",
"E-step"), and whether a text mentions them.

A question that names something the passages never mention is not answered by them, however close the
passages are in embedding space: "When should I use Mahalanobis distance instead of Euclidean distance to
flag outliers?" retrieves passages about outliers and distances, and a small model then answers from memory.
:func:`missing_terms` is the check :mod:`rag.answer` makes before calling the model.

A term is a word with a capital letter that is not just the capitalised first word of a sentence ("What",
"How"), or a word with a capital letter after its first character ("ResNet", "GPUs") wherever it stands.
"I" and single letters are not terms. Matching ignores case, hyphens and spaces inside the term ("E-step" =
"E step", "KMeans" = "K-means"), possessives ("Cohen's") and a plural "s" ("GPUs" = "GPU").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rag.text import norm

_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'’/.][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")
_NOT_TERMS = {"i", "i'm", "i've", "i'd", "i'll", "ok", "okay"}
_POSSESSIVE = re.compile(r"['’]s?$")
_JOINED = re.compile(r"[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)+")


def named_terms(question: str) -> list[str]:
    """The named terms of a question, in order, without repeats (possessives removed)."""
    out: list[str] = []
    for m in _WORD.finditer(question):
        word = _POSSESSIVE.sub("", m.group(0).replace("’s", "'s"))
        if len(word) < 2 or word.lower() in _NOT_TERMS or not any(c.isupper() for c in word):
            continue
        sentence_start = not question[: m.start()].strip() or bool(_SENTENCE_END.search(question[: m.start()]))
        inner_caps = any(c.isupper() for c in word[1:])
        if sentence_start and not inner_caps:
            continue  # "What", "How", "Does"
        if word not in out:
            out.append(word)
    return out


def _variants(term: str) -> list[str]:
    """Normalised forms that count as a mention of ``term``: as words, joined, and without a plural "s"."""
    spaced = norm(term)
    forms = {spaced, spaced.replace(" ", "")}
    acronym_plural = len(term) > 2 and term.endswith("s") and term[-2].isupper()  # "IDs", "GPUs"
    for form in list(forms):
        if form.endswith("s") and (acronym_plural or len(form) > 3):
            forms.add(form[:-1])  # "gpus" -> "gpu", "ids" -> "id", "parquets" -> "parquet"
    return sorted(f for f in forms if f)


def words_of(text: str) -> set[str]:
    """The normalised words of a text, plus its joined forms ("K-means" also as "kmeans", "A/B" as "ab")."""
    words = set(norm(text).split())
    words.update(norm(m.group(0)).replace(" ", "") for m in _JOINED.finditer(text))
    return words


class Vocabulary:
    """The words of some texts, for fast "does it mention this term?" checks.

    Built from texts it also matches multi-word forms ("e step") as phrases; built from a word set
    (:meth:`from_words`, what the keyword index persists, so a large library's text is not held in memory)
    a multi-word form counts when each of its words is known (its joined form, "estep", is checked first).
    """

    def __init__(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        self._text: str | None = " " + " | ".join(norm(t) for t in texts) + " "
        self._words: set[str] = set()
        for t in texts:
            self._words |= words_of(t)

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Vocabulary:
        vocab = cls([])
        vocab._text = None
        vocab._words = {w for w in words if w}
        return vocab

    def mentions(self, term: str) -> bool:
        if self._mentions(term):
            return True
        # A compound of a known term and plain words ("XGBoost-style", "BERT-like", "GPT-ish", "CNN-based")
        # is a mention of the term: its parts with a capital letter or a digit are what it names.
        parts = [p for p in re.split(r"[-/]", term) if p]
        named = [p for p in parts if any(c.isupper() or c.isdigit() for c in p)]
        if len(parts) < 2 or not named or len(named) == len(parts):
            return False
        return all(self._mentions(p) for p in named)

    def _mentions(self, term: str) -> bool:
        for form in _variants(term):
            if " " in form:
                if self._text is None:
                    if all(w in self._words for w in form.split()):
                        return True
                elif f" {form} " in self._text or f" {form}s " in self._text:
                    return True
            elif form in self._words or f"{form}s" in self._words or f"{form}es" in self._words:
                return True
        return False


_ABBREVIATION = re.compile(r"\(\s*([A-Z][A-Za-z0-9-]{0,11})\s*\)")
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def spelled_out(text: str) -> dict[str, str]:
    """The words of ``text`` that spell out an abbreviation given right after them in brackets, each mapped to
    it: "the Kolmogorov-Smirnov (KS) test" -> {"Kolmogorov-Smirnov": "KS"}, "Gated Recurrent Unit (GRU)" ->
    {"Gated": "GRU", "Recurrent": "GRU", "Unit": "GRU"}. The words' initials must be the abbreviation's
    capitals ("TF-IDF": T, F, I, D, F; "ReLU": R, L, U)."""
    out: dict[str, str] = {}
    for m in _ABBREVIATION.finditer(text):
        abbr = m.group(1)
        capitals = "".join(c for c in abbr if c.isupper())
        before = list(_ALNUM.finditer(text, 0, m.start()))
        n = len(capitals)
        if n < 2 or len(before) < n or "".join(w.group(0)[0].upper() for w in before[-n:]) != capitals:
            continue
        for w in _WORD.finditer(text, before[-n].start(), before[-1].end()):
            word = _POSSESSIVE.sub("", w.group(0).replace("’s", "'s"))
            if any(c.isupper() for c in word):
                out.setdefault(word, abbr)
    return out


def unmentioned(text: str, vocab: Vocabulary) -> list[str]:
    """``text``'s named terms that ``vocab`` does not mention. A term spelling out an abbreviation that ``text``
    gives in brackets counts as mentioned when the abbreviation is ("Kolmogorov-Smirnov (KS)" against a
    passage's "KS"): a gold answer's stated sentence was dropped for it (g67, 2026-12-06)."""
    abbreviations = spelled_out(text)
    return [t for t in named_terms(text) if not vocab.mentions(t)
            and not (t in abbreviations and vocab.mentions(abbreviations[t]))]


def missing_terms(question: str, texts: Iterable[str]) -> list[str]:
    """The question's named terms that none of ``texts`` mentions (:func:`unmentioned`)."""
    if not named_terms(question):
        return []
    return unmentioned(question, Vocabulary(texts))
