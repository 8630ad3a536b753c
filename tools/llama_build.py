"""How llama-cpp-python is compiled here: never with AMX, never ``-march=native`` for an image, a wheel cache keyed
by the flags, and the rebuild command.

llama.cpp's default build (``GGML_NATIVE=ON``, i.e. ``-march=native``) compiled AMX kernels on one of our
machines whose CPU advertises AMX: SIGILL (``tilezero`` in libggml-cpu) on the first prefill. AMX is the one
x86 feature Linux hands out per process (its tile state needs an ``arch_prctl`` permission request and the
hypervisor's support), so "advertised" does not mean "usable". llama.cpp's runtime CPU dispatch
(``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``) does not avoid it: its variant score reads the CPUID bit alone
(``ggml-cpu/arch/x86/cpu-feats.cpp``: ``if (!is.AMX_INT8()) return 0``) and would pick the AMX variant there.

* ``auto`` (``make install``): native minus AMX. ``GGML_NATIVE=ON`` with ``-mno-amx-tile -mno-amx-int8
  -mno-amx-bf16`` (explicit ``-mno-`` flags win over ``-march=native`` in GCC and Clang whatever their order;
  ggml's AMX code is compiled only under ``__AMX_INT8__``). On our AVX2 machine it runs as fast as native and
  as the x86-64-v3 build below (``bench/llama_build.py``, README); on a newer CPU it keeps what that CPU has
  beyond x86-64-v3 (AVX-512, VNNI on the AMX machine), which a fixed baseline gives up. The build key
  includes this CPU's identity, so a wheel cached for one CPU is never installed on another.
* ``portable`` (the Docker image, ``STUDYBOT_LLAMA_CPU=portable``): ``GGML_NATIVE=OFF`` and the x86-64-v3
  baseline (AVX2, FMA, F16C, BMI2), for an image that runs on CPUs other than the one that built it.

pip's wheel cache does not key on ``CMAKE_ARGS``, so the wheel is built with ``--no-cache-dir`` into a cache
folder of our own named by a hash of (version, flags, CPU for native builds): a changed flag builds a new
wheel, the same flags reuse the old one. The installed build is recorded in ``<venv>/.llama-build.json``.

Standard library only, and outside the ``rag`` package (which never imports it): the Makefile runs
``python -m tools.llama_build`` before anything else is installed. The fix the runtime check names,
``make rebuild-llama`` (or ``python -m tools.llama_build install --force``), is spelled in
``rag/backends/runtime_check.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

LLAMA_VERSION = "0.3.36"  # keep equal to the llama-cpp-python pin in pyproject.toml (a test checks)

NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # all three: -mno-amx-tile alone leaves the others on
NO_AMX = ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
NATIVE_NO_AMX = ["-DGGML_NATIVE=ON", *NO_AMX, f"-DCMAKE_C_FLAGS={NO_AMX_FLAGS}", f"-DCMAKE_CXX_FLAGS={NO_AMX_FLAGS}"]
# x86-64-v3: what every machine we run on has (llama.cpp's own non-native defaults, spelled out).
PORTABLE = ["-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON",
            "-DGGML_F16C=ON", "-DGGML_BMI2=ON", *NO_AMX]
BUILD_RECORD = ".llama-build.json"


def cpu_identity(cpuinfo: str | None = None) -> str:
    """The first CPU's model name and feature flags from /proc/cpuinfo (what ``-march=native`` compiles for)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return platform.processor() or platform.machine()
    model, flags = "", ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "CPU part") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
        if model and flags:
            break
    return f"{model}|{flags}"


def cmake_args(cpu: str = "auto", machine: str | None = None, extra: str = "") -> list[str]:
    """The CMake arguments for a llama.cpp build: ``cpu`` is ``auto`` (this machine, minus AMX) or ``portable``
    (x86-64-v3); ``extra`` is appended verbatim (e.g. ``-DGGML_CUDA=on`` for a GPU build)."""
    if cpu not in ("auto", "portable"):
        raise ValueError(f"unknown CPU target {cpu!r}: use auto or portable")
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        args = list(NATIVE_NO_AMX if cpu == "auto" else PORTABLE)
    else:  # ARM & co: no AMX; an image for other CPUs uses ggml's generic flags
        args = ["-DGGML_NATIVE=ON"] if cpu == "auto" else ["-DGGML_NATIVE=OFF"]
    if extra.strip():
        args += shlex.split(extra)
    return args


def build_key(args: list[str], version: str = LLAMA_VERSION, cpu: str | None = None) -> str:
    """The wheel's cache key: version and flags, and for a native build the CPU it is native to."""
    native = "-DGGML_NATIVE=ON" in args
    ident = (cpu if cpu is not None else cpu_identity()) if native else ""
    return hashlib.sha256(json.dumps([version, args, ident]).encode()).hexdigest()[:16]


