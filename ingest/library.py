"""The document library: the corpus folder plus the files a user added (uploads), kept in one index.

What the library *is* lives here, once, for every entry point: ``studybot ingest`` (what ``make run`` and the
Docker image run on every start), ``studybot add`` / ``remove`` and the Library tab all see the corpus folder
and the uploads folder together, so restarting never drops an uploaded document from the index.

Added files are checked (type, size, a safe file name), copied into ``<home>/uploads/`` (staged, then moved
into place only once they are indexed) and indexed incrementally under the source name ``uploads/<name>``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders import SUPPORTED_SUFFIXES, Discovery, discover, file_sha256
from ingest.pipeline import IngestSummary, PlanFn, ingest_paths, remove_sources
from rag.backends.store import Index
from rag.errors import IngestError, StudybotError
from rag.types import Progress

UPLOAD_PREFIX = "uploads/"
INCOMING = ".incoming"  # uploads are staged here until they are indexed
# An upload's name is cut to 120 characters: a design choice of the library (not tuned), well under the 255 bytes
# a file name may have on common filesystems, with room for " (999)".
MAX_NAME = 120
MAX_SAME_NAME = 999  # "notes.md", "notes (2).md", ... "notes (999).md"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


# --- validation (pure functions) ---------------------------------------------------------------------
def sanitize_filename(name: str) -> str:
    """A safe file name from a given one: basename only, safe characters, no dotfile, no traversal.

    Raises :class:`IngestError` when nothing usable is left or the type is not supported.
    """
    raw = str(name or "")
    base = re.split(r"[\\/]", raw)[-1]  # basename for both / and \ separators
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", base).strip(" .")
    base = re.sub(r"_+", "_", base)
    base = re.sub(r"\.{2,}", ".", base)
    base = base.lstrip("._- ")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = suffix.lower()
    shown = raw.replace("\n", " ")[:80] or "(no name)"
    if "." + suffix not in SUPPORTED_SUFFIXES:
        got = f".{suffix}" if dot and suffix else "(none)"
        raise IngestError(f"{shown}: unsupported file type '{got}'; use .md, .txt or .pdf")
    stem = stem.strip(" ._-")[: MAX_NAME - len(suffix) - 1].strip(" ._-")
    if not stem:
        raise IngestError(f"{shown}: the file name has no usable characters; rename it and add it again")
    if stem.lower() in _WINDOWS_RESERVED:
        stem = f"{stem}_file"
    return f"{stem}.{suffix}"


def validate_file(path: Path, name: str | None, max_mb: float) -> str:
    """Check a file to add (type, size) and return its sanitised name; :class:`IngestError` if unusable."""
    safe = sanitize_filename(name if name is not None else path.name)
    try:
        if not path.is_file():
            raise IngestError(f"{safe}: not a file" if path.exists() else f"{path}: no such file")
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"{safe}: cannot read it ({exc.strerror or exc})") from exc
    if size == 0:
        raise IngestError(f"{safe}: the file is empty")
    if size > max_mb * 1024 * 1024:
        raise IngestError(f"{safe}: {size / 1024 / 1024:.1f} MB is over the {max_mb:g} MB file limit; split it, "
                          "or raise the limit (STUDYBOT_INGEST_MAX_FILE_MB)")
    return safe


@dataclass
class AddResult:
    name: str  # the name shown to the user (sanitised when it got that far)
    ok: bool
    message: str
    source: str = ""  # the source name in the index (uploads/<name>) when it got that far


def _inside(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if target.parent != root.resolve():
        raise IngestError(f"{name}: not a plain file name")
    return target


class Library:
    """The corpus folder + the uploads folder, and the index built from them."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.settings = index.settings

    @property
    def corpus_dir(self) -> Path:
        return Path(self.settings.storage.corpus_dir)

    @property
    def uploads_dir(self) -> Path:
        return Path(self.settings.storage.uploads_dir)

    # -- what the library holds -----------------------------------------------------------------------
    def files(self, corpus: Path | None = None) -> Discovery:
        """The corpus folder's files (or ``corpus``'s) and the uploads, as (source, path); skipped entries with
        their reasons."""
        root = Path(corpus) if corpus is not None else self.corpus_dir
        follow = self.settings.ingest.follow_symlinks
        found = discover(root, follow_links=follow) if root.exists() else Discovery()
        if self.uploads_dir.exists():
            uploads = discover(self.uploads_dir, follow_links=follow, hidden_ok=frozenset({INCOMING}))
            found.files += [(UPLOAD_PREFIX + src, p) for src, p in uploads.files]
            found.skipped.update({UPLOAD_PREFIX + src: why for src, why in uploads.skipped.items()})
            found.failed.update({UPLOAD_PREFIX + src: why for src, why in uploads.failed.items()})
        return found

    def sync(self, corpus: Path | None = None, *, rebuild: bool = False, progress: Progress | None = None,
             on_plan: PlanFn | None = None, max_file_mb: float | None = None) -> IngestSummary:
        """Bring the index in line with the library: new and changed files are indexed, files gone from disk
        are removed, unchanged ones are not re-embedded. ``corpus`` replaces the corpus folder for this run
        (the uploads are always kept)."""
        root = Path(corpus) if corpus is not None else self.corpus_dir
        if not root.exists():
            raise IngestError(f"No such file or folder: {root}")
        found = self.files(root)
        return ingest_paths(self.index, found.files, skipped=found.skipped, failed=found.failed, rebuild=rebuild,
                            prune=True, progress=progress, on_plan=on_plan, max_file_mb=max_file_mb)

    def needs_sync(self, corpus: Path | None = None) -> bool:
        """True when the index is missing or a library file changed since the last sync (hashes only)."""
        from ingest.loaders import file_sha256
        from ingest.pipeline import chunk_params
        from rag.errors import IndexStateError

        try:
            manifest = self.index.manifest()
        except IndexStateError:
            return True
        if not manifest.collection or manifest.params != chunk_params(self.index):
            return True
        files = dict(self.files(corpus).files)
        if set(files) != set(manifest.files):
            return True
        return any(file_sha256(p) != manifest.files[s].hash for s, p in files.items())

    # -- adding and removing documents -----------------------------------------------------------------
    def add(self, paths: list[Path], *, progress: Progress | None = None, on_plan: PlanFn | None = None,
            max_file_mb: float | None = None) -> list[AddResult]:
        """Check, save into the uploads folder (under the file's sanitised name) and index each file; a bad
        file never stops the others. A file whose name is taken by a different upload is kept beside it as
        ``name (2).ext`` (and the message says so); the same bytes under the same name are "unchanged".
        :class:`HomeNotWritableError` before anything is copied when the uploads folder or the index cannot be
        written."""
        limit = self.settings.ingest.max_file_mb if max_file_mb is None else max_file_mb
        incoming = self.uploads_dir / INCOMING
        if paths:
            self.index.check_writable([self.uploads_dir])
        results: list[AddResult] = []
        total = len(paths)
        for i, path in enumerate(paths):
            path = Path(path)
            shown = path.name
            try:
                asked = validate_file(path, None, limit)
                shown = asked
                safe = self._free_name(asked, path)
                shown = safe
                incoming.mkdir(parents=True, exist_ok=True)
                final = _inside(self.uploads_dir, safe)
                staged = _inside(incoming, safe)
                shutil.copyfile(path, staged)
                source = UPLOAD_PREFIX + safe
                renamed = (f"named {safe} because another document is already called {asked} (both are kept)"
                           if safe != asked else "")

                def step(stage: str, done: int, n: int, _i: int = i, _name: str = safe) -> None:
                    if progress:
                        progress(f"{_name}: {stage}", _i * 100 + int(100 * done / max(n, 1)), total * 100)

                if progress:
                    progress(f"{safe}: loading", i * 100, total * 100)
                summary = ingest_paths(self.index, [(source, staged)], prune=False, progress=step,
                                       on_plan=on_plan, max_file_mb=limit)
                if source in summary.failed:
                    staged.unlink(missing_ok=True)
                    results.append(AddResult(safe, False, summary.failed[source], source))
                    continue
                os.replace(staged, final)
                if source in summary.duplicates:
                    msg = f"{safe}: same content as {summary.duplicates[source]}; indexed once, as that document"
                else:
                    verb = ("updated" if source in summary.updated else
                            "unchanged" if source in summary.unchanged else "added")
                    record = self.index.manifest().files.get(source)
                    msg = f"{safe}: {verb} ({record.chunks if record else 0} chunks)"
                if renamed:
                    msg = f"{msg}; {renamed}"
                results.append(AddResult(safe, True, msg, source))
            except StudybotError as exc:
                results.append(AddResult(shown, False, str(exc)))
            except OSError as exc:
                results.append(AddResult(shown, False, f"{shown}: could not save it ({exc.strerror or exc})"))
        if progress:
            progress("done", total * 100, total * 100)
        return results

    def _free_name(self, safe: str, path: Path) -> str:
        """``safe`` unless a different upload already has it: then ``stem (2).ext``, ``stem (3).ext``, ... the
        first name that is free or already holds these same bytes (adding the same file twice changes
        nothing)."""
        stem, _, suffix = safe.rpartition(".")
        digest: str | None = None
        for n in range(1, MAX_SAME_NAME + 1):
            name = safe if n == 1 else f"{stem} ({n}).{suffix}"
            target = _inside(self.uploads_dir, name)
            if not target.exists():
                return name
            if digest is None:
                digest = file_sha256(path)
            try:
                if target.is_file() and file_sha256(target) == digest:
                    return name
            except OSError:
                continue
        raise IngestError(f"{safe}: {MAX_SAME_NAME} uploads already have this name; rename the file and add it "
                          "again")

    def resolve(self, name: str) -> str:
        """The source name in the index for ``name``: a source as listed (``uploads/x.md``), or an added
        file's bare name (``x.md``)."""
        files = self.index.manifest().files
        if name in files:
            return name
        if UPLOAD_PREFIX + name in files:
            return UPLOAD_PREFIX + name
        raise IngestError(f"{name}: not in the library; `studybot doctor` shows the index, the Library tab lists "
                          "its documents")

    def remove(self, name: str) -> tuple[IngestSummary, str]:
        """Remove a document from the index (and an added file from the uploads folder); returns the
        summary and one sentence for the user."""
        if not name:
            raise IngestError("choose a document to remove")
        source = self.resolve(name)
        dependents = [s for s, r in self.index.manifest().files.items() if r.duplicate_of == source]
        summary = remove_sources(self.index, [source])
        if dependents:  # files with the same content were indexed as this one: index one of them now
            paths = dict(self.files().files)
            ingest_paths(self.index, [(s, paths[s]) for s in dependents if s in paths], prune=False)
        if source.startswith(UPLOAD_PREFIX):
            with contextlib.suppress(IngestError, OSError):
                _inside(self.uploads_dir, source[len(UPLOAD_PREFIX):]).unlink(missing_ok=True)
            return summary, f"removed {source}"
        return summary, (f"removed {source} from the index; it is still in the corpus folder {self.corpus_dir}, "
                         "so the next `studybot ingest` brings it back (delete it there to remove it for good)")
