"""Hybrid retrieval: dense (Chroma) + keyword (BM25) fused by reciprocal rank fusion.

``HybridRetriever.retrieve(question, k)`` returns :class:`~rag.types.Passage` objects with their fused
score; :func:`as_langchain` exposes the same as a LangChain ``BaseRetriever``.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from rag.backends.keyword import KeywordIndex, folder_for
from rag.backends.store import Index
from rag.errors import IndexStateError, QueryError
from rag.settings import RetrievalSettings
from rag.terms import Vocabulary
from rag.text import strip_controls, tokenize
from rag.types import Chunk, Passage

Mode = Literal["hybrid", "dense", "bm25"]

def rrf(rankings: Sequence[tuple[Sequence[str], float]], k: int) -> dict[str, float]:
    """Weighted reciprocal rank fusion of several rankings of ids."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return scores


class Retriever(Protocol):
    """What answers, quizzes and evals need of retrieval (the hybrid retriever, or a test's fake)."""

    def retrieve(self, question: str, k: int, mode: Mode = "hybrid") -> list[Passage]: ...

    def check_question(self, question: str) -> str:
        """The question without control characters or terminal escape sequences (rag.text.strip_controls),
        stripped; :class:`QueryError` when it is then empty or too long."""
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

    def __init__(self, index: Index, settings: RetrievalSettings | None = None) -> None:
        """``settings``: the retrieval settings to use (a bench's grid); default: the index's own
        (``index.settings.retrieval``)."""
        r = index.settings.retrieval if settings is None else settings
        self.window_weight = r.window_weight
        self._n_windows = 0
        self.index = index
        self.fetch_k = r.fetch_k
        self.rrf_k = r.rrf_k
        self.dense_weight = r.dense_weight
        self.bm25_weight = r.bm25_weight
        self.max_query_chars = r.max_question_chars
        self._lock = threading.Lock()
        self._version: str | None = None
        self._collection: Any = None
        self._chunks: dict[str, Chunk] | None = None
        self._keyword: KeywordIndex = KeywordIndex.empty()

    @classmethod
    def from_settings(cls, index: Index) -> HybridRetriever:
        """The retriever the index's settings describe (the same as ``HybridRetriever(index)``)."""
        return cls(index)

    # -- state -----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Open (or reopen after an ingest) the current collection and its persisted keyword index.

        No chunk text is loaded: the keyword index is memory-mapped from ``<index_dir>/keyword/``; only when
        it is missing (a library ingested before it existed, or a Chroma server shared with other machines)
        is it built once from the collection and saved."""
        manifest = self.index.manifest()
        if not manifest.collection:
            raise IndexStateError("The index is empty: run `studybot ingest` (or `make run`) first.")
        with self._lock:
            if not force and manifest.collection == self._version:
                return
            collection = self.index.open_collection(manifest.collection)
            keyword = load_or_build_keyword(self.index, collection)
            if not len(keyword):
                raise IndexStateError("The index has no chunks: run `studybot ingest --rebuild`.")
            self._keyword = keyword
            self._n_windows = max(0, Index.count(collection) - len(keyword))
            self._collection = collection
            self._chunks = None
            self._version = manifest.collection

    @property
    def version(self) -> str | None:
        return self._version

    @property
    def n_chunks(self) -> int:
        """How many chunks the current version holds (its keyword index's documents; no chunk text is read)."""
        if self._version is None:
            self.refresh()
        return len(self._keyword)

    @property
    def chunks(self) -> dict[str, Chunk]:
        """Every chunk of the current version, read from Chroma on first use (quizzes, stale-card marking);
        retrieval itself never needs them."""
        if self._version is None:
            self.refresh()
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = {c.id: c for c, _ in Index.iter_records(self._collection)}
        return chunks

    def vocabulary(self) -> Vocabulary:
        """Every word of the indexed handbooks (text, titles and section paths), for named-term checks."""
        if self._version is None:
            self.refresh()
        return self._keyword.vocabulary

    def check_question(self, question: str) -> str:
        # Every question passes here (ask, chat, the web UI, /ask, retrieve, quiz topics): a question pasted
        # with its terminal colours or typed with stray control characters is read without them.
        q = strip_controls(question or "").strip()
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
        """Chunks by (1 - window_weight) x chunk similarity + window_weight x best window similarity (both from
        Chroma queries).

        A candidate seen in only one of the two result lists gets the lowest similarity of the other list
        for the missing part (a lower bound), so the fusion needs no extra lookups.
        """
        vec = self.index.embedder.embed_query(question)
        n = min(n, len(self._keyword))
        # One query over chunks and windows together, split by kind: a query filtered by kind took 74 ms at
        # 20,000 chunks, an unfiltered one 2.6 ms (bench/scale.py). 4n records hold about n chunks and 3n
        # windows (a chunk has ~3 windows).
        records = min(4 * n, self._n_windows + n) if self._n_windows else n
        chunk_sims, win_sims = Index.nearest_records(self._collection, vec, records)
        if self.window_weight <= 0 or not win_sims:
            return sorted(chunk_sims, key=lambda i: -chunk_sims[i])[:n], chunk_sims
        floor_c = min(chunk_sims.values(), default=0.0)
        floor_w = min(win_sims.values(), default=0.0)
        w = self.window_weight
        sims = {
            i: (1 - w) * chunk_sims.get(i, floor_c) + w * win_sims.get(i, floor_w)
            for i in set(chunk_sims) | set(win_sims)
        }
        return sorted(sims, key=lambda i: -sims[i])[:n], sims

    def idf(self, token: str) -> float:
        """The keyword index's inverse document frequency of a (tokenized) term; 0 for an unknown one."""
        if self._version is None:
            self.refresh()
        return self._keyword.idf(token)

    def bm25_ranking(self, question: str, n: int) -> list[str]:
        return self._keyword.top(tokenize(question), n)

    def retrieve(self, question: str, k: int, mode: Mode = "hybrid") -> list[Passage]:
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
        found = Index.get_chunks(self._collection, [i for i, _ in top])
        return [
            Passage(
                chunk=found[i],
                score=s,
                dense_rank=dense_rank.get(i),
                bm25_rank=bm25_rank.get(i),
                extra={"similarity": round(sims[i], 4)} if i in sims else {},
            )
            for i, s in top
            if i in found
        ]


def load_or_build_keyword(index: Index, collection: Any) -> KeywordIndex:
    """The keyword index saved for ``collection``, or one built from its chunks and saved (once)."""
    folder = folder_for(index.settings.storage.index_dir, collection.name)
    return KeywordIndex.load(folder) or write_keyword(index, collection)


def write_keyword(index: Index, collection: Any) -> KeywordIndex:
    """Build the keyword index of ``collection`` from its chunks and save it in its folder (replacing a
    broken one: a disk error, a hand edit); an empty collection gets none (the retriever says "run ingest")."""
    keyword = build_keyword(collection)
    if len(keyword):
        folder = folder_for(index.settings.storage.index_dir, collection.name)
        shutil.rmtree(folder, ignore_errors=True)
        keyword.save(folder)
    return keyword


def build_keyword(collection: Any) -> KeywordIndex:
    """A keyword index of every chunk in ``collection`` (found by its embed text: title, section path, text)."""
    ids: list[str] = []
    texts: list[str] = []
    vocab: list[str] = []
    for c, _ in Index.iter_records(collection):
        ids.append(c.id)
        texts.append(c.embed_text())
        vocab.append(f"{c.title}\n{c.section}\n{c.text}")
    return KeywordIndex.build(ids, texts, vocab)


def as_langchain(retriever: HybridRetriever, k: int) -> Any:
    """The hybrid retriever as a LangChain ``BaseRetriever`` giving ``k`` documents (the answer path's number
    is ``settings.retrieval.top_k``) that carry the passage metadata."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict

    class StudybotRetriever(BaseRetriever):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        inner: Any
        k: int

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [
                Document(page_content=p.chunk.text, metadata={**p.to_json(), "text": None})
                for p in self.inner.retrieve(query, self.k)
            ]

    return StudybotRetriever(inner=retriever, k=k)
