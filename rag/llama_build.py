"""How llama-cpp-python is compiled here: portable CPU flags, a wheel cache keyed by them, the rebuild command.

llama.cpp's default build (``GGML_NATIVE=ON``, i.e. ``-march=native``) compiled AMX kernels on one of our
machines whose CPU advertises AMX but faults on it: SIGILL (``tilezero`` in libggml-cpu) on the first prefill.
llama.cpp's runtime CPU dispatch (``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``) does not avoid it: its
variant score reads the CPUID bit alone (``ggml-cpu/arch/x86/cpu-feats.cpp``: ``if (!is.AMX_INT8()) return 0``)
and would pick the AMX variant on that machine. So the build never uses ``-march=native`` and never AMX:

* ``auto`` (``make install``): ``GGML_NATIVE=OFF`` and the x86-64 features this machine's kernel reports in
  ``/proc/cpuinfo`` (AVX2/FMA/F16C/BMI2, AVX-VNNI, the AVX-512 family), AMX always off;
* ``portable`` (the Docker image, ``STUDYBOT_LLAMA_CPU=portable``): the x86-64-v3 baseline only (AVX2, FMA,
  F16C, BMI2), for an image that runs on CPUs other than the one that built it.

pip's wheel cache does not key on ``CMAKE_ARGS``, so the wheel is built with ``--no-cache-dir`` into a cache
folder of our own named by a hash of (version, flags): a changed flag builds a new wheel, the same flags reuse
the old one. The installed build is recorded in ``<venv>/.llama-build.json``.

Standard library only: the Makefile runs ``python -m rag.llama_build`` before anything else is installed.
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
PACKAGE = f"llama-cpp-python[server]=={LLAMA_VERSION}"

# x86-64-v3: what every machine we run on has (llama.cpp's own non-native defaults).
BASELINE = ["-DGGML_NATIVE=OFF", "-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON",
            "-DGGML_F16C=ON", "-DGGML_BMI2=ON"]
NO_AMX = ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
# cpuinfo flags (all of them needed) -> the ggml option they allow. AVX512 is ggml's F+CD+VL+DQ+BW bundle.
OPTIONAL = [
    (("avx_vnni",), "GGML_AVX_VNNI"),
    (("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), "GGML_AVX512"),
    (("avx512vbmi",), "GGML_AVX512_VBMI"),
    (("avx512_vnni",), "GGML_AVX512_VNNI"),
    (("avx512_bf16",), "GGML_AVX512_BF16"),
]
BASELINE_FLAGS = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
BUILD_RECORD = ".llama-build.json"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags the kernel reports (first CPU of /proc/cpuinfo); empty where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cmake_args(cpu: str = "auto", flags: set[str] | None = None, machine: str | None = None,
               extra: str = "") -> list[str]:
    """The CMake arguments for a llama.cpp CPU build: ``cpu`` is ``auto`` or ``portable``; ``extra`` is
    appended verbatim (e.g. ``-DGGML_CUDA=on`` for a GPU build)."""
    if cpu not in ("auto", "portable"):
        raise ValueError(f"unknown CPU target {cpu!r}: use auto or portable")
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        # ARM & co: -mcpu=native has not faulted anywhere; an image for other CPUs uses ggml's generic flags.
        args = ["-DGGML_NATIVE=ON"] if cpu == "auto" else ["-DGGML_NATIVE=OFF"]
    else:
        args = list(BASELINE)
        have = cpu_flags() if flags is None else flags
        if cpu == "auto" and have:
            missing = BASELINE_FLAGS - have
            if missing:  # an older CPU: drop what it lacks (llama.cpp still runs, more slowly)
                drop = {"avx2": "GGML_AVX2", "fma": "GGML_FMA", "f16c": "GGML_F16C", "bmi2": "GGML_BMI2",
                        "avx": "GGML_AVX", "sse4_2": "GGML_SSE42"}
                for flag in missing:
                    args = [a if not a.startswith(f"-D{drop[flag]}=") else f"-D{drop[flag]}=OFF" for a in args]
            for needs, option in OPTIONAL:
                if all(f in have for f in needs):
                    args.append(f"-D{option}=ON")
        args += NO_AMX
    if extra.strip():
        args += shlex.split(extra)
    return args


def build_key(args: list[str], version: str = LLAMA_VERSION) -> str:
    return hashlib.sha256(json.dumps([version, args]).encode()).hexdigest()[:16]


def wheel_cache() -> Path:
    base = os.environ.get("STUDYBOT_WHEEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "studybot", "llama-wheels")
    return Path(base)


def selected_args() -> list[str]:
    """The arguments for this machine and the environment (``STUDYBOT_LLAMA_CPU``, ``STUDYBOT_LLAMA_CMAKE_EXTRA``)."""
    return cmake_args(os.environ.get("STUDYBOT_LLAMA_CPU", "auto"),
                      extra=os.environ.get("STUDYBOT_LLAMA_CMAKE_EXTRA", ""))


def rebuild_command() -> str:
    """What a user runs to rebuild llama-cpp-python portably (the fix named by the runtime check)."""
    return "make rebuild-llama (or: .venv/bin/python -m rag.llama_build install --force)"


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
            env = {**os.environ, "CMAKE_ARGS": " ".join(args), "FORCE_CMAKE": "1"}
            print(f"building llama-cpp-python {LLAMA_VERSION} with CMAKE_ARGS={' '.join(args)} "
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
                                       "wheel": str(wheel)}, indent=1) + "\n")
    return wheel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.llama_build", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("args", help="print the CMake arguments for this machine")
    sub.add_parser("key", help="print the build key (hash of version + arguments)")
    s = sub.add_parser("install", help="build (once per flag set) and install llama-cpp-python")
    s.add_argument("--python", default=sys.executable, help="the venv's python (default: this one)")
    s.add_argument("--force", action="store_true", help="build again even if a wheel with these flags exists")
    ns = p.parse_args(argv)
    args = selected_args()
    if ns.cmd == "args":
        print(" ".join(args))
    elif ns.cmd == "key":
        print(build_key(args))
    else:
        install(Path(ns.python), args, force=ns.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
