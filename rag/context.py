"""Context packing: retrieved passages -> the numbered passages the model sees, under a token budget.

Steps, in score order: drop duplicates and near-duplicates, merge adjacent chunks of the same document
(consecutive ``ordinal``, same ``source``) into one passage, neutralise anything in the text that looks like
our prompt delimiters or chat-template tokens, then keep passages while they fit the budget and cut the
last one at a sentence boundary if needed.

The packed :class:`~rag.types.Passage` objects are *exactly* what the model is shown and what citations
point at: passage ``[n]`` is ``packed.passages[n - 1]`` and its ``chunk.text`` is the text in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag.prompts import passage_block
from rag.text import norm
from rag.types import Chunk, Passage

CountTokens = Callable[[str], int]

# Below this many tokens of room, a passage is not worth truncating into the prompt.
MIN_TAIL_TOKENS = 48
NEAR_DUPLICATE_JACCARD = 0.8

# Things in untrusted passage text that could pose as our structure: passage/question tags, chat-template
# special tokens (llama-cpp-python tokenizes the prompt with special=True, so a literal "<|im_start|>" in a
# document would become a real turn marker), and role headers at the start of a line.
_TAGS = re.compile(r"</?\s*(?:passages?|question|system|user|assistant|instructions?)\b[^>]{0,200}>", re.I)
_SPECIAL = re.compile(r"<\|[^|<>\n]{0,64}\|>|<\s*/?\s*s\s*>|\[/?INST\]", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
_WORDS = re.compile(r"[a-z0-9]+")


def sanitize(text: str) -> str:
    """Neutralise delimiter look-alikes in untrusted text (keeps the words, drops the markup)."""
    text = _SPECIAL.sub(" ", text)
    text = _TAGS.sub(" ", text)
    return text.replace("<passage", "‹passage").replace("</passage", "‹/passage")


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def is_near_duplicate(a: str, b: str, threshold: float = NEAR_DUPLICATE_JACCARD) -> bool:
    na, nb = norm(a), norm(b)
    if not na or not nb:
        return na == nb
    if na == nb or (len(na) >= 80 and na in nb) or (len(nb) >= 80 and nb in na):
        return True
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / max(1, len(wa | wb)) >= threshold


def dedupe(passages: Sequence[Passage]) -> tuple[list[Passage], int]:
    """Drop later passages that repeat (or nearly repeat) an earlier one; returns (kept, dropped count)."""
    kept: list[Passage] = []
    for p in passages:
        if any(
            p.chunk.id == q.chunk.id
            or (p.chunk.content_hash and p.chunk.content_hash == q.chunk.content_hash)
            or is_near_duplicate(p.chunk.text, q.chunk.text)
            for q in kept
        ):
            continue
        kept.append(p)
    return kept, len(passages) - len(kept)


def _adjacent(group: list[Passage], p: Passage) -> bool:
    if group[0].chunk.source != p.chunk.source:
        return False
    ordinals = [q.chunk.ordinal for q in group]
    return p.chunk.ordinal in (min(ordinals) - 1, max(ordinals) + 1)


def group_adjacent(passages: Sequence[Passage]) -> list[list[Passage]]:
    """Groups of passages to merge, in order of each group's best-ranked member."""
    groups: list[list[Passage]] = []
    for p in passages:
        home = next((g for g in groups if _adjacent(g, p)), None)
        if home is None:
            groups.append([p])
            continue
        home.append(p)
        # p may also bridge ``home`` to a later group (ordinals 3, 5 then 4): fold those in.
        for other in [g for g in groups if g is not home]:
            if any(_adjacent(home, q) for q in other):
                home.extend(other)
                groups.remove(other)
    return groups