def wheel_cache() -> Path:
    base = os.environ.get("STUDYBOT_WHEEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "studybot", "llama-wheels")
    return Path(base)


def selected_args() -> list[str]:
    """The arguments for this machine and the environment (``STUDYBOT_LLAMA_CPU``, ``STUDYBOT_LLAMA_CMAKE_EXTRA``)."""
    return cmake_args(os.environ.get("STUDYBOT_LLAMA_CPU", "auto"),
                      extra=os.environ.get("STUDYBOT_LLAMA_CMAKE_EXTRA", ""))


def installed_record(python: Path) -> dict[str, object] | None:
    """The build recorded in the venv of ``python`` (None when llama-cpp-python was installed otherwise)."""
    path = Path(python).parent.parent / BUILD_RECORD
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env)


def install(python: Path, args: list[str], force: bool = False) -> Path:
    """Build (once per flag set) and install llama-cpp-python into the venv of ``python``; returns the wheel."""
    key = build_key(args)
    record = installed_record(python)
    folder = wheel_cache() / key
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if not force and wheels and record and record.get("key") == key:
        print(f"llama-cpp-python {LLAMA_VERSION} already built with these flags ({key})", file=sys.stderr)
        return wheels[-1]
    if force or not wheels:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{key}-") as tmp:
            env = {**os.environ, "CMAKE_ARGS": shlex.join(args), "FORCE_CMAKE": "1"}
            print(f"building llama-cpp-python {LLAMA_VERSION} with CMAKE_ARGS={shlex.join(args)} "
                  "(about 7 minutes on 2 cores)", file=sys.stderr, flush=True)
            _run([str(python), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary",
                  "llama-cpp-python", "--wheel-dir", tmp, f"llama-cpp-python=={LLAMA_VERSION}"], env=env)
            built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
            if not built:
                raise SystemExit("pip built no llama-cpp-python wheel; see the output above")
            folder.mkdir(exist_ok=True)
            for old in folder.glob("*.whl"):
                old.unlink()
            os.replace(built[-1], folder / built[-1].name)  # atomic: a killed build leaves no half wheel
        wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    wheel = wheels[-1]
    _run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-cache-dir", str(wheel)])
    record_path = Path(python).parent.parent / BUILD_RECORD
    record_path.write_text(json.dumps({"version": LLAMA_VERSION, "key": key, "cmake_args": args,
                                       "cpu": cpu_identity().split("|")[0], "wheel": str(wheel)}, indent=1) + "\n")
    return wheel


def server_path(args: list[str]) -> Path:
    """Where :func:`build_server` puts llama.cpp's ``llama-server`` for these flags."""
    return wheel_cache().parent / "llama-server" / build_key(args) / "llama-server"


def build_server(python: Path, args: list[str], force: bool = False) -> Path:
    """llama.cpp's own OpenAI-compatible server (``llama-server``: parallel slots, continuous batching), built
    from the llama.cpp that llama-cpp-python ``LLAMA_VERSION`` vendors, with the same flags (no AMX). For
    ``bench/load.py``'s team-scale arm and for serving a team; the app never needs it. The source comes from
    PyPI (``pip download``, an install-time step); about 6 minutes on 2 cores, once per flag set."""
    target = server_path(args)
    if target.is_file() and not force:
        print(f"llama-server already built with these flags: {target}", file=sys.stderr)
        return target
    import tarfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".src-") as tmp:
        _run([str(python), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", tmp,
              f"llama-cpp-python=={LLAMA_VERSION}"])
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = Path(tmp) / "build"
        _run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
              "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
              "-DLLAMA_BUILD_SERVER=ON", *args])
        _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)])
        built = next(build.rglob("bin/llama-server"))
        os.replace(built, target)  # atomic: a killed build leaves no half binary
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.llama_build", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("args", help="print the CMake arguments for this machine")
    sub.add_parser("key", help="print the build key (hash of version + arguments)")
    s = sub.add_parser("install", help="build (once per flag set) and install llama-cpp-python")
    s.add_argument("--python", default=sys.executable, help="the venv's python (default: this one)")
    s.add_argument("--force", action="store_true", help="build again even if a wheel with these flags exists")
    s = sub.add_parser("server", help="build llama.cpp's llama-server with the same flags; print its path")
    s.add_argument("--python", default=sys.executable, help="the python whose pip downloads the source")
    s.add_argument("--force", action="store_true", help="build again even if one with these flags exists")
    ns = p.parse_args(argv)
    args = selected_args()
    if ns.cmd == "args":
        print(shlex.join(args))
    elif ns.cmd == "key":
        print(build_key(args))
    elif ns.cmd == "server":
        print(build_server(Path(ns.python), args, force=ns.force))
    else:
        install(Path(ns.python), args, force=ns.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
