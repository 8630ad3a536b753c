"""The chunk index in Chroma, with an atomic "current version" pointer.

Each ingest that changes anything writes a *new* collection (``<name>__v<N>``), copying unchanged chunks and
their embeddings from the current one, and only then moves the pointer, a single record in the
``<name>__meta`` collection. A killed ingest therefore leaves the previous collection, and the pointer to it,
complete and queryable; the orphan it leaves behind is removed by the next ingest.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.backends.embeddings import TextEmbedder
from rag.errors import HomeNotWritableError, IndexStateError
from rag.settings import Settings, apply_offline_env
from rag.types import Chunk

# Records per Chroma add (adding chunks, copying records to a new version), and per page when reading a collection
# back: design choices of the first index (not tuned); they bound memory per call, not results.
_BATCH = 512
_PAGE = 2000  # as above: a design choice bounding memory per read, not tuned
CURRENT_FILE = "CURRENT"
DEFAULT_DIR = "chroma"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# --- permissions ----------------------------------------------------------------------------------------
# A home (or index) the running user cannot write is a permissions problem, not a broken index: Chroma cannot
# even open its database read-only (it writes on open: "attempt to write a readonly database"), and a rebuild
# fails the same way, so the user is told which path and which user, never "rebuild".
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def running_user() -> str:
    """The name of the user this process runs as (its effective uid), for messages."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError, OSError):
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name at all (a bare container uid)
            return f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"


def _owner(path: Path) -> str | None:
    try:
        import pwd

        uid = path.stat().st_uid
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"
    except (ImportError, OSError):
        return None