def merge_group(group: list[Passage]) -> Passage:
    """One passage from adjacent chunks (document order); it keeps the best score and similarity."""
    if len(group) == 1:
        p = group[0]
        return replace(p, extra={**p.extra, "chunk_ids": [p.chunk.id]})
    ordered = sorted(group, key=lambda q: q.chunk.ordinal)
    first = ordered[0].chunk
    parts = [first.text]
    for prev, q in zip(ordered, ordered[1:], strict=False):
        head = f"{q.chunk.section}\n" if q.chunk.section and q.chunk.section != prev.chunk.section else ""
        parts.append(head + q.chunk.text)
    chunk = Chunk(
        id=first.id,
        text="\n\n".join(parts),
        source=first.source,
        title=first.title,
        section=first.section,
        page=first.page,
        start=first.start,
        end=ordered[-1].chunk.end,
        content_hash="",
        ordinal=first.ordinal,
    )
    sims = [q.extra["similarity"] for q in group if "similarity" in q.extra]
    extra = {"chunk_ids": [q.chunk.id for q in ordered], "merged": len(ordered)}
    if sims:
        extra["similarity"] = max(sims)
    dense = [q.dense_rank for q in group if q.dense_rank is not None]
    bm25 = [q.bm25_rank for q in group if q.bm25_rank is not None]
    return Passage(
        chunk=chunk,
        score=max(q.score for q in group),
        dense_rank=min(dense) if dense else None,
        bm25_rank=min(bm25) if bm25 else None,
        extra=extra,
    )


def _sanitized(p: Passage) -> Passage:
    c = p.chunk
    chunk = replace(c, text=sanitize(c.text).strip(), title=sanitize(c.title), section=sanitize(c.section))
    return replace(p, chunk=chunk)


def block(n: int, p: Passage) -> str:
    c = p.chunk
    return passage_block(n, c.title, c.section, c.text)


def _truncate(n: int, p: Passage, room: int, count: CountTokens) -> Passage | None:
    """The longest sentence-boundary prefix of ``p`` whose block fits ``room`` tokens (None if none does)."""
    text = p.chunk.text
    cuts = [m.start() for m in _SENTENCE_END.finditer(text)]
    candidates = [text[:i].rstrip() for i in cuts if text[:i].strip()]
    if not candidates:  # one long sentence: cut at a word boundary instead
        words = text.split(" ")
        candidates = [" ".join(words[:i]) + " …" for i in range(1, len(words))]

    def fits(t: str) -> bool:
        return count(block(n, replace(p, chunk=replace(p.chunk, text=t)))) <= room

    lo, hi, best = 0, len(candidates) - 1, None
    while lo <= hi:  # candidates grow monotonically, so binary search the last one that fits
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            best, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    if best is None:
        return None
    return replace(p, chunk=replace(p.chunk, text=best), extra={**p.extra, "truncated": True})


@dataclass
class Packed:
    """The passages given to the model (``passages[n-1]`` is ``[n]``) and how they were chosen."""

    passages: list[Passage]
    text: str  # the rendered passages block that goes into the prompt
    tokens: int
    budget: int
    duplicates: int = 0
    merged: int = 0
    over_budget: int = 0
    truncated: bool = False


def pack(passages: Sequence[Passage], count_tokens: CountTokens, budget: int,
         min_tail_tokens: int = MIN_TAIL_TOKENS) -> Packed:
    """Pack retrieved ``passages`` (score order) into at most ``budget`` tokens of numbered blocks."""
    kept, duplicates = dedupe(passages)
    groups = group_adjacent(kept)
    merged = sum(len(g) - 1 for g in groups)
    candidates = [_sanitized(merge_group(g)) for g in groups]
    out: list[Passage] = []
    blocks: list[str] = []
    used = 0
    truncated = False
    over = 0
    for i, p in enumerate(candidates):
        n = len(out) + 1
        sep = 1 if blocks else 0  # the newline joining blocks
        cost = count_tokens(block(n, p)) + sep
        if used + cost <= budget:
            out.append(p)
            blocks.append(block(n, p))
            used += cost
            continue
        room = budget - used - sep
        cut = _truncate(n, p, room, count_tokens) if room >= min_tail_tokens or not out else None
        if cut is not None:
            out.append(cut)
            blocks.append(block(n, cut))
            used += count_tokens(blocks[-1]) + sep
            truncated = True
            over = len(candidates) - i - 1
        else:
            over = len(candidates) - i
        break
    return Packed(
        passages=out,
        text="\n".join(blocks),
        tokens=used,
        budget=budget,
        duplicates=duplicates,
        merged=merged,
        over_budget=over,
        truncated=truncated,
    )
