"""CI gate: hybrid retrieval must not fall behind the committed baseline (evals/baseline.json).

    python -m evals.check_baseline                   # evaluate retrieval on the full gold set now, compare
    python -m evals.check_baseline --current r.json  # compare a saved `studybot eval --retrieval-only --json`
    python -m evals.check_baseline --update          # re-measure and rewrite the baseline (intended changes)

Exit 0 when hybrid hit@5 and MRR@5 are each at most ``tolerance`` (0.02) below the baseline, 1 when one
dropped further, 2 on an error (no index, unreadable file). The index is the one under STUDYBOT_HOME: ingest
the bundled corpus first (`studybot ingest`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BASELINE_PATH = Path(__file__).resolve().parent / "baseline.json"
# How far hybrid hit@5 or MRR@5 may drop below the baseline (the baseline's own "tolerance" wins): set by hand with
# the first eval code (2026-11-25). On the gold set's 80 answerable questions one question leaving the top 5
# moves hit@5 by 0.0125: the gate lets one such loss pass and fails on two.
DEFAULT_TOLERANCE = 0.02
GATED_MODE = "hybrid"
GATED_METRICS = ("hit@5", "mrr@5")


def load_baseline(path: Path = BASELINE_PATH) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def modes_of(data: dict[str, Any]) -> dict[str, Any]:
    """The per-mode metrics of a baseline, a `--retrieval-only --json` output or an `evaluate_retrieval` result."""
    if "modes" in data and isinstance(data["modes"], dict):
        return data["modes"]
    if any(isinstance(v, dict) and "hit@5" in v for v in data.values()):
        return data
    if "metrics" in data and "hit@5" in data["metrics"]:  # a full-suite results.json: hybrid only
        return {GATED_MODE: data["metrics"]}
    raise ValueError("no retrieval metrics found (expected per-mode hit@5 / mrr@5)")


def check(baseline: dict[str, Any], current: dict[str, Any], tolerance: float | None = None) -> list[str]:
    """Regressions beyond the tolerance, one line each (empty: the gate passes)."""
    tol = float(baseline.get("tolerance", DEFAULT_TOLERANCE) if tolerance is None else tolerance)
    gated = baseline.get("gated") or {}
    mode = gated.get("mode", GATED_MODE)
    keys = gated.get("metrics", list(GATED_METRICS))
    base = modes_of(baseline).get(mode) or {}
    cur = modes_of(current).get(mode)
    if cur is None:
        return [f"no {mode} metrics in the current run"]
    failures = []
    if base.get("n") and cur.get("n") and base["n"] != cur["n"]:
        failures.append(f"{mode}: the current run has {cur['n']} questions, the baseline {base['n']}")
    for k in keys:
        b, c = base.get(k), cur.get(k)
        if not isinstance(b, int | float) or not isinstance(c, int | float):
            failures.append(f"{mode} {k}: missing (baseline {b}, current {c})")
        elif b - c > tol + 1e-9:
            failures.append(f"{mode} {k} dropped from {b:.4f} to {c:.4f} ({c - b:+.4f}, tolerance {tol})")
    return failures


def format_check(baseline: dict[str, Any], current: dict[str, Any]) -> str:
    lines = ["| mode | metric | baseline | current | delta |", "|---|---|---|---|---|"]
    bm, cm = modes_of(baseline), modes_of(current)
    for mode in bm:
        if mode not in cm:
            continue
        for k in ("hit@1", "hit@3", "hit@5", "mrr@5"):
            b, c = bm[mode].get(k), cm[mode].get(k)
            if isinstance(b, int | float) and isinstance(c, int | float):
                lines.append(f"| {mode} | {k} | {b:.4f} | {c:.4f} | {c - b:+.4f} |")
    return "\n".join(lines)


def measure(modes: Sequence[str] = ("dense", "bm25", "hybrid")) -> dict[str, Any]:
    """Retrieval metrics on the full gold set with the index under the current settings."""
    from evals.gold import load_gold
    from evals.retrieval import evaluate_retrieval
    from rag.backends.embeddings import shared_embedder
    from rag.backends.store import Index
    from rag.retrieval import HybridRetriever
    from rag.settings import Settings, apply_offline_env

    apply_offline_env()
    settings = Settings()
    retriever = HybridRetriever.from_settings(Index(settings, shared_embedder(settings)))
    return evaluate_retrieval(retriever, load_gold(), modes=tuple(modes))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evals.check_baseline", description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=str(BASELINE_PATH))
    p.add_argument("--current", help="a saved `studybot eval --retrieval-only --json` (default: measure now)")
    p.add_argument("--tolerance", type=float, default=None, help="default: the baseline's (0.02)")
    p.add_argument("--update", action="store_true", help="measure and rewrite the baseline's metrics")
    args = p.parse_args(argv)
    try:
        baseline = load_baseline(Path(args.baseline))
        if args.current:
            current = json.loads(Path(args.current).read_text(encoding="utf-8"))
        else:
            current = measure(("dense", "bm25", "hybrid") if args.update else (GATED_MODE,))
        if args.update:
            baseline["modes"] = modes_of(current)
            Path(args.baseline).write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8")
            print(f"updated {args.baseline}")
            return 0
        failures = check(baseline, current, args.tolerance)
    except Exception as exc:  # the gate must say why it could not run
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(format_check(baseline, current))
    for f in failures:
        print(f"FAIL {f}")
    print("baseline check: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