def write_problem(path: Path) -> tuple[Path, OSError] | None:
    """Why studybot cannot write ``path``: (the path that refused, the error), or None when it can (or when
    the check itself fails for another reason). A folder is checked by creating and removing a file in it, a
    file by opening it for writing (nothing is written), a missing path by its nearest existing folder (where
    it would be created). Only permission errors count (EACCES, EPERM, EROFS)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        if path.is_dir():
            fd, name = tempfile.mkstemp(prefix=".studybot-write-check-", dir=path)
            os.close(fd)
            os.unlink(name)
        else:
            os.close(os.open(path, os.O_WRONLY))
    except OSError as exc:
        return (path, exc) if exc.errno in NOT_WRITABLE else None
    return None


def permission_message(path: Path, exc: OSError) -> str:
    """The one sentence for a path studybot cannot write: the path, the user it runs as, the fix."""
    user = running_user()
    if exc.errno == errno.EROFS:
        return (f"studybot cannot write to {path}: it is on a read-only file system (running as user {user}); "
                "mount it writable or set STUDYBOT_HOME to a writable folder.")
    owner = _owner(path)
    owned = f"owned by {owner}, " if owner and owner != user else ""
    return (f"studybot cannot write to {path} ({owned}running as user {user}): give that user write access to it "
            "or set STUDYBOT_HOME to a writable folder.")


def not_writable(paths: Iterable[Path], home: Path | None = None) -> HomeNotWritableError | None:
    """The error for the first of ``paths`` studybot cannot write, or None. When the folders above it, up to
    ``home``, cannot be written either, the highest of them is named (a read-only home is named as the home,
    not as the first file inside it)."""
    for candidate in paths:
        found = write_problem(candidate)
        if found is None:
            continue
        where, exc = found
        if home is not None:
            top = Path(home)
            while where != top and top in where.parents:
                above = write_problem(where.parent)
                if above is None:
                    break
                where, exc = above
        return HomeNotWritableError(permission_message(where, exc))
    return None


# --- Chroma's own folders ---------------------------------------------------------------------------------
# A local Chroma folder holds ``chroma.sqlite3`` and one folder per HNSW vector segment, named by the
# segment's id (a row of the ``segments`` table). Chroma 1.x deletes a collection's rows but leaves its segment
# folder, and a killed ingest leaves one too; :meth:`Index.drop_orphan_segments` removes them.
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HNSW_FILES = frozenset({"header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle"})


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
        self._client_lock = threading.Lock()  # the app's first question and first page load open it together
        self._ef: Any = None
        self._dir_override: str | None = None

    # -- client ----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._open_client()
        return self._client

    def _open_client(self) -> Any:
        import chromadb

        s = self.settings
        try:
            if s.chroma.host:
                client = chromadb.HttpClient(host=s.chroma.host, port=s.chroma.port, settings=_chroma_settings())
                client.heartbeat()
            else:
                path = self.chroma_dir
                path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(path), settings=_chroma_settings())
        except Exception as exc:  # noqa: BLE001 - chroma raises many types
            self.raise_if_not_writable(exc)
            where = f"the Chroma server at {s.chroma.host}:{s.chroma.port}" if s.chroma.host else f"{self.where}"
            raise IndexStateError(
                f"Cannot open the index at {where} ({type(exc).__name__}: {_short(exc)}). "
                + ("Start it with `chroma run --path DIR --host ... --port ...` or unset STUDYBOT_CHROMA_HOST."
                   if s.chroma.host else self.rebuild_advice())
            ) from exc
        return client

    # -- permissions -----------------------------------------------------------------------------
    def write_paths(self) -> list[Path]:
        """What an ingest writes: the index folder, its keyword indexes and (local mode) the Chroma folder and
        its database. Missing ones are checked where they would be created."""
        index_dir = self.settings.storage.index_dir
        paths = [index_dir, index_dir / "keyword"]
        if not self.settings.chroma.host:
            chroma = self.chroma_dir
            paths += [chroma, chroma / "chroma.sqlite3"]
        return [p for i, p in enumerate(paths) if i == 0 or p.exists()]

    def check_writable(self, extra: Iterable[Path] = ()) -> None:
        """:class:`HomeNotWritableError` (path, user, fix) when the index, or one of ``extra``, cannot be
        written by this user: checked before an ingest starts, so it never fails half-way for that."""
        problem = not_writable([*self.write_paths(), *extra], self.settings.storage.home)
        if problem is not None:
            raise problem

    def raise_if_not_writable(self, cause: BaseException) -> None:
        """After Chroma failed: if the index cannot be written by this user, that is the cause (Chroma cannot
        open a database it cannot write), and the answer is the permission sentence, not "rebuild". Not for a
        Chroma server, whose errors are its own."""
        if self.settings.chroma.host:
            return
        problem = not_writable(self.write_paths(), self.settings.storage.home)
        if problem is not None:
            raise problem from cause

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
        except (IndexStateError, HomeNotWritableError):
            raise
        except Exception as exc:  # noqa: BLE001
            self.raise_if_not_writable(exc)
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
            if isinstance(exc, HomeNotWritableError):
                raise
            self.raise_if_not_writable(exc)
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

    def drop_orphan_segments(self) -> list[str]:
        """Remove the segment folders in the local Chroma folder that no segment of its database names: those
        of dropped collections (Chroma leaves them) and of killed ingests. Careful by construction: the folders
        are listed *before* the database is read (Chroma records a segment before it creates its folder, so a
        folder being created by another process is already named there), only folders named like a segment id
        holding nothing but HNSW files are touched, and nothing is removed when the database cannot be read."""
        if self.settings.chroma.host:
            return []
        folder = self.chroma_dir
        db = folder / "chroma.sqlite3"
        try:
            candidates = [e for e in os.scandir(folder)
                          if _UUID.match(e.name) and e.is_dir(follow_symlinks=False)]
            if not candidates or not db.is_file():
                return []
            con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
            try:
                known = {str(row[0]) for row in con.execute("SELECT id FROM segments")}
            finally:
                con.close()
        except (OSError, sqlite3.Error):
            return []
        if not known:  # a database without segments is not one this code understands: leave everything
            return []
        dropped = []
        for entry in candidates:
            if entry.name in known:
                continue
            try:
                inside = list(os.scandir(entry.path))
            except OSError:
                continue
            if all(f.is_file(follow_symlinks=False) and f.name in HNSW_FILES for f in inside):
                shutil.rmtree(entry.path, ignore_errors=True)
                dropped.append(entry.name)
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
            got = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
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
