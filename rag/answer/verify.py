"""Is a written sentence stated by the handbook text it comes from? Rules first, then the model's yes/no.

:meth:`Verifier.check` fails a sentence, in order, when

1. it states a number that neither the evidence nor the question contains ("around 0.9"): the model
   remembered it;
2. it names a term (:mod:`rag.terms`) that neither the evidence nor the question mentions;
3. a marker stands where its content should be ("is given by the formula: [3]");
4. its new content words (those not in the question) are mostly (below ``verify_min_word_support``) in no
   evidence text ("memory"), or it adds no word to the question's ("restates");
5. otherwise the model is asked whether the evidence states the sentence, and the log-odds of its "yes"
   (:meth:`rag.llm.LLM.yes_no`, one forward pass) must reach ``verify_min_logodds``. The system message and
   the evidence come first in the prompt, so the KV cache holds them for the next sentence of the same answer.

The answer path checks each sentence of the model's explanation against the quotes it was given
(:mod:`rag.answer.explain`); the study guide checks each of its lines against the units of its passages closest
to the line (:meth:`Verifier.check_passages`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag import prompts
from rag.answer.checks import placeholder_markers, unsupported_numbers, word_support
from rag.citations import CITATION
from rag.terms import missing_terms
from rag.types import Passage
from rag.units import split_units

if TYPE_CHECKING:
    from rag.llm import LLM
    from rag.settings import AnswerSettings

Embed = Callable[[list[str]], list[list[float]]]
# Sentences shorter than this many words ("Yes [1].") are not claims to check. 3: a design choice of the first
# grounding check (a claim needs a subject, a verb and an object), not tuned.
MIN_WORDS = 3


@dataclass(frozen=True)
class Check:
    """One sentence's verdict: ``reason`` is "model" (asked, ``logodds`` its answer), a rule that failed it
    ("number", "term", "placeholder", "memory", "restates"), "short" (not a claim) or "rules" (passed the
    rules, the model not asked)."""

    text: str
    supported: bool
    reason: str
    logodds: float | None = None
    seconds: float = 0.0


def strip_markers(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub("", text)).strip()


def excerpts_of(texts: Sequence[str]) -> str:
    """Texts as a numbered excerpts block (what the check prompt quotes)."""
    return "\n".join(prompts.excerpt_block(i, "handbook", t.strip()) for i, t in enumerate(texts, 1))


def check_messages(excerpts: str, claim: str) -> tuple[list[dict[str, str]], str]:
    """The check's prompt: the fixed prefix, the excerpts (the explanation's own, so the KV cache still holds
    them), then the one sentence; and the shared excerpts part."""
    return prompts.about_quotes(excerpts, "check", claim=claim)


class Verifier:
    """Checks sentences against evidence texts (see the module doc). ``llm``: a zero-argument factory (the model
    is asked only when a sentence passes the rules); None checks with the rules alone."""

    def __init__(self, settings: AnswerSettings, llm: Callable[[], LLM] | None, embed: Embed | None = None) -> None:
        self.settings = settings
        self._llm = llm
        self.embed = embed

    def rules(self, claim: str, evidence: Sequence[str], question: str) -> str:
        """The first rule (1-4 of the module doc) ``claim`` fails, or "" when it passes them all."""
        if unsupported_numbers(claim, [question, *evidence]):
            return "number"
        if missing_terms(claim, [question, *evidence]):
            return "term"
        if placeholder_markers(claim):
            return "placeholder"
        share = word_support(strip_markers(claim), question, evidence)
        if share is not None and share < self.settings.verify_min_word_support:
            return "memory" if share > 0 else "restates"
        return ""

    def check(self, sentence: str, evidence: Sequence[str], question: str, *, excerpts: str | None = None) -> Check:
        """The rules against the ``evidence`` texts, then the model's yes/no against ``excerpts`` (a rendered
        excerpts block; default: the evidence, numbered)."""
        t = time.perf_counter()
        claim = strip_markers(sentence)
        if len(claim.split()) < MIN_WORDS and not claim.lstrip().startswith("```"):
            return Check(sentence, True, "short")
        reason = self.rules(sentence, evidence, question)
        if reason:
            return Check(sentence, False, reason, seconds=round(time.perf_counter() - t, 3))
        if self._llm is None:
            return Check(sentence, True, "rules")
        messages, shared = check_messages(excerpts or excerpts_of(evidence), claim)
        logodds = round(self._llm().yes_no(messages, shared), 3)
        return Check(sentence, logodds >= self.settings.verify_min_logodds, "model", logodds,
                     round(time.perf_counter() - t, 3))

    def closest(self, claim: str, passages: Sequence[Passage], n: int = 2) -> tuple[list[str], int]:
        """The ``n`` units of ``passages`` closest to ``claim`` (embedding similarity, else shared words), in
        document order, and the 1-based passage of the closest."""
        units = [u for i, p in enumerate(passages) for u in split_units(p.chunk.text, i)]
        if not units:
            return [passages[0].chunk.text] if passages else [], 1
        if self.embed is None:
            from rag.answer.checks import content_tokens

            words = content_tokens(claim)
            sims = [float(len(words & content_tokens(u.text))) for u in units]
        else:
            vecs = self.embed([claim] + [u.text for u in units])
            sims = [sum(a * b for a, b in zip(vecs[0], v, strict=True)) for v in vecs[1:]]
        ranked = sorted(range(len(units)), key=lambda i: -sims[i])[:n]
        best = sorted(ranked, key=lambda i: (units[i].passage, units[i].start))
        return [units[i].text for i in best], units[ranked[0]].passage + 1

    def check_passages(self, sentence: str, passages: Sequence[Passage], question: str) -> tuple[Check, int]:
        """Check ``sentence``: the rules against whole ``passages``, the model against their units closest to
        it. Returns the check and the 1-based passage that states it (to cite)."""
        quotes, n = self.closest(strip_markers(sentence), passages)
        texts = [f"{p.chunk.title}\n{p.chunk.section}\n{p.chunk.text}" for p in passages]
        return self.check(sentence, texts, question, excerpts=excerpts_of(quotes)), n
