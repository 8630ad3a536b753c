"""Prompt templates (files under ``rag/prompts/``) and the one refusal sentence.

Templates use ``{name}`` placeholders. :func:`render` substitutes them in a single pass, so a value that
itself contains ``{question}`` or braces (passage text is untrusted) is inserted literally, never expanded.

The answer prompt is laid out for llama.cpp's KV-cache prefix reuse: the system message is fixed (it only
depends on :data:`REFUSAL`), so every answer request starts with the same tokens and only the user message
(passages + question) is evaluated per question.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

# The exact sentence the model must reply with when the passages do not answer the question (and what a
# refused Answer carries). Keep it in this one place: the prompts and the refusal detector use it.
REFUSAL = "I can't find that in the handbooks."

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def load(name: str) -> str:
    """The template ``rag/prompts/<name>.txt`` (trailing newline removed)."""
    path = PROMPTS_DIR / f"{name}.txt"
    return path.read_text(encoding="utf-8").rstrip("\n")


def render(template: str, **values: object) -> str:
    """Fill ``{name}`` placeholders in one pass (unknown placeholders are left as they are)."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        return str(values[key]) if key in values else m.group(0)

    return _PLACEHOLDER.sub(sub, template)


def system_prompt() -> str:
    """The fixed system message of every answer request (identical across questions)."""
    return render(load("system"), refusal=REFUSAL)


def examples() -> list[dict[str, str]]:
    """Fixed example turns (``examples.txt``: ``=== user`` / ``=== assistant`` blocks) sent after the system
    message. They are part of the fixed prefix, so the KV cache makes them free after the first question."""
    messages: list[dict[str, str]] = []
    for block in re.split(r"^=== (user|assistant)\n", load("examples"), flags=re.M)[1:]:
        if block in ("user", "assistant"):
            messages.append({"role": block, "content": ""})
        else:
            messages[-1]["content"] = render(block.strip("\n"), refusal=REFUSAL)
    return messages


def user_prompt(passages_block: str, question: str) -> str:
    return render(load("user"), passages=passages_block, question=question, refusal=REFUSAL)


def passage_block(n: int, title: str, section: str, text: str) -> str:
    return render(load("passage"), n=n, title=title, section=section or "(start)", text=text)


def condense_messages(history: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": load("condense_system")},
        {"role": "user", "content": render(load("condense"), history=history, question=question)},
    ]


def verify_prompt(text: str, claim: str) -> str:
    """The yes/no question :mod:`rag.verify` asks about one answer sentence and the handbook text it cites."""
    return render(load("verify"), text=text, claim=claim)
