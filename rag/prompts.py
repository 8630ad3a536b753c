"""Prompt templates (files under ``rag/prompts/``) and the one refusal sentence.

Templates use ``{name}`` placeholders. :func:`render` substitutes them in a single pass, so a value that
itself contains ``{question}`` or braces (passage text is untrusted) is inserted literally, never expanded.

The answer path's prompts are laid out for llama.cpp's KV-cache prefix reuse: a judge prompt puts the question
before the unit judged; one fixed system message and example turns start every prompt about the quotes
(answers?, explain, check: :func:`answer_messages`), and the quotes come first in their user message, so
only what differs is evaluated per call.
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


def examples(name: str = "examples") -> list[dict[str, str]]:
    """Fixed example turns (``<name>.txt``: ``=== user`` / ``=== assistant`` blocks) sent after the system
    message. They are part of the fixed prefix, so the KV cache makes them free after the first question."""
    messages: list[dict[str, str]] = []
    for block in re.split(r"^=== (user|assistant)\n", load(name), flags=re.M)[1:]:
        if block in ("user", "assistant"):
            messages.append({"role": block, "content": ""})
        else:
            messages[-1]["content"] = block.strip("\n")
    return messages


def answer_messages(user: str) -> list[dict[str, str]]:
    """The fixed system message and example turns (``system.txt``, ``examples.txt``; one prefix for the three
    tasks about the quotes, answers?, explain and check, so the KV cache keeps it for all of them), then
    ``user``."""
    return [{"role": "system", "content": load("system")}, *examples(), {"role": "user", "content": user}]


def judge_messages(question: str, excerpt: str) -> tuple[list[dict[str, str]], str]:
    """Does ``excerpt`` answer ``question``? One short user message (the model's default system message), and
    its start that every unit of the question shares (the question comes first: the KV cache holds it)."""
    content = render(load("judge"), question=question, excerpt=excerpt)
    shared = render(load("judge"), question=question, excerpt="\x00").split("\x00")[0]
    return [{"role": "user", "content": content}], shared


def excerpt_block(n: int, source: str, text: str) -> str:
    return render(load("excerpt"), n=n, source=source, text=text)


def about_quotes(excerpts: str, task: str, **values: str) -> tuple[list[dict[str, str]], str]:
    """A prompt about the quotes (``task``: "answers", "explain" or "check"): the fixed prefix, then the numbered
    excerpts, then the task. Returns the messages and the excerpts part, which the three tasks share (the KV
    cache holds it from the answers? check through the explanation and its checks)."""
    shared = render(load("quotes"), excerpts=excerpts) + "\n\n"  # (load() drops a file's trailing newlines)
    return answer_messages(shared + render(load(task), **values)), shared


def condense_messages(history: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": load("condense_system")},
        {"role": "user", "content": render(load("condense"), history=history, question=question)},
    ]
