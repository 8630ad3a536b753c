"""Cold ingest of the handbooks, old engine vs new, in one run, with the gold and holdout retrieval metrics of
the index each one builds.

    .venv/bin/python -m bench.ingest_variants                       # old, batch16, new-fp32, new
    .venv/bin/python -m bench.ingest_variants old,new --json out.json

Engines (``bench.common.ENGINES``, each passed to the ingest as its ``embed`` step; the embedder is loaded and
warm before the clock starts; "cold" = an empty index):

* ``old``: the engine when the scale issue was filed: a model pass over each whole chunk plus one per
  sentence window, embedding batch 64, float32;
* ``batch16``: the same with embedding batch 16 (the previous session's change);
* ``new-fp32``: chunk vectors from the windows' mean and a 32-word lead (ingest.pipeline.embed_and_add), batch
  16, float32;
* ``new``: the shipped default: ``new-fp32`` with ``embed.precision=auto`` (bfloat16 on a CPU with native
  bfloat16).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rag.settings import apply_offline_env

apply_offline_env()
from bench.common import ENGINES, ROOT, cold_ingest  # noqa: E402
from evals.gold import load_gold  # noqa: E402
from evals.retrieval import evaluate_retrieval  # noqa: E402
from rag.retrieval import HybridRetriever  # noqa: E402


def run(engine: str) -> dict[str, Any]:
    with cold_ingest(engine, ROOT / "corpus") as built:
        summary, cold = built.summary, built.cold_s
        retriever = HybridRetriever.from_settings(built.index)
        out: dict[str, Any] = {"engine": engine, "precision": built.embedder.precision,
                               "chunks": summary.chunks_total, "cold_s": round(cold, 2),
                               "chunks_per_s": round(summary.chunks_total / cold, 1),
                               "unchanged_s": round(built.unchanged_s, 4)}
        for name, path in (("gold", ROOT / "evals" / "gold.jsonl"), ("holdout", ROOT / "evals" / "holdout.jsonl")):
            m = evaluate_retrieval(retriever, load_gold(path), modes=("hybrid",))["modes"]["hybrid"]
            out[f"{name}_hit@5"], out[f"{name}_mrr@5"] = m["hit@5"], m["mrr@5"]
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engines", nargs="?", default=",".join(ENGINES))
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    rows = []
    for engine in args.engines.split(","):
        rows.append(run(engine))
        print(json.dumps(rows[-1]), flush=True)
    old = next((r["cold_s"] for r in rows if r["engine"] == "old"), None)
    print("\n| engine | precision | cold ingest s | chunks/s | vs old | unchanged s | gold hit@5 / MRR@5 | "
          "holdout hit@5 / MRR@5 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{old / r['cold_s']:.2f}x" if old else ""
        print(f"| {r['engine']} | {r['precision']} | {r['cold_s']} | {r['chunks_per_s']} | {ratio} | {r['unchanged_s']} | "
              f"{r['gold_hit@5']} / {r['gold_mrr@5']} | {r['holdout_hit@5']} / {r['holdout_mrr@5']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
