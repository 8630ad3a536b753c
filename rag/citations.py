"""Citation markers in generated answers: find ``[n]``, ``[n, m]``, ``[n][m]``, ``[n-m]``, map them to the
numbered passages the model was given, and remove markers that point at no passage.

:class:`CitationFilter` does the same cleaning incrementally on a token stream, so the text a user sees
while the answer streams is the text of the final answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rag.types import Passage

# "[1]", "[1, 2]", "[1,2; 3]", "[1-3]", "[Passage 2]", "[passages 1 and 2]"
CITATION = re.compile(
    r"\[\s*(?:(?:passages?|source|sources|doc)\s*)?(\d{1,3}(?:\s*(?:,|;|-|–|and|&)\s*(?:passages?\s*)?\d{1,3})*)\s*\]",
    re.I,
)
_NUM_OR_RANGE = re.compile(r"(\d{1,3})\s*(?:[-–]\s*(\d{1,3}))?")
MAX_RANGE = 20


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    source: str
    title: str
    section: str
    page: int | None
    text: str

    @classmethod
    def of(cls, n: int, passage: Passage) -> Citation:
        c = passage.chunk
        return cls(n=n, chunk_id=c.id, source=c.source, title=c.title, section=c.section, page=c.page,
                   text=c.text)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def numbers(marker_body: str) -> list[int]:
    """The passage numbers in the inside of one marker ("1, 2", "1-3", "2 and 4")."""
    out: list[int] = []
    for m in _NUM_OR_RANGE.finditer(marker_body):
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a or b - a > MAX_RANGE:
            b = a
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def _clean_marker(m: re.Match[str], n_passages: int, counter: list[int]) -> str:
    nums = numbers(m.group(1))
    valid = [n for n in nums if 1 <= n <= n_passages]
    counter[0] += len(nums) - len(valid)
    return "[" + ", ".join(map(str, valid)) + "]" if valid else ""


def _tidy(text: str) -> str:
    """Spaces left behind by removed markers ("word [9]." -> "word.")."""
    text = re.sub(r"[ \t]+([.,;:!?)])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text


def clean(text: str, n_passages: int) -> tuple[str, int]:
    """``text`` with markers to numbers outside 1..n_passages removed; returns (text, removed count)."""
    counter = [0]
    out = CITATION.sub(lambda m: _clean_marker(m, n_passages, counter), text)
    return (_tidy(out) if counter[0] else out), counter[0]


def cited_numbers(text: str, n_passages: int) -> list[int]:
    """Valid passage numbers cited in ``text``, in order of first appearance."""
    seen: list[int] = []
    for m in CITATION.finditer(text):
        for n in numbers(m.group(1)):
            if 1 <= n <= n_passages and n not in seen:
                seen.append(n)
    return seen


@dataclass
class Mapped:
    text: str
    citations: list[Citation]
    invalid: int

    @property
    def uncited(self) -> bool:
        return not self.citations


def map_citations(text: str, passages: Sequence[Passage]) -> Mapped:
    """Clean ``text`` and map its valid markers to the passages (``[n]`` is ``passages[n-1]``)."""
    cleaned, invalid = clean(text, len(passages))
    nums = cited_numbers(cleaned, len(passages))
    return Mapped(cleaned.strip(), [Citation.of(n, passages[n - 1]) for n in nums], invalid)


class CitationFilter:
    """Incremental :func:`clean`: feed stream pieces, get text safe to show (a possible marker is held back
    until it closes or clearly is not one). ``feed(...)`` pieces + ``flush()`` is ``clean(whole)`` text up
    to whitespace tidying."""

    _MAX_HOLD = 40  # a "[" followed by this many characters without "]" is not a marker

    def __init__(self, n_passages: int) -> None:
        self.n = n_passages
        self.invalid = 0
        self._buf = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out = []
        while self._buf:
            i = self._buf.find("[")
            if i < 0:
                out.append(self._buf)
                self._buf = ""
                break
            out.append(self._buf[:i])
            self._buf = self._buf[i:]
            j = self._buf.find("]")
            if j < 0:
                if len(self._buf) > self._MAX_HOLD:
                    out.append(self._buf[0])
                    self._buf = self._buf[1:]
                    continue
                break  # wait for more text
            head = self._buf[: j + 1]
            m = CITATION.fullmatch(head)
            if m:
                counter = [0]
                out.append(_clean_marker(m, self.n, counter))
                self.invalid += counter[0]
                self._buf = self._buf[j + 1 :]
            else:
                out.append(self._buf[0])
                self._buf = self._buf[1:]
        return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        return rest


# -- grounding helpers (for a small model that often forgets its markers or answers from memory) -------
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


def content_tokens(text: str) -> set[str]:
    """Stemmed content words (the retriever's BM25 tokenizer), markers removed."""
    from rag.retrieval import tokenize

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
Embed = Callable[[list[str]], list[list[float]]]  # unit-length vectors (rag.embeddings.Embedder.embed)
_MARKERLESS_MIN_WORDS = 3


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text`` with at least a few words."""
    return [m.span() for m in _SENTENCE.finditer(text)
            if len(CITATION.sub(" ", m.group(0)).split()) >= _MARKERLESS_MIN_WORDS]


def sentence_grounding(text: str, passages: Sequence[Passage], embed: Embed) -> list[tuple[int, int, int, float]]:
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


def semantic_support(grounding: Sequence[tuple[int, int, int, float]]) -> float:
    """Mean over the answer's sentences of their best similarity to a passage sentence (1.0: no sentence)."""
    return sum(g[3] for g in grounding) / len(grounding) if grounding else 1.0


def semantic_attribute(text: str, grounding: Sequence[tuple[int, int, int, float]],
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
