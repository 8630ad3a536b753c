"""Incremental ingest: discover files, load, chunk, embed what changed, switch the index atomically."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunking import chunk_document, windows
from ingest.loaders import LoadedDocument, discover, file_sha256, load_file
from rag.backends import keyword
from rag.backends.store import FileRecord, Index, Manifest
from rag.errors import IngestError
from rag.retrieval import write_keyword
from rag.types import Chunk, Progress


@dataclass
class IngestSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # source -> one-line reason (previous chunks kept)
    skipped: dict[str, str] = field(default_factory=dict)  # source -> one-line reason (links out of the folder)
    duplicates: dict[str, str] = field(default_factory=dict)  # source -> the source indexed with the same bytes
    notes: list[str] = field(default_factory=list)  # e.g. where a broken index was kept aside
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
        """No file failed. A skipped entry (a hidden file, a link out of the folder) is not a failure: it was
        left out on purpose, and said so."""
        return not self.failed

    def lines(self) -> list[str]:
        out = [f"  failed    {why}" for _, why in sorted(self.failed.items())]
        out += [f"  skipped   {why}" for _, why in sorted(self.skipped.items())]
        out += [f"  duplicate {src}: same content as {orig}; indexed once, as {orig}"
                for src, orig in sorted(self.duplicates.items())]
        out += [f"  note      {note}" for note in self.notes]
        out.append(
            f"added {len(self.added)}, updated {len(self.updated)}, removed {len(self.removed)}, "
            f"unchanged {len(self.unchanged)}, failed {len(self.failed)}, skipped {len(self.skipped)} files; "
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
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "notes": self.notes,
            "chunks_total": self.chunks_total,
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "seconds": round(self.seconds, 3),
            "collection": self.collection,
        }


@dataclass(frozen=True)
class IngestPlan:
    """What an ingest is about to embed, told before the long part starts."""

    files: list[tuple[str, int]]  # (source, chunks it makes) for the new and changed files
    chunks: int  # chunks to embed (chunks whose content is unchanged reuse their vectors)
    windows: int  # sentence windows embedded with them
    eta_s: float | None  # from the rate the last ingest measured on this machine; None when unknown

    @property
    def texts(self) -> int:
        return self.chunks + self.windows


PlanFn = Callable[[IngestPlan], None]
# How chunks are embedded and added to a new collection version: (index, collection, chunks, progress).
EmbedFn = Callable[[Index, Any, list[Chunk], Progress | None], None]
RATE_FILE = "embed-rate.json"  # texts embedded per second by the last ingest here (for the up-front ETA)


def chunk_params(index: Index) -> dict[str, object]:
    s = index.settings
    return {"chunk_size": s.ingest.chunk_size, "chunk_min": s.ingest.chunk_min, "embedder": index.embedder.name,
            "schema": 4}  # 4: indexes upgraded to 3 reused their schema-2 vectors (fixed); embed them again


def _too_big(path: Path, source: str, max_file_mb: float) -> str | None:
    size = path.stat().st_size
    if size <= max_file_mb * 1024 * 1024:
        return None
    return (f"{source}: {size / 1024 / 1024:.1f} MB is over the {max_file_mb:g} MB file limit; split it, or raise "
            f"the limit with --max-file-mb {int(size / 1024 / 1024) + 1} (STUDYBOT_INGEST_MAX_FILE_MB)")


def ingest_paths(
    index: Index,
    files: list[tuple[str, Path]],
    *,
    rebuild: bool = False,
    prune: bool = True,
    progress: Progress | None = None,
    on_plan: PlanFn | None = None,
    max_file_mb: float | None = None,
    skipped: dict[str, str] | None = None,
    failed: dict[str, str] | None = None,
    embed: EmbedFn | None = None,
) -> IngestSummary:
    """Bring the index in line with ``files`` (source name, path).

    ``prune``: sources in the index but not in ``files`` are removed (a full-library ingest); with
    ``prune=False`` they are kept (adding single files). Files that fail to load, or are over ``max_file_mb``
    (default: the setting), keep their previous chunks, if any, and are reported in ``failed``. Files with the
    same bytes as another are indexed once (``duplicates``). ``skipped`` and ``failed`` (reasons from
    discovery: entries left out on purpose, folders that could not be listed) are reported as they are.
    ``rebuild`` writes a fresh index folder (local mode) and switches to it only when it is complete, so it
    recovers from a corrupt index and a killed rebuild changes nothing. A home this user cannot write is
    :class:`HomeNotWritableError` before anything starts. ``embed``: how the chunks to embed are embedded and
    added (default :func:`embed_and_add`; a bench compares other engines through it).
    """
    t0 = time.perf_counter()
    index.check_writable()  # a read-only home is a permissions problem, said before anything starts
    summary = IngestSummary(skipped=dict(skipped or {}), failed=dict(failed or {}))
    limit = index.settings.ingest.max_file_mb if max_file_mb is None else max_file_mb
    fresh = index.begin_fresh() if rebuild else None
    try:
        manifest = Manifest() if rebuild else index.manifest()
        summary = _ingest(index, files, manifest, summary, rebuild=rebuild, prune=prune, progress=progress,
                          on_plan=on_plan, limit=limit, embed=embed or embed_and_add)
        if fresh is not None:
            note = index.commit_fresh(fresh)
            if note:
                summary.notes.append(note)
    except BaseException:
        if fresh is not None:
            index.abort_fresh(fresh)
        raise
    summary.seconds = time.perf_counter() - t0
    return summary


def _ingest(index: Index, files: list[tuple[str, Path]], manifest: Manifest, summary: IngestSummary, *,
            rebuild: bool, prune: bool, progress: Progress | None, on_plan: PlanFn | None, limit: float,
            embed: EmbedFn) -> IngestSummary:
    params = chunk_params(index)
    same_params = manifest.params == params
    old = manifest.files if same_params else {}

    loaded: dict[str, LoadedDocument] = {}
    keep: dict[str, FileRecord] = {}  # sources whose indexed chunks are copied as they are
    dups: dict[str, FileRecord] = {}  # sources recorded as duplicates of another (no chunks of their own)
    seen = {source for source, _ in files}
    # Whoever holds some content keeps it: files kept from the index (not in this run) first, then the files
    # that are primary in the index now, then the rest by name.
    owner: dict[str, str] = {}  # file hash -> source indexed with it
    if not prune:
        for source, record in manifest.files.items():
            if source not in seen and not record.duplicate_of:
                owner.setdefault(record.hash, source)
    order = sorted(files, key=lambda f: (not (f[0] in old and not old[f[0]].duplicate_of), f[0]))
    for source, path in order:
        try:
            too_big = _too_big(path, source, limit)
            digest = None if too_big else file_sha256(path)
        except OSError as exc:
            too_big, digest = f"{source}: cannot read it ({exc.strerror or exc})", None
        if too_big or digest is None:
            summary.failed[source] = too_big or f"{source}: cannot read it"
            if source in manifest.files:  # a bad new version never loses the good old one
                (dups if manifest.files[source].duplicate_of else keep)[source] = manifest.files[source]
                if not manifest.files[source].duplicate_of:
                    owner.setdefault(manifest.files[source].hash, source)
            continue
        prev = old.get(source)
        holder = owner.setdefault(digest, source)
        if holder != source:
            summary.duplicates[source] = holder
            if prev is not None and prev.hash == digest and prev.duplicate_of == holder:
                dups[source] = prev
            else:
                title = old[holder].title if holder in old else ""
                dups[source] = FileRecord(digest, title, 0, time.time(), path.suffix.lower().lstrip("."), holder)
                if prev is not None and not prev.duplicate_of:
                    summary.updated.append(source)  # its own chunks go: the content is indexed under holder
            continue
        if prev is not None and prev.hash == digest and not prev.duplicate_of:
            keep[source] = prev
            summary.unchanged.append(source)
            continue
        try:
            loaded[source] = load_file(path, source)
        except IngestError as exc:
            summary.failed[source] = str(exc)
            owner.pop(digest, None)
            if source in manifest.files and not manifest.files[source].duplicate_of:
                keep[source] = manifest.files[source]
            continue
        (summary.updated if source in manifest.files and not manifest.files[source].duplicate_of
         else summary.added).append(source)

    for source, record in manifest.files.items():
        if source not in seen:
            if prune:
                if not record.duplicate_of:
                    summary.removed.append(source)
            elif record.duplicate_of:
                dups[source] = record
            else:
                keep[source] = record
                summary.unchanged.append(source)
    # a duplicate whose holder is no longer indexed is not a duplicate any more: the next ingest loads it
    held = set(keep) | set(loaded)
    dups = {s: r for s, r in dups.items() if r.duplicate_of in held}
    dup_changed = {s: r.duplicate_of for s, r in dups.items()} != {
        s: r.duplicate_of for s, r in manifest.files.items() if r.duplicate_of}

    if not summary.changed and same_params and manifest.collection and not rebuild:
        if dup_changed:  # only the duplicate records changed: same collection, new manifest
            index.write_manifest(Manifest(manifest.collection, manifest.version, params, {**keep, **dups}))
        _tidy(index, manifest.collection)  # what a killed ingest left behind goes even when nothing changed
        summary.chunks_total = sum(r.chunks for r in keep.values())
        summary.collection = manifest.collection
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
    records: dict[str, FileRecord] = dict(dups)

    # unchanged (and kept) files: copy chunks and windows with their embeddings
    reuse: dict[str, Any] = {}
    if old_collection is not None:
        if keep:
            summary.chunks_reused += index.copy_records(old_collection, collection, lambda src: src in keep)
        if loaded and same_params:  # other params (embedder, chunking, vector recipe) mean other vectors
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
    planned: list[tuple[str, int]] = []
    for source, doc in loaded.items():
        chunks = chunk_document(doc, index.settings.ingest.chunk_size, index.settings.ingest.chunk_min)
        new_chunks.extend(chunks)
        records[source] = FileRecord(doc.file_hash, doc.title, len(chunks), time.time(), doc.kind)
        planned.append((source, len(chunks)))
    reused = [c for c in new_chunks if c.content_hash in reuse]
    to_embed = [c for c in new_chunks if c.content_hash not in reuse]
    if reused:
        Index.add_chunks(collection, reused, [reuse[c.content_hash][0] for c in reused],
                         [reuse[c.content_hash][1] for c in reused])
        summary.chunks_reused += len(reused)
    if to_embed:
        n_windows = sum(len(windows(c)) for c in to_embed)
        rate = _last_rate(index)
        plan = IngestPlan(sorted(planned), len(to_embed), n_windows,
                          (len(to_embed) + n_windows) / rate if rate else None)
        if on_plan:
            on_plan(plan)
        started = time.perf_counter()
        embed(index, collection, to_embed, progress)
        _save_rate(index, plan.texts / max(time.perf_counter() - started, 1e-6))
        summary.chunks_embedded = len(to_embed)

    _switch(index, collection, Manifest(collection=collection.name, version=new_version, params=params, files=records))
    summary.collection = collection.name
    summary.chunks_total = sum(r.chunks for r in records.values())
    return summary


def _switch(index: Index, collection: Any, manifest: Manifest) -> None:
    """Make ``collection`` the current version: its keyword index is written first, then the manifest is
    switched (the atomic step), then older collections and their keyword indexes are dropped. A kill before
    the switch leaves the previous version whole; one after it, an orphan the next ingest drops."""
    write_keyword(index, collection)
    index.write_manifest(manifest)  # the atomic switch
    _tidy(index, collection.name)


def _tidy(index: Index, keep: str) -> None:
    """Drop every collection but ``keep`` (older versions, a killed ingest's half-built one), their keyword
    indexes, and the segment folders Chroma leaves on disk for them."""
    index.drop_orphans(keep=keep)
    keyword.drop_orphans(index.settings.storage.index_dir, keep=keep)
    index.drop_orphan_segments()


def _last_rate(index: Index) -> float | None:
    try:
        rate = float(json.loads((index.settings.storage.index_dir / RATE_FILE).read_text())["texts_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rate if rate > 0 else None


def _save_rate(index: Index, rate: float) -> None:
    with contextlib.suppress(OSError):
        path = index.settings.storage.index_dir / RATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"texts_per_s": round(rate, 2), "measured_at": time.time()}))


# Chunks per embedding call: one call sorts its texts (the chunks' leads and their ~3 windows each) by length
# before batching them, so similar lengths share batches; 64 keeps the progress bar moving (~3 s a call).
INGEST_BATCH = 64
# 32: a chunk's vector is its windows' mean plus the vector of its first 32 words (title, section, opening).
# Against a model pass over the whole chunk, on the same run (bench/ingest_variants.py): gold hybrid hit@5
# 0.95 vs 0.9375, MRR@5 0.790 vs 0.803; holdout 0.975 vs 0.95, 0.824 vs 0.813; 55,010 tokens embedded instead
# of 81,299. The windows' mean alone: gold MRR@5 0.761; 16 words: 0.756; the first 64 words alone: 0.774.
LEAD_WORDS = 32


def lead_text(chunk: Chunk) -> str:
    """The chunk's first :data:`LEAD_WORDS` words with its title and section: what it is about."""
    return " ".join(chunk.embed_text().split()[:LEAD_WORDS])


def chunk_vector(lead: Sequence[float], window_vectors: Sequence[Sequence[float]]) -> list[float]:
    """normalise(normalise(mean of the windows) + the lead's vector): the chunk's dense vector."""
    import numpy as np

    mean = np.mean(np.asarray(window_vectors, dtype=np.float64), axis=0)
    v = mean / (np.linalg.norm(mean) or 1.0) + np.asarray(lead, dtype=np.float64)
    return (v / (np.linalg.norm(v) or 1.0)).tolist()


def embed_and_add(index: Index, collection: object, chunks: list[Chunk], progress: Progress | None) -> None:
    """Embed chunks' sentence windows and leads and add them. A chunk's own vector is built from those
    (:func:`chunk_vector`): a model pass over the whole chunk measured no better (LEAD_WORDS) and cost 30% of
    the tokens."""
    batch = INGEST_BATCH
    if progress:
        progress("embedding", 0, len(chunks))  # the clock of the time-left estimate starts here
    for i in range(0, len(chunks), batch):
        part = chunks[i : i + batch]
        wins = [windows(c) for c in part]
        vectors = index.embedder.embed([lead_text(c) for c in part] + [w for ws in wins for w in ws])
        leads, rest = vectors[: len(part)], iter(vectors[len(part) :])
        win_pairs = [[(w, next(rest)) for w in ws] for ws in wins]
        chunk_vecs = [chunk_vector(lead, [v for _, v in pairs]) for lead, pairs in zip(leads, win_pairs, strict=True)]
        Index.add_chunks(collection, part, chunk_vecs, win_pairs)
        if progress:
            progress("embedding", min(i + batch, len(chunks)), len(chunks))


def ingest_corpus(index: Index, root: Path, **kwargs: Any) -> IngestSummary:
    """Index exactly the files below ``root`` (a folder or one file)."""
    if not root.exists():
        raise IngestError(f"No such file or folder: {root}")
    found = discover(root, follow_links=index.settings.ingest.follow_symlinks)
    return ingest_paths(index, found.files, skipped=found.skipped, failed=found.failed, **kwargs)


def remove_sources(index: Index, sources: list[str]) -> IngestSummary:
    """Remove documents from the index: a new version without them, switched atomically."""
    t0 = time.perf_counter()
    index.check_writable()
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
    _switch(index, collection, Manifest(collection.name, manifest.version + 1, manifest.params, records))
    summary.collection = collection.name
    summary.chunks_total = sum(r.chunks for r in records.values())
    summary.seconds = time.perf_counter() - t0
    return summary
