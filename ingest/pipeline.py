"""Incremental ingest: discover files, load, chunk, embed what changed, switch the index atomically."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunking import chunk_document, windows
from ingest.loaders import LoadedDocument, discover, file_sha256, load_file
from ingest.store import FileRecord, Index, Manifest
from rag.errors import IngestError
from rag.types import Chunk

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class IngestSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # source -> one-line reason
    chunks_total: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    collection: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [f"  failed   {src}: {why}" for src, why in sorted(self.failed.items())]
        out.append(
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {len(self.unchanged)}, failed {len(self.failed)} files; "
            f"{self.chunks_total} chunks ({self.chunks_embedded} embedded, {self.chunks_reused} reused) "
            f"in {self.seconds:.2f} s"
        )
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "chunks_total": self.chunks_total,
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "seconds": round(self.seconds, 3),
            "collection": self.collection,
        }


def chunk_params(index: Index) -> dict[str, object]:
    s = index.settings
    return {"chunk_size": s.chunk_size, "chunk_min": s.chunk_min, "embedder": index.embedder.path.name, "schema": 2}


def ingest_paths(
    index: Index,
    files: list[tuple[str, Path]],
    *,
    rebuild: bool = False,
    prune: bool = True,
    progress: ProgressFn | None = None,
    show_progress: bool = False,
) -> IngestSummary:
    """Bring the index in line with ``files`` (source name, path).

    ``prune``: sources in the index but not in ``files`` are removed (a full-corpus ingest); with
    ``prune=False`` they are kept (adding single uploaded files). Files that fail to load keep their previous
    chunks, if any, and are reported in ``failed``.
    """
    t0 = time.perf_counter()
    summary = IngestSummary()
    manifest = Manifest() if rebuild else index.manifest()
    params = chunk_params(index)
    same_params = manifest.params == params
    old = manifest.files if same_params else {}

    loaded: dict[str, LoadedDocument] = {}
    keep: dict[str, FileRecord] = {}
    seen: set[str] = set()
    for source, path in files:
        seen.add(source)
        try:
            digest = file_sha256(path)
        except OSError as exc:
            summary.failed[source] = f"{source}: cannot read it ({exc.strerror or exc})"
            if source in manifest.files:
                keep[source] = manifest.files[source]
            continue
        prev = old.get(source)
        if prev is not None and prev.hash == digest:
            keep[source] = prev
            summary.unchanged.append(source)
            continue
        try:
            loaded[source] = load_file(path, source)
        except IngestError as exc:
            summary.failed[source] = str(exc)
            if source in manifest.files:  # a bad new version never loses the good old one
                keep[source] = manifest.files[source]
            continue
        (summary.updated if source in manifest.files else summary.added).append(source)

    for source, record in manifest.files.items():
        if source not in seen:
            if prune:
                summary.removed.append(source)
            else:
                keep[source] = record
                summary.unchanged.append(source)

    if not summary.changed and same_params and manifest.collection and not rebuild:
        summary.chunks_total = sum(r.chunks for r in manifest.files.values())
        summary.collection = manifest.collection
        summary.seconds = time.perf_counter() - t0
        return summary

    # --- build the next version -----------------------------------------------------------------
    old_collection = None
    if manifest.collection and not rebuild:
        try:
            old_collection = index.open_collection(manifest.collection)
        except Exception:  # noqa: BLE001 - a broken previous version: start over from the files
            old_collection = None
    new_version = manifest.version + 1
    collection = index.new_collection(new_version)
    records: dict[str, FileRecord] = {}

    # unchanged (and kept) files: copy chunks and windows with their embeddings
    reuse: dict[str, Any] = {}
    if old_collection is not None:
        if keep:
            summary.chunks_reused += index.copy_records(old_collection, collection, lambda src: src in keep)
        if loaded:
            reuse = index.vectors_by_hash(old_collection, set(loaded))
        for source in keep:
            records[source] = keep[source]
    elif keep:
        # no readable previous version: re-load the kept files from disk
        for source, path in files:
            if source in keep and source not in summary.failed:
                try:
                    loaded[source] = load_file(path, source)
                except IngestError as exc:
                    summary.failed[source] = str(exc)

    # new and changed files: chunk, embed what is new (chunks whose content is unchanged keep their vectors)
    new_chunks: list[Chunk] = []
    for source, doc in loaded.items():
        chunks = chunk_document(doc, index.settings.chunk_size, index.settings.chunk_min)
        new_chunks.extend(chunks)
        records[source] = FileRecord(doc.file_hash, doc.title, len(chunks), time.time(), doc.kind)
    reused = [c for c in new_chunks if c.content_hash in reuse]
    to_embed = [c for c in new_chunks if c.content_hash not in reuse]
    if reused:
        Index.add_chunks(collection, reused, [reuse[c.content_hash][0] for c in reused],
                         [reuse[c.content_hash][1] for c in reused])
        summary.chunks_reused += len(reused)
    if to_embed:
        _embed_and_add(index, collection, to_embed, progress, show_progress)
        summary.chunks_embedded = len(to_embed)

    new_manifest = Manifest(collection=collection.name, version=new_version, params=params, files=records)
    index.write_manifest(new_manifest)  # the atomic switch
    index.drop_orphans(keep=collection.name)
    summary.collection = collection.name
    summary.chunks_total = sum(r.chunks for r in records.values())
    summary.seconds = time.perf_counter() - t0
    return summary


def _embed_and_add(
    index: Index, collection: object, chunks: list[Chunk], progress: ProgressFn | None, show_progress: bool
) -> None:
    from tqdm import tqdm

    batch = max(8, index.settings.embed_batch_size)
    with tqdm(total=len(chunks), desc="embedding", unit="chunk", disable=not show_progress) as bar:
        for i in range(0, len(chunks), batch):
            part = chunks[i : i + batch]
            wins = [windows(c) for c in part]
            flat = [c.embed_text() for c in part] + [w for ws in wins for w in ws]
            vectors = index.embedder.embed(flat)
            chunk_vecs, rest = vectors[: len(part)], iter(vectors[len(part) :])
            win_pairs = [[(w, next(rest)) for w in ws] for ws in wins]
            Index.add_chunks(collection, part, chunk_vecs, win_pairs)
            bar.update(len(part))
            if progress:
                progress("embedding", min(i + batch, len(chunks)), len(chunks))


def ingest_corpus(index: Index, root: Path, **kwargs: object) -> IngestSummary:
    if not root.exists():
        raise IngestError(f"No such file or folder: {root}")
    files = discover(root)
    return ingest_paths(index, files, **kwargs)  # type: ignore[arg-type]


def remove_sources(index: Index, sources: list[str]) -> IngestSummary:
    """Remove documents from the index: a new version without them, switched atomically."""
    t0 = time.perf_counter()
    manifest = index.manifest()
    summary = IngestSummary(collection=manifest.collection)
    summary.removed = [s for s in sources if s in manifest.files]
    if not summary.removed or not manifest.collection:
        return summary
    old = index.open_collection(manifest.collection)
    collection = index.new_collection(manifest.version + 1)
    gone = set(summary.removed)
    summary.chunks_reused = index.copy_records(old, collection, lambda src: src not in gone)
    records = {s: r for s, r in manifest.files.items() if s not in gone}
    summary.unchanged = sorted(records)
    index.write_manifest(Manifest(collection.name, manifest.version + 1, manifest.params, records))
    index.drop_orphans(keep=collection.name)
    summary.collection = collection.name
    summary.chunks_total = sum(r.chunks for r in records.values())
    summary.seconds = time.perf_counter() - t0
    return summary
