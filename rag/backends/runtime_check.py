"""The llama.cpp runtime check: load the model in a child process, prefill a few hundred tokens, generate one.

A llama.cpp build that uses an instruction the CPU cannot run does not raise: it kills the process (SIGILL)
on the first real prefill, taking the CLI, the web server or the test run with it. So before the model is
loaded in process, a child process does the same work once; a crash becomes one sentence naming the cause
and the fix. A passing verdict is cached per (llama-cpp-python build, model, GPU layers) in
``<models_dir>/runtime-checks.json``: a rebuilt runtime or another model is checked again, the same one is not.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.errors import ModelError

CACHE_FILE = "runtime-checks.json"
# What a user runs to rebuild llama-cpp-python portably (the fix a failed check names); the build script is
# tools/llama_build.py, outside this package (rag never imports tools).
REBUILD_COMMAND = "make rebuild-llama (or: .venv/bin/python -m tools.llama_build install --force)"
# 320 tokens: long enough that llama.cpp runs its batched matrix kernels (the AMX crash came on any prompt
# over a few dozen tokens), short enough that the check takes a few seconds at our slowest 41 tok/s prefill.
PREFILL_TOKENS = 320
# Seconds the child check may take before it counts as hung: set by hand, far above the load + 320-token prefill
# (a few seconds at 41 tok/s; about a minute on this 2-core machine under load 10).
TIMEOUT_S = 300.0
_TEXT = (
    "Regularization adds a penalty on the size of a model's weights to the training loss. L1 regularization "
    "pushes many weights to exactly zero, which selects features; L2 regularization shrinks all weights "
    "smoothly and spreads the penalty. Cross-validation picks the strength of the penalty: too little and the "
    "model overfits the training data, too much and it underfits. Gradient descent minimises the penalised "
    "loss one mini-batch at a time, with a learning rate that may decay during training. "
)


class RuntimeCheckError(ModelError):
    """The llama.cpp runtime crashed or failed on a real load + prefill (the message says why and what to do)."""


@dataclass(frozen=True)
class RuntimeVerdict:
    ok: bool
    message: str  # one sentence: what ran (ok) or what went wrong and the fix
    seconds: float = 0.0
    cached: bool = False
    prefill_tokens: int = 0
    prefill_tok_s: float | None = None


# --- identities -------------------------------------------------------------------------------------
def runtime_fingerprint() -> str:
    """The installed llama-cpp-python build: its version and its native libraries (name, size, mtime)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeCheckError("llama-cpp-python is not installed: run `make install` (or `make run`).")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    parts = [version]
    for lib in sorted(pkg.rglob("*.so*")) + sorted(pkg.rglob("*.dylib")) + sorted(pkg.rglob("*.dll")):
        st = lib.stat()
        parts.append(f"{lib.relative_to(pkg)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def model_identity(path: Path) -> str:
    st = Path(path).stat()
    return f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _cache_key(model: Path, n_gpu_layers: int) -> str:
    return hashlib.sha256(f"{runtime_fingerprint()}|{model_identity(model)}|{n_gpu_layers}".encode()).hexdigest()[:24]


def _read_cache(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, verdict: RuntimeVerdict) -> None:
    data = _read_cache(path)
    data[key] = {**asdict(verdict), "checked_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# --- the check --------------------------------------------------------------------------------------
def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def crash_message(signum: int, model: Path) -> str:
    """The one sentence for a child killed by ``signum`` while loading ``model`` and prefilling."""
    name = _signal_name(signum)
    if signum == signal.SIGILL:
        return (f"The llama.cpp runtime crashed with an illegal instruction (SIGILL) on a {PREFILL_TOKENS}-token "
                "prefill: llama-cpp-python was compiled for CPU features this machine cannot run; rebuild it "
                f"portably with `{REBUILD_COMMAND}`.")
    if signum == signal.SIGKILL:
        return (f"The llama.cpp runtime was killed (SIGKILL) while loading {model.name}, most likely for lack of "
                "memory: close other programs or use a smaller model (STUDYBOT_LLM_MODEL).")
    return (f"The llama.cpp runtime crashed ({name}) while loading {model.name} and running a {PREFILL_TOKENS}-token "
            f"prefill: rebuild llama-cpp-python with `{REBUILD_COMMAND}`, or check the model with `studybot doctor`.")


def child_command(model: Path, n_threads: int, n_gpu_layers: int) -> list[str]:
    return [sys.executable, "-m", "rag.backends.runtime_check", "--model", str(model), "--threads", str(n_threads),
            "--gpu-layers", str(n_gpu_layers)]


def check_runtime(
    model: Path,
    cache_dir: Path,
    *,
    n_threads: int = 2,
    n_gpu_layers: int = 0,
    force: bool = False,
    command: list[str] | None = None,
    timeout: float = TIMEOUT_S,
) -> RuntimeVerdict:
    """Run the check in a child process (or return the cached passing verdict for this build and model).

    ``command`` replaces the child (tests; a custom runtime); its verdicts are not cached.
    """
    model = Path(model)
    cache = Path(cache_dir) / CACHE_FILE
    key = None if command else _cache_key(model, n_gpu_layers)
    if key and not force:
        hit = _read_cache(cache).get(key)
        if hit and hit.get("ok"):
            return RuntimeVerdict(True, str(hit.get("message", "")), float(str(hit.get("seconds", 0.0))), True,
                                  int(str(hit.get("prefill_tokens", 0))),
                                  float(str(hit["prefill_tok_s"])) if hit.get("prefill_tok_s") else None)
    cmd = command or child_command(model, n_threads, n_gpu_layers)
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds rag/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return RuntimeVerdict(False, f"The llama.cpp runtime check did not finish in {timeout:.0f} s (load "
                              f"{model.name}, {PREFILL_TOKENS}-token prefill): the machine may be overloaded; "
                              "run `studybot doctor` again when it is idle.", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if proc.returncode < 0:
        return RuntimeVerdict(False, crash_message(-proc.returncode, model), seconds)
    report: dict[str, object] = {}
    for line in reversed(proc.stdout.splitlines()):
        with contextlib.suppress(ValueError):
            report = json.loads(line)
            break
    if proc.returncode != 0 or not report.get("ok"):
        detail = str(report.get("error") or "").strip()
        if not detail:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            detail = (f"The llama.cpp runtime check failed (exit {proc.returncode}: {tail}); rebuild "
                      f"llama-cpp-python with `{REBUILD_COMMAND}`.")
        return RuntimeVerdict(False, detail, seconds)
    n = int(str(report.get("prefill_tokens", 0)))
    rate = float(str(report["prefill_tok_s"])) if report.get("prefill_tok_s") else None
    rate_txt = f" at {rate:.0f} tok/s" if rate else ""
    verdict = RuntimeVerdict(True, f"loaded {model.name}, prefilled {n} tokens{rate_txt} and generated 1 token "
                             f"in a child process ({seconds:.1f} s)", seconds, False, n, rate)
    if key:
        _write_cache(cache, key, verdict)
    return verdict


def ensure_runtime(model: Path, cache_dir: Path, *, n_threads: int = 2, n_gpu_layers: int = 0) -> RuntimeVerdict:
    """:func:`check_runtime` (cached), raising :class:`RuntimeCheckError` with its sentence when it fails."""
    verdict = check_runtime(model, cache_dir, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
    if not verdict.ok:
        raise RuntimeCheckError(verdict.message)
    return verdict


# --- the child (its llama.cpp work is rag.backends.llama_cpp.smoke) -------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="(internal) the child process of the llama.cpp runtime check")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gpu-layers", type=int, default=0)
    ns = p.parse_args(argv)
    from rag.backends.llama_cpp import smoke

    report = smoke(ns.model, ns.threads, ns.gpu_layers, PREFILL_TOKENS, _TEXT)
    print(json.dumps(report), flush=True)
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
