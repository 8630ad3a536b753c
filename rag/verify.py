"""Verification of an answer, sentence by sentence, instead of a stack of whole-answer thresholds.

Each sentence (list item, code block) of the model's reply is checked against the evidence passage it
cites (:class:`Verifier`); a sentence without a marker is checked against the passage it is closest to
(embedding similarity of its words to the passage's units) and gets that passage's marker when it passes.

The check, in order:

1. a number the sentence states that neither the passage nor the question contains ("around 0.9") fails it:
   the model remembered the number;
2. a named term (:mod:`rag.terms`) that no evidence passage nor the question mentions fails it ("ONNX" when
   no passage names a format);
3. a marker where the content should be ("is given by the formula: [3]") fails it;
4. so does a sentence whose new content words (those not in the question) are mostly (below
   ``verify_min_word_support``) in no excerpt, or that adds no word to the question's ("restates");
5. otherwise the model itself is asked whether the sentence is true according to the passage's units closest
   to it (quoted), after the answer prompt's KV-cached fixed prefix (only the short question is new tokens).

Sentences that fail are dropped from the answer (``Answer.dropped`` counts them); when none passes, the
answer is refused as ``unsupported``. Every sentence kept carries the marker of the passage that supports
it, placed outside code and identifiers (:func:`rag.citations.place_outside_code`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag import prompts
from rag.citations import CITATION, cited_numbers, place_outside_code
from rag.evidence import split_units
from rag.grounding import content_tokens, novel_words, placeholder_markers, unsupported_numbers
from rag.llm import LLM
from rag.terms import missing_terms
from rag.types import Passage

Messages = list[dict[str, str]]
Embed = Callable[[list[str]], list[list[float]]]
# Replies shorter than this many words ("Yes [1].") are not claims to check.
MIN_WORDS = 3


@dataclass
class SentenceCheck:
    text: str  # the sentence as shown (with its marker)
    passage: int | None  # the 1-based evidence passage it was checked against
    supported: bool
    reason: str  # "model" | "number" | "term" | "placeholder" | "no_passage" | "short" | "unchecked"


@dataclass
class Verification:
    text: str  # the answer with the failing sentences removed and every kept sentence cited
    checks: list[SentenceCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return sum(1 for c in self.checks if c.supported and c.reason != "short")

    @property
    def dropped(self) -> int:
        return sum(1 for c in self.checks if not c.supported)


def _strip_markers(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub("", text)).strip()


class Verifier:
    """Checks answer sentences against numbered evidence passages (see the module doc)."""

    def __init__(self, embed: Embed | None, *, use_model: bool = True, max_checks: int = 6,
                 min_word_support: float = 0.4) -> None:
        self.embed = embed
        self.min_word_support = min_word_support
        self.use_model = use_model
        self.max_checks = max_checks

    def closest(self, sentence: str, passages: Sequence[Passage]) -> int | None:
        """The 1-based passage holding the unit closest to ``sentence`` (the ranking :meth:`_quote` uses)."""
        return self._quote(_strip_markers(sentence), passages, 1)[1] if passages else None

    def _quote(self, claim: str, passages: Sequence[Passage], cited: int) -> tuple[str, int]:
        """The evidence units closest to the claim (the best two, in document order) and the 1-based passage of
        the best one. Searched across all evidence passages: a small model often cites the passage next to
        the one that states its sentence, and the marker then moves to the one that does."""
        units = [u for i, p in enumerate(passages) for u in split_units(p.chunk.text, i)]
        if not units:
            return passages[cited - 1].chunk.text, cited
        if self.embed is None:
            words = content_tokens(claim)
            sims = [float(len(words & content_tokens(u.text))) for u in units]
        else:
            vecs = self.embed([claim] + [u.text for u in units])
            sims = [sum(a * b for a, b in zip(vecs[0], v, strict=True)) for v in vecs[1:]]
        ranked = sorted(range(len(units)), key=lambda i: -sims[i])[:2]
        best = sorted(ranked, key=lambda i: (units[i].passage, units[i].start))
        return "\n".join(units[i].text for i in best), units[ranked[0]].passage + 1

    def _ask_model(self, llm: LLM, messages: Messages, text: str, claim: str) -> bool:
        """The model's yes/no, asked after the answer prompt's fixed prefix (system message and examples, which
        the KV cache holds; the answer's own turn is left out: asked after its own answer, the model says yes
        to everything). Free text, not a grammar: constrained to "yes"/"no" it also said yes to everything."""
        check = [*messages[:-1], {"role": "user", "content": prompts.verify_prompt(text, claim)}]
        verdict = llm.complete(check, max_tokens=3, temperature=0.0).strip().lower()
        return not verdict.startswith("no")

    def verify(self, answer: str, reply: str, passages: Sequence[Passage], question: str,
               messages: Messages | None, llm: LLM | None) -> Verification:
        """``answer``: the cleaned reply (invalid markers removed); ``reply``: the raw reply (what the KV cache
        holds); ``messages``: the answer prompt. Without ``llm``/``messages`` only the rules are applied."""
        t = time.perf_counter()
        units = split_units(answer)
        out: list[str] = []
        checks: list[SentenceCheck] = []
        last = 0
        asked = 0
        all_texts = [f"{p.chunk.title}\n{p.chunk.section}\n{p.chunk.text}" for p in passages]
        for u in units:
            out.append(answer[last : u.start])
            last = u.end
            sentence = u.text
            claim = _strip_markers(sentence)
            cited = cited_numbers(sentence, len(passages))
            if len(claim.split()) < MIN_WORDS and u.kind != "code":
                checks.append(SentenceCheck(sentence, cited[0] if cited else None, True, "short"))
                out.append(sentence)
                continue
            n = cited[0] if cited else self.closest(claim, passages)
            if n is None:
                checks.append(SentenceCheck(sentence, None, False, "no_passage"))
                continue
            reason = ""
            if unsupported_numbers(claim, [q for i, q in enumerate(passages) if i + 1 in (cited or [n])], question):
                reason = "number"
            elif missing_terms(claim, [question, *all_texts]):
                reason = "term"
            elif placeholder_markers(sentence):
                reason = "placeholder"
            elif (share := word_support(claim, question, passages)) is not None and share < self.min_word_support:
                reason = "memory" if share > 0 or novel_words(claim, question) else "restates"
            ok = not reason
            if ok and self.use_model and llm is not None and messages is not None:
                if asked < self.max_checks:
                    asked += 1
                    quote, source = self._quote(claim, passages, n)
                    ok = self._ask_model(llm, messages, quote, claim)
                    reason = "model"
                    if ok and source not in cited:
                        n, cited = source, []  # cite the passage that states it
                        sentence = _strip_markers(sentence) if CITATION.search(sentence) else sentence
                else:
                    reason = "unchecked"
            checks.append(SentenceCheck(sentence, n, ok, reason or "rules"))
            if not ok:
                continue
            if not cited:
                sentence = _cite(sentence, n)
            out.append(sentence)
        out.append(answer[last:])
        text = place_outside_code(_tidy("".join(out)))
        return Verification(text, checks, round(time.perf_counter() - t, 3))


def word_support(claim: str, question: str, passages: Sequence[Passage]) -> float | None:
    """The share of the claim's new content words (those not in the question) that the evidence excerpts
    contain: 0 when it adds no word to the question's (it restates it); None for a claim of code only."""
    if claim.lstrip().startswith("```"):
        return None
    new = novel_words(claim, question)
    if not new:
        return 0.0
    bag: set[str] = set()
    for p in passages:
        bag |= content_tokens(f"{p.chunk.title} {p.chunk.section} {p.chunk.text}")
    return len(new & bag) / len(new)


def _cite(sentence: str, n: int) -> str:
    """``sentence`` with ``[n]`` before its final punctuation (after a code block: on its own line)."""
    body = sentence.rstrip()
    if body.endswith("```"):
        return f"{body}\n[{n}]"
    stripped = body.rstrip(".!?:")
    return f"{stripped} [{n}]{body[len(stripped):]}"


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
