"""Hand-written test doubles for the seams studybot owns (no mocking libraries)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rag.llm import Usage


class ScriptedLLM:
    """A fake :class:`rag.llm.LLM` that plays back queued replies.

    Each ``stream()``/``complete()`` call pops the next reply (``stream`` yields it in pieces of
    ``piece_size`` characters), records what it received in :attr:`calls` (``calls[i]["messages"]`` and the
    keyword arguments), and raises ``AssertionError`` when no reply is left - a test that triggers more LLM
    calls than it scripted fails loudly.

    A reply may also be an exception instance: it is raised instead of replying (to script backend errors).
    """

    name = "scripted"
    supports_suppress = True  # records ``suppress`` in calls[i]; a scripted reply is played back regardless

    def __init__(
        self, replies: list[str | BaseException] | None = None, *, n_ctx: int = 4096, piece_size: int = 4
    ) -> None:
        self.replies: list[str | BaseException] = list(replies or [])
        self.n_ctx = n_ctx
        self.piece_size = piece_size
        self.calls: list[dict[str, Any]] = []
        self.last_usage = Usage()

    def queue(self, *replies: str | BaseException) -> None:
        self.replies.extend(replies)

    @property
    def messages(self) -> list[list[dict[str, str]]]:
        """The messages of every call so far."""
        return [call["messages"] for call in self.calls]

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def _pop(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
        if not self.replies:
            raise AssertionError(
                f"ScriptedLLM got call #{len(self.calls)} but has no reply queued; last user message: "
                f"{next((m['content'] for m in reversed(messages) if m.get('role') == 'user'), '')[:200]!r}"
            )
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
        suppress: list[str] | None = None,
    ) -> Iterator[str]:
        start = time.perf_counter()
        extra = {"suppress": list(suppress)} if suppress else {}
        reply = self._pop(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema, **extra
        )
        return self._pieces(messages, reply, start)

    def _pieces(self, messages: list[dict[str, str]], reply: str, start: float) -> Iterator[str]:
        usage = Usage(prompt_tokens=sum(self.count_tokens(m.get("content", "")) for m in messages))
        try:
            for i in range(0, len(reply), self.piece_size):
                if usage.ttft_s is None:
                    usage.ttft_s = time.perf_counter() - start
                usage.completion_tokens += 1
                yield reply[i : i + self.piece_size]
            usage.finish_reason = "stop"
        finally:
            usage.total_s = time.perf_counter() - start
            self.last_usage = usage

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.1,
        stop: list[str] | None = None,
        json_schema: dict | None = None,
    ) -> str:
        return "".join(
            self.stream(
                messages, max_tokens=max_tokens, temperature=temperature, stop=stop, json_schema=json_schema
            )
        )
