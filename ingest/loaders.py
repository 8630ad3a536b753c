"""Load `.md`, `.txt` and `.pdf` files into text (pages kept for PDFs), with a one-line reason on failure."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rag.errors import IngestError

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".pdf")


@dataclass(frozen=True)
class Page:
    text: str
    number: int | None  # 1-based PDF page number; None for text files


@dataclass(frozen=True)
class LoadedDocument:
    source: str  # name relative to the corpus root (posix separators)
    path: Path
    kind: str  # "markdown" | "text" | "pdf"
    title: str
    pages: list[Page]
    file_hash: str

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages)


def _looks_binary(data: bytes) -> bool:
    if b"\x00" in data[:8192]:
        return True
    sample = data[:8192]
    if not sample:
        return False
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return control / len(sample) > 0.05


def _decode_text(data: bytes, name: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if _looks_binary(data):
        raise IngestError(f"{name}: looks like a binary file, not text; convert it to .md/.txt/.pdf first")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{name}: not valid UTF-8 (byte {exc.start}); re-save it as UTF-8 and ingest again"
        ) from exc


_MD_TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.M)


def _title_for(kind: str, text: str, path: Path) -> str:
    if kind == "markdown":
        m = _MD_TITLE.search(text)
        if m:
            return re.sub(r"[*_`]", "", m.group(1)).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            line = re.sub(r"^\d+(\.\d+)*\.?\s+", "", line)  # "1. Foundational ..." -> "Foundational ..."
            if 3 <= len(line) <= 120:
                return line
            break
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_file(path: Path, source: str | None = None) -> LoadedDocument:
    """Load one file. Raises :class:`IngestError` with a one-line reason for anything unusable."""
    name = source or path.name
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(f"{name}: unsupported file type '{suffix or '(none)'}'; use .md, .txt or .pdf")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{name}: cannot read it ({exc.strerror or exc})") from exc
    if not data.strip():
        raise IngestError(f"{name}: the file is empty")
    import hashlib

    file_hash = hashlib.sha256(data).hexdigest()
    if suffix == ".pdf":
        pages = _load_pdf(path, data, name)
        kind = "pdf"
        title = _pdf_title(path, data) or _title_for("text", pages[0].text, path)
    else:
        kind = "markdown" if suffix in (".md", ".markdown") else "text"
        text = _decode_text(data, name).replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            raise IngestError(f"{name}: the file has no text")
        pages = [Page(text, None)]
        title = _title_for(kind, text, path)
    return LoadedDocument(source=name, path=path, kind=kind, title=title, pages=pages, file_hash=file_hash)


def _pdf_reader(data: bytes, name: str):  # noqa: ANN202
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip().startswith(b"%PDF"):
        raise IngestError(f"{name}: not a PDF (no %PDF header); the file is corrupt or mislabelled")
    try:
        reader = PdfReader(io.BytesIO(data))
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise IngestError(f"{name}: corrupt PDF ({exc}); re-export it and ingest again") from exc
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except Exception as exc:  # noqa: BLE001 - pypdf raises several types here
            raise IngestError(f"{name}: encrypted PDF; remove the password and ingest again") from exc
        if not ok:
            raise IngestError(f"{name}: encrypted PDF; remove the password and ingest again")
    return reader


def _load_pdf(path: Path, data: bytes, name: str) -> list[Page]:
    reader = _pdf_reader(data, name)
    pages: list[Page] = []
    try:
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").replace("\r\n", "\n")
            if text.strip():
                pages.append(Page(text, number))
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many error types on damaged files
        raise IngestError(f"{name}: corrupt PDF ({type(exc).__name__}: {exc}); re-export it") from exc
    if not pages:
        raise IngestError(f"{name}: the PDF has no extractable text (scanned images?); OCR it first")
    return pages


def _pdf_title(path: Path, data: bytes) -> str | None:
    try:
        reader = _pdf_reader(data, path.name)
        meta = reader.metadata
        title = (meta.title if meta else None) or ""
    except Exception:  # noqa: BLE001
        return None
    title = str(title).strip()
    return title or None


@dataclass
class Discovery:
    """The files found below a folder, and the entries skipped with a one-line reason each."""

    files: list[tuple[str, Path]] = field(default_factory=list)  # (source name, path), sorted by name
    skipped: dict[str, str] = field(default_factory=dict)  # source name -> reason (left out on purpose)
    failed: dict[str, str] = field(default_factory=dict)  # folder -> reason (could not be listed)


def discover(root: Path, *, follow_links: bool = False, hidden_ok: frozenset[str] = frozenset()) -> Discovery:
    """All files below ``root``, as (source name, path).

    A hidden file or folder (its name starts with a dot) is skipped with a reason (a folder once, not walked);
    ``hidden_ok`` names hidden entries of ``root`` itself that are left out silently (studybot's own). A
    folder that cannot be listed is reported in ``failed``. A symbolic link (to a file or a folder) whose
    target is outside ``root`` is skipped with a reason unless ``follow_links``; a link to a folder inside
    ``root`` is not walked (its files are found under their own names), and a broken link is skipped with a
    reason.
    """
    root = Path(root)
    if root.is_file():
        return Discovery([(root.name, root)])
    found = Discovery()
    real_root = root.resolve()
    walked = {real_root}

    def walk(folder: Path, rel: PurePosixPath) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            found.failed[rel.as_posix() or "."] = f"{rel.as_posix() or root}: cannot list it ({exc.strerror or exc})"
            return
        for entry in entries:
            name = (rel / entry.name).as_posix()
            path = Path(entry.path)
            if entry.name.startswith("."):
                if not (rel == PurePosixPath() and entry.name in hidden_ok):
                    what = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                    found.skipped[name] = f"{name}: a hidden {what} (its name starts with a dot); skipped"
                continue
            if entry.is_symlink():
                target = path.resolve()
                if not target.exists():
                    found.skipped[name] = f"{name}: a broken symbolic link; skipped"
                    continue
                inside = target == real_root or real_root in target.parents
                if not inside and not follow_links:
                    what = "folder" if target.is_dir() else "file"
                    found.skipped[name] = (f"{name}: a symbolic link to a {what} outside the corpus folder "
                                           f"({target}); skipped (set STUDYBOT_INGEST_FOLLOW_SYMLINKS=true to index it)")
                    continue
                if target.is_dir():
                    if not inside and target not in walked:  # followed on purpose; each real folder once
                        walked.add(target)
                        walk(path, rel / entry.name)
                    continue
                found.files.append((name, path))
            elif entry.is_dir(follow_symlinks=False):
                walk(path, rel / entry.name)
            elif entry.is_file(follow_symlinks=False):
                found.files.append((name, path))

    walk(root, PurePosixPath())
    found.files.sort()
    return found
