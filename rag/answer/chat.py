"""Multi-turn chat: bounded history, and follow-ups condensed into standalone questions before retrieval.

The first turn goes straight to the answer pipeline. Later turns are first rewritten by the LLM with the
condense prompt (``rag/prompts/condense*.txt``, a short ``max_tokens``), e.g. "and how is that different from
L2?" after a question about L1 regularization becomes "How is L1 regularization different from L2
regularization?"; retrieval and the answer then use the rewritten question.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag import prompts
from rag.answer.events import AnswerEvent, Condensed, Finished
from rag.answer.pipeline import CONDENSE_MAX_TOKENS, Answer, AnswerPipeline
from rag.citations import CITATION
from rag.text import clip

# 300 characters of each earlier answer go into the condense prompt (its topic, not its text): a design choice of
# the first chat (not tuned); with history_turns 4 the history stays under ~400 tokens.
HISTORY_ANSWER_CHARS = 300
_MARKER = re.compile(r"\s*" + CITATION.pattern, re.I)
_QUOTED = re.compile(r"(?m)^>[ \t]?")
_PREFIX = re.compile(r"^\s*(standalone question|rewritten question|question)\s*:\s*", re.I)


@dataclass
class Turn:
    question: str  # what the user typed
    standalone: str  # what was retrieved and answered
    answer: str


def clean_condensed(text: str, fallback: str) -> str:
    """The first line of the model's rewrite, without a "Standalone question:" prefix or quotes."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return fallback
    line = _PREFIX.sub("", lines[0]).strip().strip('"“”\'`').strip()
    if len(line) < 3 or len(line) > max(400, 3 * len(fallback)):
        return fallback
    return line


class ChatSession:
    """One conversation. Keeps the last ``settings.answer.history_turns`` turns."""

    def __init__(self, pipeline: AnswerPipeline, history_turns: int | None = None) -> None:
        self.pipeline = pipeline
        turns = history_turns if history_turns is not None else pipeline.settings.answer.history_turns
        self.history: deque[Turn] = deque(maxlen=max(0, turns))
        self.last_condense_s: float | None = None

    def reset(self) -> None:
        self.history.clear()

    def history_text(self) -> str:
        lines = []
        for t in self.history:
            answer = clip(" ".join(_QUOTED.sub("", _MARKER.sub("", t.answer)).split()), HISTORY_ANSWER_CHARS)
            lines.append(f"User: {t.standalone}\nAssistant: {answer}")
        return "\n".join(lines)

    def condense(self, question: str) -> str:
        """The standalone form of ``question`` (unchanged on the first turn: no model call)."""
        question = self.pipeline.retriever.check_question(question)
        if not self.history:
            self.last_condense_s = None
            return question
        t = time.perf_counter()
        reply = self.pipeline.llm.complete(
            prompts.condense_messages(self.history_text(), question),
            max_tokens=CONDENSE_MAX_TOKENS,
            temperature=0.0,
            stop=["\n\n"],
        )
        self.last_condense_s = round(time.perf_counter() - t, 3)
        return clean_condensed(reply, question)

    def _remember(self, question: str, answer: Answer) -> None:
        self.history.append(Turn(question, answer.question, answer.answer))

    def ask(self, question: str, *, k: int | None = None, max_tokens: int | None = None) -> Answer:
        standalone = self.condense(question)
        answer = self.pipeline.ask(standalone, k=k, max_tokens=max_tokens)
        self._annotate(answer)
        self._remember(question, answer)
        return answer

    def ask_stream(self, question: str, *, k: int | None = None, max_tokens: int | None = None
                   ) -> Iterator[AnswerEvent]:
        """Like :meth:`AnswerPipeline.stream`, preceded by :class:`Condensed` for a rewritten follow-up."""
        standalone = self.condense(question)
        if standalone != question.strip():
            yield Condensed(standalone)
        for event in self.pipeline.stream(standalone, k=k, max_tokens=max_tokens):
            if isinstance(event, Finished):
                self._annotate(event.answer)
                self._remember(question, event.answer)
            yield event

    def _annotate(self, answer: Answer) -> None:
        if self.last_condense_s is not None:
            answer.timings["condense_s"] = self.last_condense_s

    def restore(self, turns: list[dict[str, Any]]) -> None:
        """Continue a saved conversation: its last turns become the history follow-ups are read against."""
        self.history.clear()
        for t in turns:
            self.history.append(Turn(str(t.get("question", "")), str(t.get("standalone") or t.get("question", "")),
                                     str(t.get("answer", ""))))

    def transcript(self) -> list[dict[str, Any]]:
        return [{"question": t.question, "standalone": t.standalone, "answer": t.answer} for t in self.history]
