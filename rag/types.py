"""Plain data nouns shared by ingest, retrieval, answers, quizzes, evals and the UI."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# How long work reports how far it got: (what it is doing, done, total). One signature for ingest, quizzes,
# evals and the UI's progress bars.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document as stored in the index."""

    id: str
    text: str
    source: str  # file name relative to the corpus root
    title: str
    section: str  # section path, e.g. "Section 5 — Feature Engineering > Handling Imbalanced Data"
    page: int | None
    start: int  # character offsets in the loaded document text (page text for PDFs)
    end: int
    content_hash: str
    ordinal: int  # position of the chunk in its document

    def embed_text(self) -> str:
        """What is embedded and keyword-indexed: title and section path, then the body."""
        head = f"{self.title} — {self.section}" if self.section else self.title
        return f"{head}\n{self.text}"

    def metadata(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "page": self.page if self.page is not None else -1,
            "start": self.start,
            "end": self.end,
            "content_hash": self.content_hash,
            "ordinal": self.ordinal,
        }

    @classmethod
    def from_record(cls, chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
        page = meta.get("page", -1)
        return cls(
            id=chunk_id,
            text=text,
            source=str(meta.get("source", "")),
            title=str(meta.get("title", "")),
            section=str(meta.get("section", "")),
            page=None if page is None or int(page) < 0 else int(page),
            start=int(meta.get("start", 0)),
            end=int(meta.get("end", 0)),
            content_hash=str(meta.get("content_hash", "")),
            ordinal=int(meta.get("ordinal", 0)),
        )


@dataclass
class Passage:
    """A retrieved chunk with its scores (what retrieval returns and what answers cite)."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.chunk.id

    def to_json(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "id": c.id,
            "text": c.text,
            "source": c.source,
            "title": c.title,
            "section": c.section,
            "page": c.page,
            "score": round(self.score, 6),
        }


@dataclass(frozen=True)
class Citation:
    """A passage an answer, a quiz item or a study guide cites: what the UI shows and the exports write.
    ``n`` is the number of its ``[n]`` marker (1 for a quiz item's single passage)."""

    n: int
    chunk_id: str
    source: str
    title: str
    section: str
    page: int | None
    text: str

    @classmethod
    def of(cls, n: int, chunk: Chunk) -> Citation:
        return cls(n=n, chunk_id=chunk.id, source=chunk.source, title=chunk.title, section=chunk.section,
                   page=chunk.page, text=chunk.text)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Citation:
        page = data.get("page")
        return cls(n=int(data.get("n") or 1), chunk_id=str(data.get("chunk_id") or ""),
                   source=str(data.get("source") or ""), title=str(data.get("title") or ""),
                   section=str(data.get("section") or ""), page=int(page) if page else None,
                   text=str(data.get("text") or ""))
