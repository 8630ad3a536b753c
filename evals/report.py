"""Eval reports: Markdown tables, PNG charts (matplotlib, Agg) and run-to-run comparisons.

A run directory holds ``results.json`` (written by :mod:`evals.suite`); :func:`write_report` adds
``report.md`` and ``charts/metrics.png`` (every metric, this run next to the previous one) and
``charts/per_question.png`` (the distribution of each per-question score).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Metrics in [0, 1] where higher is better (charted); the rates are charted too (lower is better for two).
CHART_KEYS = (
    "hit@1", "hit@3", "hit@5", "mrr@5",
    "faithfulness", "answer_relevancy", "context_precision", "context_recall",
    "id_context_precision", "id_context_recall", "citation_precision",
    "refusal_rate", "wrong_refusal_rate",
)
LOWER_IS_BETTER = frozenset({"wrong_refusal_rate"})
PER_QUESTION_KEYS = (
    "faithfulness", "answer_relevancy", "context_precision", "context_recall",
    "id_context_precision", "id_context_recall", "citation_precision",
)


def load_results(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{nd}f}"
    return str(x)


# ------------------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------------------


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Metric deltas ``b - a`` for every metric either run has (None where one side has no value)."""
    ma, mb = a.get("metrics", {}), b.get("metrics", {})
    keys = [k for k in CHART_KEYS if k in ma or k in mb] + sorted((set(ma) | set(mb)) - set(CHART_KEYS))
    rows = {}
    for k in keys:
        va, vb = ma.get(k), mb.get(k)
        delta = round(vb - va, 4) if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows[k] = {"a": va, "b": vb, "delta": delta}
    ta, tb = a.get("timing", {}), b.get("timing", {})
    for k in ("seconds_per_item",):
        va, vb = ta.get(k), tb.get(k)
        rows[k] = {"a": va, "b": vb,
                   "delta": round(vb - va, 2) if isinstance(va, int | float) and isinstance(vb, int | float) else None}
    return {"a": a.get("run_dir") or a.get("run_id"), "b": b.get("run_dir") or b.get("run_id"),
            "n_items": [a.get("n_items"), b.get("n_items")], "metrics": rows}


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    return compare_results(load_results(a), load_results(b))


