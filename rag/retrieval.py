"""Hybrid retrieval: dense (Chroma) + keyword (BM25) fused by reciprocal rank fusion.

``HybridRetriever.retrieve(question, k)`` returns :class:`~rag.types.Passage` objects with their fused
score; :func:`as_langchain` exposes the same as a LangChain ``BaseRetriever``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from rag.errors import IndexStateError, QueryError
from rag.store import Index
from rag.terms import Vocabulary
from rag.types import Chunk, Passage

Mode = Literal["hybrid", "dense", "bm25"]

_STOP = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "where", "which", "while", "who", "why", "will", "with", "would", "you", "your", "about", "should", "could", "vs", "versus", "between", "difference"]
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _stem(token: str) -> str:
    """A light suffix stripper so 'regularization'/'regularize', 'models'/'model' meet in BM25."""
    for suffix in ("ization", "isation", "ations", "ation", "ings", "ing", "ies", "es", "s"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            return token[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return token


def tokenize(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP and len(t) > 1]


def rrf(rankings: Sequence[tuple[Sequence[str], float]], k: int) -> dict[str, float]:
    """Weighted reciprocal rank fusion of several rankings of ids."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return scores


class Retriever(Protocol):
    """What answers, quizzes and evals need of retrieval (the hybrid retriever, or a test's fake)."""

    def retrieve(self, question: str, k: int = 5, mode: Mode = "hybrid") -> list[Passage]: ...

    def check_question(self, question: str) -> str:
        """The question stripped; :class:`QueryError` when it is empty or too long."""
        ...

    def vocabulary(self) -> Vocabulary:
        """Every word of the indexed documents (for the named-term check)."""
        ...

    def idf(self, token: str) -> float:
        """How rare a tokenized term is in the index (for evidence selection)."""
        ...

    def refresh(self, force: bool = False) -> None:
        """Reload after the index changed."""
        ...

    @property
    def chunks(self) -> dict[str, Chunk]:
        """Every indexed chunk by id."""
        ...


