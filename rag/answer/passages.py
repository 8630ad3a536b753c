"""The retrieved passages as the answer path reads them: duplicates and near-duplicates dropped, adjacent chunks
of one document merged (consecutive ``ordinal``, same ``source``), and anything in the text that looks like
our prompt delimiters or chat-template tokens neutralised (:func:`candidate_passages`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rag.text import norm
from rag.types import Chunk, Passage

# Two passages sharing this share of their words (Jaccard) are one passage shown twice (the same paragraph in two
# handbooks, a chunk and its overlap): a design choice of the first answer path, not tuned on a labelled set.
NEAR_DUPLICATE_JACCARD = 0.8

# Things in untrusted passage text that could pose as our structure: passage/question tags, chat-template
# special tokens (llama-cpp-python tokenizes the prompt with special=True, so a literal "<|im_start|>" in a
# document would become a real turn marker), and role headers at the start of a line.
_TAGS = re.compile(r"</?\s*(?:passages?|excerpts?|question|system|user|assistant|instructions?)\b[^>]{0,200}>",
                   re.I)
_SPECIAL = re.compile(r"<\|[^|<>\n]{0,64}\|>|<\s*/?\s*s\s*>|\[/?INST\]", re.I)
_WORDS = re.compile(r"[a-z0-9]+")


def sanitize(text: str) -> str:
    """Neutralise delimiter look-alikes in untrusted text (keeps the words, drops the markup)."""
    text = _SPECIAL.sub(" ", text)
    text = _TAGS.sub(" ", text)
    for tag in ("passage", "excerpt"):
        text = re.sub(rf"<(/?)\s*{tag}", rf"‹\1{tag}", text, flags=re.I)
    return text


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


def candidate_passages(retrieved: Sequence[Passage]) -> list[Passage]:
    """Retrieved passages without duplicates, adjacent chunks merged, delimiter look-alikes removed (in the
    order of each group's best-ranked member)."""
    kept, _ = dedupe(retrieved)
    out = []
    for group in group_adjacent(kept):
        p = merge_group(group)
        c = p.chunk
        out.append(replace(p, chunk=replace(c, text=sanitize(c.text).strip(), title=sanitize(c.title),
                                            section=sanitize(c.section))))
    return out
