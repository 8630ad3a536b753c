"""Prefill and decode speed of llama-cpp-python builds, on this machine, in one run (ratios, not absolutes).

Usage: python -m bench.llama_build NAME=WHEEL [NAME=WHEEL ...] [--rounds 12] [--prefill 256] [--decode 32] [--json]

Each wheel is unpacked into a temp folder and loaded once in its own worker process; the workers then take
turns, one measurement at a time (A B C, C B A, ...), while the others wait idle on a pipe, so the builds never
compete for the cores and the host's drift (it is large on our shared machines) hits all of them alike. A
round is one prefill of ``--prefill`` tokens into an empty KV cache and ``--decode`` greedy tokens, per build.
The first build named is the reference: the ratios are medians of per-round ratios (adjacent in time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rag.backends.models import ensure_default_gguf
from rag.settings import Settings

WORKER = r"""
import json, sys, time
import llama_cpp
model, n_prefill, n_decode, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads,
                      verbose=False)
text = ("Bagging trains models on bootstrap samples and averages them, which reduces variance; boosting fits "
        "models one after another on the errors of the previous ones, which reduces bias. ")
tokens = llm.tokenize(text.encode(), add_bos=True)
while len(tokens) < n_prefill:
    tokens += llm.tokenize(text.encode(), add_bos=False)
tokens = tokens[:n_prefill]
print(json.dumps({"ready": True, "library": llama_cpp.__file__}), flush=True)
for _ in sys.stdin:
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([llm.sample(temp=0.0)])
    decode = time.perf_counter() - t0
    print(json.dumps({"prefill_tok_s": n_prefill / prefill, "decode_tok_s": n_decode / decode}), flush=True)
"""


def unpack(wheel: Path, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-cache-dir", "--target",
                    str(into), str(wheel)], check=True)
    return into


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("builds", nargs="+", metavar="NAME=WHEEL")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--prefill", type=int, default=256)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--threads", type=int, default=Settings().llm.threads)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    gguf = ensure_default_gguf(Settings(), show_progress=False)
    builds = [tuple(b.split("=", 1)) for b in a.builds]
    names = [name for name, _ in builds]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="llama-bench-") as tmp:
        workers = {}
        for name, wheel in builds:
            folder = unpack(Path(wheel), Path(tmp) / name)
            proc = subprocess.Popen([sys.executable, "-c", WORKER, str(gguf), str(a.prefill), str(a.decode),
                                     str(a.threads)], env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["library"].startswith(str(folder)), ready["library"]
            workers[name] = proc
        try:
            for r in range(a.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    proc = workers[name]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                    row = json.loads(proc.stdout.readline())
                    rows[name].append(row)
                    print(f"round {r + 1} {name}: prefill {row['prefill_tok_s']:.1f} tok/s, decode "
                          f"{row['decode_tok_s']:.1f} tok/s", file=sys.stderr, flush=True)
        finally:
            for proc in workers.values():
                proc.kill()
    ref = names[0]
    summary = {}
    for name in names:
        own = rows[name]
        summary[name] = {
            "prefill_tok_s": round(statistics.median(x["prefill_tok_s"] for x in own), 1),
            "decode_tok_s": round(statistics.median(x["decode_tok_s"] for x in own), 1),
            "prefill_ratio": round(statistics.median(x["prefill_tok_s"] / y["prefill_tok_s"]
                                                     for x, y in zip(own, rows[ref], strict=True)), 3),
            "decode_ratio": round(statistics.median(x["decode_tok_s"] / y["decode_tok_s"]
                                                    for x, y in zip(own, rows[ref], strict=True)), 3),
        }
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"| build | prefill tok/s (median of {a.rounds}) | decode tok/s | prefill ÷ {ref} | decode ÷ {ref} |")
        print("|---|---|---|---|---|")
        for name, row in summary.items():
            print(f"| {name} | {row['prefill_tok_s']} | {row['decode_tok_s']} | {row['prefill_ratio']} | "
                  f"{row['decode_ratio']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
