"""The portable llama.cpp build flags and the runtime check (a crashing build becomes one sentence)."""

from __future__ import annotations

import os
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rag.backends.runtime_check import check_runtime, crash_message
from rag.settings import Settings
from tools import llama_build

ROOT = Path(__file__).resolve().parent.parent

SAPPHIRE_RAPIDS = ("model name : Intel(R) Xeon(R) Platinum 8480+\nflags : fpu sse4_2 avx avx2 fma f16c bmi2 "
                   "avx512f avx512_vnni amx_tile amx_int8 amx_bf16\n")
ZEN3 = "model name : AMD EPYC 7B13\nflags : fpu sse4_2 avx avx2 fma f16c bmi2 sha_ni vaes\n"


# --- build flags ------------------------------------------------------------------------------------
def test_llama_version_matches_the_pin() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    pin = re.search(r'"llama-cpp-python\[server\]==([^"]+)"', pyproject)
    assert pin and pin.group(1) == llama_build.LLAMA_VERSION


def test_auto_is_native_minus_amx() -> None:
    args = llama_build.cmake_args("auto", machine="x86_64")
    assert "-DGGML_NATIVE=ON" in args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    for var in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
        flags = next(a for a in args if a.startswith(f"-D{var}=")).split("=", 1)[1].split()
        assert {"-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"} <= set(flags)
    assert not any("AMX" in a and a.endswith("=ON") for a in args)
    # CMAKE_ARGS is shlex-split by scikit-build-core: the flags must survive the round trip
    assert shlex.split(shlex.join(args)) == args


def test_no_amx_flags_win_over_march_native_in_the_compiler(tmp_path: Path) -> None:
    """-march=sapphirerapids stands in for -march=native on an AMX machine: the -mno-amx flags must leave no
    AMX macro defined (ggml compiles its AMX kernels only under __AMX_INT8__), in either order."""
    import shutil

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    for order in (["-march=sapphirerapids", *llama_build.NO_AMX_FLAGS.split()],
                  [*llama_build.NO_AMX_FLAGS.split(), "-march=sapphirerapids"]):
        macros = subprocess.run([cc, *order, "-dM", "-E", "-"], input="", capture_output=True, text=True,
                                check=True).stdout
        assert "__AVX512F__" in macros  # the rest of the machine's features stay
        assert "__AMX" not in macros, order


def test_portable_never_uses_the_build_machine() -> None:
    portable = llama_build.cmake_args("portable", machine="x86_64")
    assert "-DGGML_NATIVE=OFF" in portable and "-DGGML_NATIVE=ON" not in portable
    assert "-DGGML_AVX2=ON" in portable and not any("AVX512" in a for a in portable)
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF"} <= set(portable)
    # the same key on every machine: an image's wheel does not depend on the CPU that built it
    assert llama_build.build_key(portable, cpu="a") == llama_build.build_key(portable, cpu="b")


def test_a_native_wheel_is_keyed_to_its_cpu() -> None:
    auto = llama_build.cmake_args("auto", machine="x86_64")
    spr, zen3 = llama_build.cpu_identity(SAPPHIRE_RAPIDS), llama_build.cpu_identity(ZEN3)
    assert spr.startswith("Intel(R) Xeon(R) Platinum 8480+|") and "amx_int8" in spr
    assert llama_build.build_key(auto, cpu=spr) != llama_build.build_key(auto, cpu=zen3)


def test_build_key_changes_with_any_flag() -> None:
    base = llama_build.cmake_args("auto", machine="x86_64")
    cuda = llama_build.cmake_args("auto", machine="x86_64", extra="-DGGML_CUDA=on")
    assert cuda[-1] == "-DGGML_CUDA=on"
    assert llama_build.build_key(base) != llama_build.build_key(cuda)
    assert llama_build.build_key(base) == llama_build.build_key(list(base))
    assert llama_build.build_key(base) != llama_build.build_key(base, version="0.0.1")


def test_the_dockerfile_builds_portably_and_is_not_open_by_default() -> None:
    docker = "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                       if not line.lstrip().startswith("#"))
    assert "march=native" not in docker and "GGML_NATIVE=ON" not in docker
    assert "STUDYBOT_LLAMA_CPU=portable" in docker and "tools.llama_build install" in docker
    cmd = next(line for line in docker.splitlines() if line.startswith("CMD"))
    assert "--no-auth" not in cmd and "0.0.0.0" in cmd


# --- the runtime check ------------------------------------------------------------------------------
def _fake_llama(tmp_path: Path, body: str) -> Path:
    """A stand-in ``llama_cpp`` package on PYTHONPATH, as a broken build would behave."""
    pkg = tmp_path / "fake" / "llama_cpp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import os, signal, sys\n\nclass Llama:\n    def __init__(self, **kw):\n"
                                     f"        {body}\n")
    return pkg.parent