class HybridRetriever:
    """Dense + BM25 over the current index version; rebuilt lazily when the version changes."""

    def __init__(
        self,
        index: Index,
        *,
        fetch_k: int = 30,
        rrf_k: int = 10,
        dense_weight: float = 1.0,
        bm25_weight: float = 1.0,
        max_query_chars: int = 2000,
        window_weight: float = 0.5,
    ) -> None:
        self.window_weight = window_weight
        self._n_windows = 0
        self.index = index
        self.fetch_k = fetch_k
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self.max_query_chars = max_query_chars
        self._lock = threading.Lock()
        self._version: str | None = None
        self._collection: Any = None
        self._chunks: dict[str, Chunk] = {}
        self._ids: list[str] = []
        self._bm25: Any = None
        self._vocabulary: tuple[str | None, Vocabulary] | None = None

    @classmethod
    def from_settings(cls, index: Index) -> HybridRetriever:
        r = index.settings.retrieval
        return cls(index, fetch_k=r.fetch_k, rrf_k=r.rrf_k, dense_weight=r.dense_weight, bm25_weight=r.bm25_weight,
                   max_query_chars=r.max_question_chars, window_weight=r.window_weight)

    # -- state -----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Load (or reload after an ingest) the current collection and its BM25 index."""
        manifest = self.index.manifest()
        if not manifest.collection:
            raise IndexStateError("The index is empty: run `studybot ingest` (or `make run`) first.")
        with self._lock:
            if not force and manifest.collection == self._version:
                return
            collection = self.index.open_collection(manifest.collection)
            chunks = [c for c, _ in Index.iter_records(collection)]
            if not chunks:
                raise IndexStateError("The index has no chunks: run `studybot ingest --rebuild`.")
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([tokenize(c.embed_text()) for c in chunks])
            self._chunks = {c.id: c for c in chunks}
            self._ids = [c.id for c in chunks]
            self._n_windows = max(0, Index.count(collection) - len(chunks))
            self._collection = collection
            self._version = manifest.collection

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def chunks(self) -> dict[str, Chunk]:
        if self._version is None:
            self.refresh()
        return self._chunks

    def vocabulary(self) -> Vocabulary:
        """Every word of the indexed handbooks (text, titles and section paths), for named-term checks."""
        chunks = self.chunks
        cached = self._vocabulary
        if cached is None or cached[0] != self._version:
            texts = [f"{c.title}\n{c.section}\n{c.text}" for c in chunks.values()]
            cached = self._vocabulary = (self._version, Vocabulary(texts))
        return cached[1]

    def check_question(self, question: str) -> str:
        q = (question or "").strip()
        if not q:
            raise QueryError("The question is empty: type a question about the handbooks.")
        if len(q) > self.max_query_chars:
            raise QueryError(
                f"The question is {len(q):,} characters long; keep it under {self.max_query_chars:,} "
                "(ask about one topic at a time)."
            )
        return q

    # -- ranking ---------------------------------------------------------------------------------
    def dense_ranking(self, question: str, n: int) -> tuple[list[str], dict[str, float]]:
        """Chunks by 0.5 x chunk similarity + 0.5 x best window similarity (both from Chroma queries).

        A candidate seen in only one of the two result lists gets the lowest similarity of the other list
        for the missing part (a lower bound), so the fusion needs no extra lookups.
        """
        vec = self.index.embedder.embed_query(question)
        n = min(n, len(self._ids))
        chunk_sims = Index.nearest_chunks(self._collection, vec, n)
        win_sims: dict[str, float] = {}
        if self.window_weight > 0:
            win_sims = Index.nearest_windows(self._collection, vec, min(3 * n, self._n_windows or 1))
        if not win_sims:
            return sorted(chunk_sims, key=lambda i: -chunk_sims[i]), chunk_sims
        floor_c = min(chunk_sims.values(), default=0.0)
        floor_w = min(win_sims.values(), default=0.0)
        w = self.window_weight
        sims = {
            i: (1 - w) * chunk_sims.get(i, floor_c) + w * win_sims.get(i, floor_w)
            for i in set(chunk_sims) | set(win_sims)
            if i in self._chunks
        }
        return sorted(sims, key=lambda i: -sims[i])[:n], sims

    def idf(self, token: str) -> float:
        """The keyword index's inverse document frequency of a (tokenized) term; 0 for an unknown one."""
        if self._version is None:
            self.refresh()
        return float(self._bm25.idf.get(token, 0.0)) if self._bm25 is not None else 1.0

    def bm25_ranking(self, question: str, n: int) -> list[str]:
        tokens = tokenize(question)
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        import numpy as np

        order = np.argsort(-scores)[:n]
        return [self._ids[i] for i in order if scores[i] > 0]

    def retrieve(self, question: str, k: int = 5, mode: Mode = "hybrid") -> list[Passage]:
        question = self.check_question(question)
        if self._version is None:
            self.refresh()
        n = max(self.fetch_k, k)
        dense_ids: list[str] = []
        sims: dict[str, float] = {}
        bm25_ids: list[str] = []
        if mode in ("hybrid", "dense"):
            dense_ids, sims = self.dense_ranking(question, n)
        if mode in ("hybrid", "bm25"):
            bm25_ids = self.bm25_ranking(question, n)
        if mode == "dense":
            fused = {i: sims[i] for i in dense_ids}
        elif mode == "bm25":
            fused = {i: 1.0 / (self.rrf_k + r) for r, i in enumerate(bm25_ids, start=1)}
        else:
            fused = rrf([(dense_ids, self.dense_weight), (bm25_ids, self.bm25_weight)], self.rrf_k)
        dense_rank = {i: r for r, i in enumerate(dense_ids, start=1)}
        bm25_rank = {i: r for r, i in enumerate(bm25_ids, start=1)}
        top = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return [
            Passage(
                chunk=self._chunks[i],
                score=s,
                dense_rank=dense_rank.get(i),
                bm25_rank=bm25_rank.get(i),
                extra={"similarity": round(sims[i], 4)} if i in sims else {},
            )
            for i, s in top
            if i in self._chunks
        ]


def as_langchain(retriever: HybridRetriever, k: int = 5) -> Any:
    """The hybrid retriever as a LangChain ``BaseRetriever`` (documents carry the passage metadata)."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict

    class StudybotRetriever(BaseRetriever):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        inner: Any
        k: int = 5

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [
                Document(page_content=p.chunk.text, metadata={**p.to_json(), "text": None})
                for p in self.inner.retrieve(query, self.k)
            ]

    return StudybotRetriever(inner=retriever, k=k)
