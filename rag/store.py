"""The chunk index in Chroma, with an atomic "current version" pointer.

Each ingest that changes anything writes a *new* collection (``<name>__v<N>``), copying unchanged chunks and
their embeddings from the current one, and only then moves the pointer, a single record in the
``<name>__meta`` collection. A killed ingest therefore leaves the previous collection, and the pointer to it,
complete and queryable; the orphan it leaves behind is removed by the next ingest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.embeddings import TextEmbedder
from rag.errors import IndexStateError
from rag.settings import Settings, apply_offline_env
from rag.types import Chunk

_BATCH = 512
CURRENT_FILE = "CURRENT"
DEFAULT_DIR = "chroma"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


@dataclass(frozen=True)
class FreshIndex:
    old: Path  # the folder that was current
    new: Path  # the folder being built
    old_healthy: bool  # whether the old folder's manifest could be read


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def make_embedding_function(embedder: TextEmbedder | None) -> Any:
    """A Chroma embedding function over our embedder, so Chroma's own downloader is never used (studybot
    always passes the vectors itself; a collection opened from its stored config cannot embed)."""
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

    class StudybotEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, inner: TextEmbedder | None) -> None:
            self.inner = inner

        def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - Chroma's signature
            import numpy as np

            if self.inner is None:
                raise IndexStateError("This collection was opened without studybot's embedder.")
            return [np.asarray(v, dtype=np.float32) for v in self.inner.embed(list(input))]

        @staticmethod
        def name() -> str:
            return "studybot-sentence-transformers"

        def get_config(self) -> dict[str, Any]:
            return {"embedder": self.inner.name if self.inner is not None else ""}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> StudybotEmbeddingFunction:
            return StudybotEmbeddingFunction(None)

        def default_space(self) -> Any:
            return "cosine"

        def supported_spaces(self) -> Any:
            return ["cosine"]

        def is_legacy(self) -> bool:
            return False

    return StudybotEmbeddingFunction(embedder)


@dataclass
class FileRecord:
    hash: str
    title: str
    chunks: int
    ingested_at: float
    kind: str = ""
    duplicate_of: str = ""  # another source with the same bytes: indexed once, under that source


@dataclass
class Manifest:
    collection: str | None = None
    version: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "collection": self.collection,
                "version": self.version,
                "params": self.params,
                "files": {k: vars(v) for k, v in self.files.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(
            collection=data.get("collection"),
            version=int(data.get("version", 0)),
            params=dict(data.get("params", {})),
            files={k: FileRecord(**v) for k, v in data.get("files", {}).items()},
        )


class Index:
    """Chroma client + the current collection of chunks."""

    def __init__(self, settings: Settings, embedder: TextEmbedder) -> None:
        apply_offline_env()
        self.settings = settings
        self.embedder = embedder
        self.name = settings.chroma.collection
        self._client: Any = None
        self._ef: Any = None
        self._dir_override: str | None = None

    # -- client ----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import chromadb

            s = self.settings
            try:
                if s.chroma.host:
                    self._client = chromadb.HttpClient(host=s.chroma.host, port=s.chroma.port, settings=_chroma_settings())
                    self._client.heartbeat()
                else:
                    path = self.chroma_dir
                    path.mkdir(parents=True, exist_ok=True)
                    self._client = chromadb.PersistentClient(path=str(path), settings=_chroma_settings())
            except Exception as exc:  # noqa: BLE001 - chroma raises many types
                self._client = None
                where = f"the Chroma server at {s.chroma.host}:{s.chroma.port}" if s.chroma.host else f"{self.where}"
                raise IndexStateError(
                    f"Cannot open the index at {where} ({type(exc).__name__}: {_short(exc)}). "
                    + ("Start it with `chroma run --path DIR --host ... --port ...` or unset STUDYBOT_CHROMA_HOST."
                       if s.chroma.host else self.rebuild_advice())
                ) from exc
        return self._client

    def rebuild_advice(self) -> str:
        """The fix for a broken index, valid from any working directory (names the configured library)."""
        return (f"Run `studybot ingest --rebuild` to rebuild it from {self.settings.storage.corpus_dir} and your uploads "
                "(the broken index is kept aside).")

    # -- index folders (local mode) --------------------------------------------------------------
    # ``<index_dir>/CURRENT`` names the Chroma folder in use (default ``chroma``). A rebuild writes a fresh
    # folder and switches CURRENT with one atomic rename, so it recovers from any corruption of the old folder
    # (which is kept aside as ``broken-<time>`` for inspection) and a killed rebuild changes nothing.
    @property
    def chroma_dir(self) -> Path:
        return self.settings.storage.index_dir / (self._dir_override or self._current_dir_name())

    def _current_dir_name(self) -> str:
        try:
            name = (self.settings.storage.index_dir / CURRENT_FILE).read_text().strip()
        except OSError:
            return DEFAULT_DIR
        return name if name and "/" not in name and not name.startswith(".") else DEFAULT_DIR

    def begin_fresh(self) -> FreshIndex | None:
        """Point this index at a new, empty folder (local mode; None for a Chroma server): the old folder stays
        current on disk until :meth:`commit_fresh`."""
        if self.settings.chroma.host:
            return None
        old = self.settings.storage.index_dir / self._current_dir_name()
        try:
            self.manifest()
            healthy = True
        except IndexStateError:
            healthy = False
        name = f"chroma-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self._client = None
        self._dir_override = name
        return FreshIndex(old=old, new=self.settings.storage.index_dir / name, old_healthy=healthy)

    def commit_fresh(self, fresh: FreshIndex) -> str | None:
        """Make the fresh folder current (atomic); remove the old folder, or keep it aside when it was broken.
        Returns a note for the user when something was kept aside."""
        index_dir = self.settings.storage.index_dir
        tmp = index_dir / f".{CURRENT_FILE}.{os.getpid()}"
        tmp.write_text(fresh.new.name + "\n")
        os.replace(tmp, index_dir / CURRENT_FILE)
        self._dir_override = None
        for stale in index_dir.glob("chroma-*"):  # folders of rebuilds that were killed half-way
            if stale.is_dir() and stale != fresh.new and stale != fresh.old:
                shutil.rmtree(stale, ignore_errors=True)
        if not fresh.old.exists():
            return None
        if fresh.old_healthy:
            shutil.rmtree(fresh.old, ignore_errors=True)
            return None
        aside = index_dir / f"broken-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(fresh.old, aside)
        return f"the old index was unreadable; it is kept aside at {aside}"

    def abort_fresh(self, fresh: FreshIndex) -> None:
        self._client = None
        self._dir_override = None
        shutil.rmtree(fresh.new, ignore_errors=True)

    @property
    def embedding_function(self) -> Any:
        if self._ef is None:
            self._ef = make_embedding_function(self.embedder)
        return self._ef

    @property
    def where(self) -> str:
        s = self.settings
        return f"chroma://{s.chroma.host}:{s.chroma.port}" if s.chroma.host else str(self.chroma_dir)

    # -- manifest (the pointer) ------------------------------------------------------------------
    def _meta(self) -> Any:
        return self.client.get_or_create_collection(f"{self.name}__meta", metadata={"hnsw:space": "cosine"})

    def manifest(self) -> Manifest:
        try:
            got = self._meta().get(ids=["manifest"], include=["documents"])
        except IndexStateError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise IndexStateError(
                f"The index at {self.where} is unreadable ({type(exc).__name__}: {_short(exc)}). "
                + self.rebuild_advice()
            ) from exc
        docs = got.get("documents") or []
        if not docs or not docs[0]:
            return Manifest()
        try:
            return Manifest.from_json(docs[0])
        except (ValueError, TypeError, KeyError) as exc:
            raise IndexStateError(f"The index manifest at {self.where} is corrupt. " + self.rebuild_advice()) from exc

    def write_manifest(self, manifest: Manifest) -> None:
        self._meta().upsert(ids=["manifest"], documents=[manifest.to_json()], embeddings=[[1.0]])

    # -- collections -----------------------------------------------------------------------------
    def new_collection(self, version: int) -> Any:
        name = f"{self.name}__v{version}-{uuid.uuid4().hex[:8]}"
        return self.client.create_collection(
            name,
            embedding_function=self.embedding_function,
            metadata={"hnsw:space": "cosine", "created": time.time()},
        )

    def open_collection(self, name: str) -> Any:
        try:
            return self.client.get_collection(name, embedding_function=self.embedding_function)
        except Exception as exc:  # noqa: BLE001
            raise IndexStateError(
                f"The index points at a collection that is missing or broken ({name}). " + self.rebuild_advice()
            ) from exc

    def current(self) -> Any:
        """The current collection; a clear error if nothing has been ingested yet."""
        manifest = self.manifest()
        if not manifest.collection:
            raise IndexStateError("The index is empty: run `studybot ingest` (or `make run`) first.")
        return self.open_collection(manifest.collection)

    def drop_orphans(self, keep: str | None) -> list[str]:
        dropped = []
        for col in self.client.list_collections():
            name = col if isinstance(col, str) else col.name
            if name.startswith(f"{self.name}__v") and name != keep:
                self.client.delete_collection(name)
                dropped.append(name)
        return dropped

    # -- records ---------------------------------------------------------------------------------
    # A collection holds two kinds of record: "chunk" (the passage, embedded with its title and section
    # path) and "window" (a few sentences of a chunk, embedded alone, pointing at the chunk by "parent").
    # Dense retrieval scores a chunk by both, so a question that paraphrases one sentence still finds it.
    @staticmethod
    def add_chunks(
        collection: Any,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
        windows: Sequence[Sequence[tuple[str, Sequence[float]]]] | None = None,
    ) -> None:
        """Add chunks and (optionally) their windows: ``windows[i]`` is a list of (text, embedding)."""
        ids: list[str] = []
        docs: list[str] = []
        metas: list[dict[str, Any]] = []
        vecs: list[list[float]] = []
        for i, chunk in enumerate(chunks):
            ids.append(chunk.id)
            docs.append(chunk.text)
            metas.append({**chunk.metadata(), "kind": "chunk"})
            vecs.append(list(embeddings[i]))
            for j, (text, vec) in enumerate(windows[i] if windows else []):
                ids.append(f"{chunk.id}-w{j}")
                docs.append(text)
                metas.append({"kind": "window", "parent": chunk.id, "source": chunk.source,
                              "content_hash": chunk.content_hash, "ordinal": j})
                vecs.append(list(vec))
        Index.add_raw(collection, ids, docs, metas, vecs)

    @staticmethod
    def add_raw(collection: Any, ids: list[str], docs: list[str], metas: list[dict[str, Any]],
                vecs: list[list[float]]) -> None:
        for i in range(0, len(ids), _BATCH):
            collection.add(ids=ids[i : i + _BATCH], documents=docs[i : i + _BATCH],
                           metadatas=metas[i : i + _BATCH], embeddings=vecs[i : i + _BATCH])

    @staticmethod
    def iter_raw(collection: Any, where: dict[str, Any] | None = None,
                 embeddings: bool = False) -> Iterator[tuple[str, str, dict[str, Any], list[float] | None]]:
        include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
        offset = 0
        while True:
            got = collection.get(where=where, include=include, limit=2000, offset=offset)
            ids = got.get("ids") or []
            if not ids:
                return
            docs = got.get("documents") or []
            metas = got.get("metadatas") or []
            embs = got.get("embeddings") if embeddings else None
            for j, rid in enumerate(ids):
                vec = None if embs is None else [float(x) for x in embs[j]]
                yield rid, docs[j] or "", dict(metas[j] or {}), vec
            offset += len(ids)

    @staticmethod
    def iter_records(
        collection: Any, where: dict[str, Any] | None = None, embeddings: bool = False
    ) -> Iterator[tuple[Chunk, list[float] | None]]:
        """The chunk records (windows left out)."""
        cond: dict[str, Any] = {"kind": "chunk"}
        if where:
            cond = {"$and": [cond, where]}
        for rid, doc, meta, vec in Index.iter_raw(collection, cond, embeddings):
            yield Chunk.from_record(rid, doc, meta), vec

    @staticmethod
    def get_chunks(collection: Any, ids: Sequence[str]) -> dict[str, Chunk]:
        """{id: chunk} of the chunk records with these ids (missing ones left out)."""
        if not ids:
            return {}
        got = collection.get(ids=list(ids), include=["documents", "metadatas"])
        return {rid: Chunk.from_record(rid, doc or "", dict(meta or {}))
                for rid, doc, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=False)}

    @staticmethod
    def count(collection: Any) -> int:
        """Records (chunks and windows) in a collection."""
        return int(collection.count())

    @staticmethod
    def nearest_records(collection: Any, vector: Sequence[float], n: int
                        ) -> tuple[dict[str, float], dict[str, float]]:
        """The ``n`` records nearest to ``vector``, unfiltered (a metadata filter makes Chroma's query many
        times slower): ({chunk id: cosine similarity}, {chunk id: the similarity of its best window})."""
        got = collection.query(query_embeddings=[list(vector)], n_results=max(1, n),
                               include=["distances", "metadatas"])
        chunks: dict[str, float] = {}
        best: dict[str, float] = {}
        for rid, meta, dist in zip(got["ids"][0], got["metadatas"][0], got["distances"][0], strict=False):
            meta = meta or {}
            if meta.get("kind") == "window":
                parent = str(meta.get("parent"))
                best[parent] = max(best.get(parent, -1.0), 1.0 - float(dist))
            else:
                chunks[rid] = 1.0 - float(dist)
        return chunks, best

    def copy_records(self, source: Any, target: Any, keep: Callable[[str], bool]) -> int:
        """Copy every record (chunks and windows) whose source file ``keep`` accepts; returns chunks copied."""
        batch: tuple[list[str], list[str], list[dict[str, Any]], list[list[float]]] = ([], [], [], [])
        copied = 0
        for rid, doc, meta, vec in self.iter_raw(source, embeddings=True):
            if vec is None or not keep(str(meta.get("source", ""))):
                continue
            for store, value in zip(batch, (rid, doc, meta, vec), strict=True):
                store.append(value)  # type: ignore[attr-defined]
            copied += meta.get("kind") == "chunk"
            if len(batch[0]) >= _BATCH:
                self.add_raw(target, *batch)
                batch = ([], [], [], [])
        if batch[0]:
            self.add_raw(target, *batch)
        return copied

    def vectors_by_hash(self, collection: Any, sources: set[str]) -> dict[str, Any]:
        """{content_hash: (chunk vector, [(window text, vector), ...])} for the chunks of ``sources``."""
        out: dict[str, Any] = {}
        for _rid, doc, meta, vec in self.iter_raw(collection, embeddings=True):
            if meta.get("source") not in sources or vec is None:
                continue
            entry = out.setdefault(str(meta.get("content_hash")), [None, {}])
            if meta.get("kind") == "window":
                entry[1][int(meta.get("ordinal", 0))] = (doc, vec)
            else:
                entry[0] = vec
        return {h: (v, [w[j] for j in sorted(w)]) for h, (v, w) in out.items() if v is not None}

    def all_chunks(self) -> list[Chunk]:
        chunks = [c for c, _ in self.iter_records(self.current())]
        chunks.sort(key=lambda c: (c.source, c.ordinal))
        return chunks
