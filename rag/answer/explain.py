"""Explain the quotes, bounded: at most ``explain_max_sentences`` sentences written from the quotes alone, each
verified before it is shown.

The model sees only the quotes (numbered as their passages) and the question, with greedy decoding, so the
same question gets the same explanation in a warm app and a fresh process. Its reply is cut into sentences
(:func:`rag.units.split_units`: a code block stays whole); each is checked against the quotes
(:class:`rag.answer.verify.Verifier`) and shown only when it passes, with the marker of a quote that states
it. A sentence that fails is dropped, never the answer: the quotes stand on their own. A refusal sentence
from the model is not an explanation and is dropped too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag import prompts
from rag.answer.checks import content_tokens, is_refusal
from rag.answer.events import Delta, Stage
from rag.answer.select import Quote, excerpts
from rag.answer.verify import Check, Verifier, strip_markers
from rag.citations import cited_numbers, keep_markers, place_outside_code
from rag.units import split_units

if TYPE_CHECKING:
    from rag.llm import LLM, Usage

Messages = list[dict[str, str]]
STOP = ["</excerpt", "<excerpts>", "\nQuestion:"]


@dataclass
class Explanation:
    """The verified sentences (``text``, each cited) and what happened to every sentence the model wrote."""

    text: str = ""
    reply: str = ""  # the model's reply as written
    checks: list[Check] = field(default_factory=list)
    usage: Usage | None = None  # the explanation call's (its Response's)
    ttft_s: float | None = None  # from the request's start to the model's first token
    generate_s: float = 0.0
    verify_s: float = 0.0
    refused: bool = False  # the model wrote its refusal sentence instead

    @property
    def dropped(self) -> int:
        return sum(1 for c in self.checks if not c.supported)


def explain_messages(quotes: Sequence[Quote], question: str) -> tuple[Messages, str]:
    """The fixed prefix (KV-cached), the quotes (cached from the answers? check), then the question."""
    return prompts.about_quotes(excerpts(quotes), "explain", question=question)


def _cite(sentence: str, n: int) -> str:
    """``sentence`` with ``[n]`` before its final punctuation (after a code block: on its own line)."""
    body = sentence.rstrip()
    if body.endswith("```"):
        return f"{body}\n[{n}]"
    stripped = body.rstrip(".!?:")
    return f"{stripped} [{n}]{body[len(stripped):]}"


def _closest_quote(claim: str, quotes: Sequence[Quote], cited: Sequence[int] = ()) -> int:
    """The number of the quote sharing most content words with ``claim`` (the cited one, then the first, on a
    tie): a small model often cites the quote next to the one that states its sentence."""
    words = content_tokens(claim)
    best = max(quotes, key=lambda q: (len(words & content_tokens(q.text)), q.citation.n in cited))
    return best.citation.n


class Explainer:
    """Writes and verifies the explanation (see the module doc)."""

    def __init__(self, llm: Callable[[], LLM], verifier: Verifier, max_sentences: int) -> None:
        self._llm = llm
        self.verifier = verifier
        self.max_sentences = max_sentences

    def run(self, question: str, quotes: Sequence[Quote], max_tokens: int, t0: float
            ) -> Generator[Stage | Delta, None, Explanation]:
        """Yields :class:`Stage` "checking" once the model has written, then each verified sentence (with its
        leading separator) as a :class:`Delta` as it passes; returns the :class:`Explanation`. ``t0``: the
        request's start (for the time to first token)."""
        llm = self._llm()
        out = Explanation()
        t = time.perf_counter()
        pieces: list[str] = []
        messages, shared = explain_messages(quotes, question)
        stream = llm.stream(messages, max_tokens=max_tokens, temperature=0.0, stop=STOP, shared=shared)
        try:
            for piece in stream:
                if out.ttft_s is None:
                    out.ttft_s = round(time.perf_counter() - t0, 3)
                pieces.append(piece)
                if _enough(pieces, self.max_sentences):
                    break
        finally:
            stream.close()
        out.usage = stream.usage  # this call's, whatever other calls the model served since
        out.generate_s = round(time.perf_counter() - t, 3)
        out.reply = "".join(pieces)
        if is_refusal(out.reply):
            out.refused = True
            return out
        valid = {q.citation.n for q in quotes}
        text, _ = keep_markers(out.reply, valid)
        evidence = [q.text for q in quotes]
        block = excerpts(quotes)
        kept: list[str] = []
        t = time.perf_counter()
        yield Stage("checking", round(t - t0, 3))
        for unit in split_units(text)[: self.max_sentences]:
            sentence = unit.text
            check = self.verifier.check(sentence, evidence, question, excerpts=block)
            out.checks.append(check)
            if not check.supported or check.reason == "short":
                continue
            cited = cited_numbers(sentence, valid)
            source = _closest_quote(sentence, quotes, cited)
            if len(cited) <= 1 and cited != [source]:  # none, or the quote next to the one that states it
                sentence = _cite(strip_markers(sentence), source)
            sentence = place_outside_code(sentence)
            kept.append(sentence)
            yield Delta((" " if len(kept) > 1 else "") + sentence)
        out.verify_s = round(time.perf_counter() - t, 3)
        out.text = " ".join(kept)
        return out


def _enough(pieces: list[str], max_sentences: int) -> bool:
    """Whether the reply so far holds more than ``max_sentences`` sentences (the rest would be dropped)."""
    if len(pieces) % 4:
        return False
    return len(split_units("".join(pieces))) > max_sentences
