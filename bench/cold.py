"""Where the seconds of a fresh `studybot ask` go: each step of a cold process, timed in a new process.

Usage: python -m bench.cold [--question Q] [--runs N] [--json]

Each run starts a new Python process that does what ``studybot ask`` does, one step at a time, and times it:
imports, settings, the embedder, the index (Chroma), the retriever (keyword index), the first retrieval, the
model load (the GGUF memory-mapped; the runtime check is cached per build), the answer path's fixed prompt
prefix (loaded from the state a previous process saved, or evaluated), then the answer itself (retrieval,
ranking, quotes, explanation). Then ``studybot ask --json`` itself is timed end to end, for the wall time a
student waits. Nothing else should run meanwhile (two model jobs slow each other several-fold).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = r"""
import json, sys, time
t0 = time.perf_counter(); marks = {}
def mark(name):
    marks[name] = round(time.perf_counter() - t0, 3)
import ui.cli  # the CLI's own imports
mark("imports")
from ui.service import StudyService
svc = StudyService(); mark("settings")
svc.embedder.embed(["warm"]); mark("embedder")
svc.index; mark("index")
svc.retriever.retrieve("warm up", 1); mark("retriever + first retrieval")
svc.llm.load(); mark("model load")
svc.warm_up(); mark("fixed prompt prefix")
answer = svc.ask(sys.argv[1]); mark("answer")
print(json.dumps({"marks": marks, "timings": answer.timings, "refused": answer.refused}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--question", default="What is the bias-variance trade-off?")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    steps: list[dict[str, float]] = []
    walls: list[float] = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", STEPS, args.question], capture_output=True, text=True,
                             cwd=ROOT, check=True)
        data = json.loads(out.stdout.strip().splitlines()[-1])
        steps.append(data["marks"])
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ui.cli", "ask", "--json", args.question], capture_output=True,
                       cwd=ROOT, check=True)
        walls.append(time.perf_counter() - t)
    names = list(steps[0])
    rows = []
    prev = 0.0
    for name in names:
        at = statistics.median(s[name] for s in steps)
        rows.append({"step": name, "seconds": round(at - prev, 3), "cumulative": round(at, 3)})
        prev = at
    result = {"steps": rows, "studybot_ask_wall_s": round(statistics.median(walls), 2), "runs": args.runs}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print("| step | seconds | cumulative |\n|---|---|---|")
        for r in rows:
            print(f"| {r['step']} | {r['seconds']} | {r['cumulative']} |")
        print(f"\n`studybot ask --json` wall time p50: {result['studybot_ask_wall_s']} s ({args.runs} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