def format_compare(diff: dict[str, Any]) -> str:
    lines = [f"A: {diff['a']} ({diff['n_items'][0]} questions)", f"B: {diff['b']} ({diff['n_items'][1]} questions)",
             "", "| metric | A | B | B - A |", "|---|---|---|---|"]
    for k, r in diff["metrics"].items():
        d = r["delta"]
        sign = "" if d is None else ("+" if d > 0 else "")
        worse = d is not None and ((d > 0) if k in LOWER_IS_BETTER or k == "seconds_per_item" else (d < 0))
        flag = " ↓" if worse and abs(d) > 1e-9 else ""
        lines.append(f"| {k} | {_fmt(r['a'])} | {_fmt(r['b'])} | {sign}{_fmt(d)}{flag} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------------


def metrics_table(results: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    m, detail = results.get("metrics", {}), results.get("detail", {})
    pm = (previous or {}).get("metrics", {})
    head = "| metric | mean | n scored | n failed | n skipped | parse failures |"
    sep = "|---|---|---|---|---|---|"
    if previous is not None:
        head += " previous | Δ |"
        sep += "---|---|"
    lines = [head, sep]
    for k in CHART_KEYS:
        if k not in m:
            continue
        d = detail.get(k, {})
        if k in ("hit@1", "hit@3", "hit@5", "mrr@5"):
            n_scored = detail.get("retrieval", {}).get("n", "")
        elif k in ("refusal_rate",):
            n_scored = detail.get("refusals", {}).get("n_unanswerable", "")
        elif k in ("wrong_refusal_rate",):
            n_scored = detail.get("refusals", {}).get("n_answerable", "")
        else:
            n_scored = d.get("n_scored", "")
        row = (f"| {k} | {_fmt(m.get(k))} | {n_scored} | {d.get('n_failed', '')} | {d.get('n_skipped', '')} | "
               f"{d.get('parse_failures', '')} |")
        if previous is not None:
            pv, v = pm.get(k), m.get(k)
            delta = (v - pv) if isinstance(v, int | float) and isinstance(pv, int | float) else None
            row += f" {_fmt(pv)} | {'' if delta is None or delta <= 0 else '+'}{_fmt(delta)} |"
        lines.append(row)
    return "\n".join(lines)


def format_summary(results: dict[str, Any]) -> str:
    t = results.get("timing", {})
    lines = [metrics_table(results), "",
             f"{results.get('n_items')} questions; judge: {results.get('judge') or 'none'}; "
             f"seconds per item: {_fmt(t.get('seconds_per_item'), 1)} (answer {_fmt(t.get('answer_seconds_mean'), 1)}"
             f" + judge {_fmt(t.get('judge_seconds_mean'), 1)})"]
    errors = [(k, e) for k, d in results.get("detail", {}).items() for e in (d.get("errors") or [])]
    if errors:
        lines.append("judge failures:")
        lines += [f"  {k}: {e}" for k, e in errors[:10]]
    return "\n".join(lines)


def write_markdown(run_dir: Path, results: dict[str, Any], previous: dict[str, Any] | None,
                   charts: list[Path]) -> Path:
    t = results.get("timing", {})
    lines = [f"# studybot eval {results.get('run_id', run_dir.name)}", "",
             f"- questions: {results.get('n_items')}",
             f"- LLM metrics: {', '.join(results.get('llm_metrics') or []) or 'none'}",
             f"- judge: {results.get('judge') or 'none'}",
             f"- seconds per item: {_fmt(t.get('seconds_per_item'), 1)} "
             f"(answer {_fmt(t.get('answer_seconds_mean'), 1)}, judge {_fmt(t.get('judge_seconds_mean'), 1)})"]
    if previous is not None:
        lines.append(f"- compared with: {previous.get('run_id')} ({previous.get('n_items')} questions)")
    lines += ["", "## Metrics", "", metrics_table(results, previous), "",
              "`n failed` counts items where the metric could not be computed (judge error, invalid JSON after "
              "retries, or NaN); they are not in the mean. `parse failures` counts every judge reply that did "
              "not validate, including ones a retry recovered.", ""]
    calls = results.get("judge_calls") or {}
    if calls:
        lines += ["## Judge calls", "", "| metric | calls | parse failures | truncated | errors | seconds |",
                  "|---|---|---|---|---|---|"]
        for k, c in calls.items():
            lines.append(f"| {k} | {c.get('calls')} | {c.get('parse_failures')} | {c.get('truncated')} | "
                         f"{c.get('errors')} | {c.get('seconds')} |")
        lines.append("")
    for chart in charts:
        lines += [f"![{chart.stem}](charts/{chart.name})", ""]
    per_item = results.get("per_item") or []
    if per_item:
        keys = ["rank", "refused", *[k for k in PER_QUESTION_KEYS if any(k in r for r in per_item)]]
        lines += ["## Per question", "", "| id | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for r in per_item:
            lines.append(f"| {r['id']} | " + " | ".join(_fmt(r.get(k), 2) for k in keys) + " |")
        lines.append("")
    errors = [(k, e) for k, d in results.get("detail", {}).items() for e in (d.get("errors") or [])]
    if errors:
        lines += ["## Judge failures", ""] + [f"- {k}: {e}" for k, e in errors] + [""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------
# charts
# ------------------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_metrics(results: dict[str, Any], previous: dict[str, Any] | None, path: Path) -> Path:
    """Grouped bars: each metric of this run next to the previous run's."""
    plt = _plt()
    m = results.get("metrics", {})
    pm = (previous or {}).get("metrics", {})
    keys = [k for k in CHART_KEYS if isinstance(m.get(k), int | float) or isinstance(pm.get(k), int | float)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(keys) + 2), 4.2), dpi=110)
    width = 0.38 if previous is not None else 0.6
    xs = list(range(len(keys)))

    def vals(src: dict[str, Any]) -> list[float]:
        return [float(src[k]) if isinstance(src.get(k), int | float) else 0.0 for k in keys]

    if previous is not None:
        bars_prev = ax.bar([x - width / 2 for x in xs], vals(pm), width, label=f"previous ({previous.get('run_id')})",
                           color="#b0b7c3")
        bars = ax.bar([x + width / 2 for x in xs], vals(m), width, label=f"this run ({results.get('run_id')})",
                      color="#3b6fb6")
        ax.bar_label(bars_prev, fmt="%.2f", fontsize=6, padding=1, color="#555")
    else:
        bars = ax.bar(xs, vals(m), width, label=f"this run ({results.get('run_id')})", color="#3b6fb6")
    ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(xs, [k + (" ↓" if k in LOWER_IS_BETTER else "") for k in keys], rotation=35, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score (↓: lower is better)")
    ax.set_title(f"studybot eval: {results.get('n_items')} questions", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def chart_per_question(results: dict[str, Any], path: Path) -> Path | None:
    """Per-question score distributions (box + points) for every per-question metric with values."""
    per_item = results.get("per_item") or []
    data = {k: [float(r[k]) for r in per_item if isinstance(r.get(k), int | float)] for k in PER_QUESTION_KEYS}
    data = {k: v for k, v in data.items() if v}
    ranks = [r.get("rank") for r in per_item if r.get("answerable")]
    if not data and not ranks:
        return None
    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, gridspec_kw={"width_ratios": [3, 1.2]})
    if data:
        keys = list(data)
        ax.boxplot([data[k] for k in keys], widths=0.5, showfliers=False)
        for i, k in enumerate(keys, start=1):
            n = len(data[k])
            jitter = [i + (j - (n - 1) / 2) * (0.3 / max(n, 1)) for j in range(n)]
            ax.scatter(jitter, data[k], s=10, alpha=0.6, color="#3b6fb6", zorder=3)
        ax.set_xticks(range(1, len(keys) + 1), [f"{k}\n(n={len(data[k])})" for k in keys], rotation=30,
                      ha="right", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("per-question scores", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    labels = ["1", "2", "3", "4", "5", "miss"]
    counts = [sum(1 for r in ranks if r == k) for k in range(1, 6)] + [sum(1 for r in ranks if r is None)]
    ax2.bar(labels, counts, color=["#3b6fb6"] * 5 + ["#c0504d"])
    ax2.set_title("rank of first relevant passage", fontsize=10)
    ax2.set_xlabel("rank (hybrid, top 5)", fontsize=8)
    ax2.set_ylabel("questions", fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(run_dir: Path, results: dict[str, Any], previous_dir: Path | None = None) -> dict[str, Path]:
    """report.md and the charts for a finished run; ``previous_dir`` (a finished run) is charted alongside."""
    run_dir = Path(run_dir)
    previous = None
    if previous_dir is not None:
        try:
            previous = load_results(previous_dir)
        except (OSError, ValueError):
            previous = None
    charts = [chart_metrics(results, previous, run_dir / "charts" / "metrics.png")]
    pq = chart_per_question(results, run_dir / "charts" / "per_question.png")
    if pq is not None:
        charts.append(pq)
    md = write_markdown(run_dir, results, previous, charts)
    return {"report": md, **{c.stem: c for c in charts}}