def test_a_sigill_in_the_child_is_one_sentence_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setenv("PYTHONPATH", str(_fake_llama(tmp_path, "os.kill(os.getpid(), signal.SIGILL)")))
    verdict = check_runtime(model, tmp_path / "cache", force=True)
    assert not verdict.ok
    msg = verdict.message
    assert "illegal instruction (SIGILL)" in msg and "make rebuild-llama" in msg
    assert "\n" not in msg and msg.count(". ") == 0 and msg.endswith(".")
    assert not (tmp_path / "cache" / "runtime-checks.json").exists()  # a failure is never cached


def test_other_crashes_and_errors_are_sentences_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setenv("PYTHONPATH", str(_fake_llama(tmp_path, "os.kill(os.getpid(), signal.SIGSEGV)")))
    segv = check_runtime(model, tmp_path / "cache", force=True)
    assert not segv.ok and "SIGSEGV" in segv.message and "\n" not in segv.message
    assert crash_message(9, model).startswith("The llama.cpp runtime was killed (SIGKILL)")


def test_a_file_that_is_not_a_model_fails_the_real_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    # a plausible GGUF header (v3, 10 tensors, 5 keys) over garbage: the header check passes, llama.cpp cannot load it
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10, 5) + os.urandom(4096))
    verdict = check_runtime(bad, tmp_path / "cache", force=True)
    assert not verdict.ok and "could not load bad.gguf" in verdict.message and "\n" not in verdict.message


@pytest.mark.llm
def test_a_healthy_runtime_passes_and_its_verdict_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.backends import runtime_check
    from rag.backends.models import ensure_default_gguf
    from tests.helpers import MODELS_CACHE

    gguf = ensure_default_gguf(Settings(storage={"models_cache": MODELS_CACHE}), show_progress=False)
    cache = tmp_path / "cache"
    first = check_runtime(gguf, cache, n_threads=2)
    assert first.ok and not first.cached, first.message
    assert first.prefill_tokens == runtime_check.PREFILL_TOKENS and (first.prefill_tok_s or 0) > 1
    second = check_runtime(gguf, cache, n_threads=2)
    assert second.ok and second.cached and second.message == first.message
    # another build of llama-cpp-python (its libraries changed) is checked again
    monkeypatch.setattr(runtime_check, "runtime_fingerprint", lambda: "another-build")
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, **kw):  # type: ignore[no-untyped-def]
        calls.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(runtime_check.subprocess, "run", spy)
    third = check_runtime(gguf, cache, n_threads=2)
    assert third.ok and not third.cached and len(calls) == 1


def test_the_test_suite_stops_with_the_sentence_when_the_runtime_crashes(tmp_path: Path) -> None:
    """conftest runs the check before any test: a SIGILL build stops pytest with one sentence, no test runs."""
    fake = _fake_llama(tmp_path, "os.kill(os.getpid(), signal.SIGILL)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_terms.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "illegal instruction (SIGILL)" in out and "make rebuild-llama" in out, out
    assert " passed" not in out and "Fatal Python error" not in out


AMX_MNEMONICS = re.compile(r"\t(tilezero|tileloadd|tileloaddt1|tilestored|tilerelease|ldtilecfg|sttilecfg|"
                           r"tdpbssd|tdpbsud|tdpbusd|tdpbuud|tdpbf16ps|tdpfp16ps)\b")


def test_the_installed_llama_cpp_has_no_amx_instructions() -> None:
    """What crashed the AMX machine was AMX code in libggml-cpu: the installed build must contain none."""
    import importlib.util
    import shutil

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    spec = importlib.util.find_spec("llama_cpp")
    assert spec is not None and spec.submodule_search_locations
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("libggml-cpu*.so"))
    assert libs, "no libggml-cpu in the installed llama_cpp"
    for lib in libs:
        asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        assert "vfmadd" in asm  # the disassembly is real (FMA kernels are there)
        found = sorted(set(AMX_MNEMONICS.findall(asm)))
        assert not found, f"{lib.name} contains AMX instructions {found}: rebuild with `make rebuild-llama`"
    record = llama_build.installed_record(Path(sys.executable))
    if record is not None:  # installed by `make install`: the recorded flags switch AMX off
        args = list(record["cmake_args"])  # type: ignore[call-overload]
        assert "-DGGML_AMX_INT8=OFF" in args
        assert "-DGGML_NATIVE=OFF" in args or any("-mno-amx-int8" in a for a in args)
