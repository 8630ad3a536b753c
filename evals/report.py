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
    "sentence_faithfulness", "faithfulness", "answer_relevancy", "context_precision", "context_recall",
    "id_context_precision", "id_context_recall", "citation_precision",
    "refusal_rate", "wrong_refusal_rate",
)
LOWER_IS_BETTER = frozenset({"wrong_refusal_rate"})
PER_QUESTION_KEYS = (
    "sentence_faithfulness", "faithfulness", "answer_relevancy", "context_precision", "context_recall",
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


def changed_questions(a: dict[str, Any], b: dict[str, Any], answers_a: dict[str, str] | None = None,
                      answers_b: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The questions whose result differs between two runs: refused or not, the rank of the first relevant
    passage, any per-question score, the answer's text (when both runs' answers are given); and questions in
    one run only. Each: ``{"id", "changes": [{"what", "a", "b"}]}``, in B's order."""
    rows_a = {r["id"]: r for r in a.get("per_item") or []}
    rows_b = {r["id"]: r for r in b.get("per_item") or []}
    out: list[dict[str, Any]] = []
    for qid in [*rows_b, *(i for i in rows_a if i not in rows_b)]:
        ra, rb = rows_a.get(qid), rows_b.get(qid)
        if ra is None or rb is None:
            out.append({"id": qid, "changes": [{"what": "only in " + ("B" if ra is None else "A"), "a": None,
                                                 "b": None}]})
            continue
        changes = []
        for key in ["refused", "rank", *PER_QUESTION_KEYS]:
            va, vb = ra.get(key), rb.get(key)
            same = (va == vb or (isinstance(va, int | float) and isinstance(vb, int | float) and abs(va - vb) < 1e-6))
            if not same:
                changes.append({"what": key, "a": va, "b": vb})
        if answers_a is not None and answers_b is not None and qid in answers_a and qid in answers_b \
                and " ".join(answers_a[qid].split()) != " ".join(answers_b[qid].split()):
            changes.append({"what": "answer", "a": answers_a[qid], "b": answers_b[qid]})
        if changes:
            out.append({"id": qid, "changes": changes})
    return out


def run_answers(run_dir: Path) -> dict[str, str] | None:
    """Each question's answer text in a run directory (``items/<id>.json``), or None when it has none."""
    items = Path(run_dir) / "items"
    if not items.is_dir():
        return None
    out = {}
    for p in sorted(items.glob("*.json")):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out[str(rec.get("id", p.stem))] = str((rec.get("answer") or {}).get("answer") or "")
    return out


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    ra, rb = load_results(a), load_results(b)
    diff = compare_results(ra, rb)
    dir_a, dir_b = (Path(p) if Path(p).is_dir() else Path(p).parent for p in (a, b))
    diff["questions"] = changed_questions(ra, rb, run_answers(dir_a), run_answers(dir_b))
    return diff


def format_compare(diff: dict[str, Any]) -> str:
    lines = [f"A: {diff['a']} ({diff['n_items'][0]} questions)", f"B: {diff['b']} ({diff['n_items'][1]} questions)",
             "", "| metric | A | B | B - A |", "|---|---|---|---|"]
    for k, r in diff["metrics"].items():
        d = r["delta"]
        sign = "" if d is None else ("+" if d > 0 else "")
        worse = d is not None and ((d > 0) if k in LOWER_IS_BETTER or k == "seconds_per_item" else (d < 0))
        flag = " ↓" if worse and abs(d) > 1e-9 else ""
        lines.append(f"| {k} | {_fmt(r['a'])} | {_fmt(r['b'])} | {sign}{_fmt(d)}{flag} |")
    questions = diff.get("questions")
    if questions is not None:
        lines += ["", f"Questions that changed: {len(questions)}" + (f" ({', '.join(q['id'] for q in questions)})"
                                                                    if questions else "")]
        for q in questions:
            parts = []
            for c in q["changes"]:
                if c["what"] == "answer":
                    parts.append("answer text")
                elif c["what"].startswith("only in"):
                    parts.append(c["what"])
                else:
                    parts.append(f"{c['what']} {_fmt(c['a'], 2)} -> {_fmt(c['b'], 2)}")
            lines.append(f"- {q['id']}: {'; '.join(parts)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------------


def metrics_table(results: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    m, detail = results.get("metrics", {}), results.get("detail", {})
    pm = (previous or {}).get("metrics", {})
    head = "| metric | mean | n scored | n failed | n skipped | parse failures | judge accuracy |"
    sep = "|---|---|---|---|---|---|---|"
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
               f"{d.get('parse_failures', '')} | {_judge_accuracy_cell(k, d)} |")
        if previous is not None:
            pv, v = pm.get(k), m.get(k)
            delta = (v - pv) if isinstance(v, int | float) and isinstance(pv, int | float) else None
            row += f" {_fmt(pv)} | {'' if delta is None or delta <= 0 else '+'}{_fmt(delta)} |"
        lines.append(row)
    return "\n".join(lines)


def _judge_accuracy_cell(metric: str, d: dict[str, Any]) -> str:
    """A faithfulness figure's trust: its method's balanced accuracy on the held-out labelled claims ("?" when
    never measured); empty for metrics no judge of ours reads."""
    if "judge_accuracy" not in d:
        return ""
    acc = d.get("judge_accuracy") or {}
    ba = acc.get("balanced_accuracy")
    return f"BA {ba:.2f} ({acc.get('method')})" if isinstance(ba, int | float) else f"? ({d.get('method') or 'ragas'})"


def trust_lines(results: dict[str, Any]) -> list[str]:
    """One line per faithfulness figure: what it measures, by which method, and how far to trust it."""
    from evals.judge_accuracy import trust_note

    out = []
    detail = results.get("detail", {})
    for k in ("sentence_faithfulness", "faithfulness"):
        d = detail.get(k)
        if not d or "judge_accuracy" not in d or d.get("n_scored", 0) + d.get("n_skipped", 0) == 0:
            continue
        what = ("share of each answer's shown written sentences that the passage they cite states"
                if k == "sentence_faithfulness" else "Ragas: share of the answer's statements the contexts support")
        extra = ""
        if k == "sentence_faithfulness":
            extra = (f"; {d.get('stated', 0)}/{d.get('written', 0)} written sentences stated, "
                     f"{d.get('quotes_verbatim', 0)}/{d.get('quotes', 0)} quotes verbatim, "
                     f"{d.get('quotes_only', 0)} answers quotes only, {d.get('dropped', 0)} sentences dropped by "
                     f"the pipeline; threshold {_fmt(d.get('threshold'), 2)}")
        out.append(f"- {k} {_fmt(d.get('mean'))} ({what}{extra}): {trust_note(d.get('judge_accuracy'))}")
    return out


def format_summary(results: dict[str, Any]) -> str:
    t = results.get("timing", {})
    trust = trust_lines(results)
    lines = [metrics_table(results), *(["", "How far to trust the faithfulness figures:", *trust] if trust else []), "",
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
              "not validate, including ones a retry recovered. `judge accuracy`: the balanced accuracy of the "
              "method that judged the figure, on the held-out half of the labelled claims "
              "(`evals/judge_accuracy.json`, `studybot eval --judge-accuracy`).", ""]
    trust = trust_lines(results)
    if trust:
        lines += ["How far to trust the faithfulness figures:", "", *trust, ""]
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
    lines += drill_down(run_dir, results)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------
# drill-down: per question, the answer, each sentence's verdict and its passage
# ------------------------------------------------------------------------------------------------------

PASSAGE_CHARS = 1500  # a passage is shown up to this many characters in the drill-down


def _blockquote(text: str) -> list[str]:
    return [("> " + ln) if ln.strip() else ">" for ln in text.strip().splitlines()] or [">"]


def _one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def ragas_statements(score: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The statements Ragas faithfulness extracted and its verdict on each (from the judge's saved replies)."""
    out: list[dict[str, Any]] = []
    for t in (score or {}).get("trace") or []:
        if t.get("output") != "NLIStatementOutput":
            continue
        try:
            data = json.loads(t.get("reply") or "")
        except ValueError:
            continue
        out = [s for s in data.get("statements") or [] if isinstance(s, dict)]
    return out


def _sentence_line(i: int, s: dict[str, Any], judged: bool) -> str:
    cites = "".join(f"[{n}]" for n in s.get("cites") or [])
    if s["kind"] == "quote":
        return f"{i}. quote {cites}, {'verbatim' if s.get('verbatim') else '**not verbatim in its passage**'}: " \
               f"{_one_line(s['text'])}"
    if s["kind"] == "dropped":
        lo = s.get("logodds")
        why = s.get("reason") or "?"
        return f"{i}. dropped by the pipeline ({why}{'' if lo is None else f', log-odds {lo:.2f}'}), not shown: " \
               f"{_one_line(s['text'])}"
    verdict = s.get("verdict")
    if verdict is None:
        what = "not judged" if not judged else "?"
    else:
        reading = s.get("reading")
        what = f"**{verdict}**" + ("" if reading is None else f" (reading {reading:.2f})")
    return f"{i}. written {cites}, {what}: {_one_line(s['text'])}"


def question_drill_down(rec: dict[str, Any]) -> list[str]:
    """Markdown for one question: the answer, each sentence with its verdict, Ragas' statements when scored,
    and the passages the sentences cite."""
    from evals.sentences import SENTENCE_METRIC, answer_sentences

    ans = rec.get("answer") or {}
    scores = rec.get("scores") or {}
    sf, rf = scores.get(SENTENCE_METRIC) or {}, scores.get("faithfulness") or {}
    head = [f"### {rec.get('id')}" + ("" if rec.get("answerable", True) else " (unanswerable)")]
    status = ("error: " + str(ans["error"])) if ans.get("error") else (
        f"refused ({ans.get('refusal_reason') or 'refusal'})" if ans.get("refused") else "answered")
    figures = [status]
    if isinstance(sf.get("value"), int | float):
        figures.append(f"sentence_faithfulness {sf['value']:.2f} ({sf.get('stated')}/{sf.get('written')} stated, "
                       f"{sf.get('method')} >= {_fmt(sf.get('threshold'), 2)})")
    elif sf.get("skipped"):
        figures.append(f"sentence_faithfulness: {sf['skipped']}")
    if isinstance(rf.get("value"), int | float):
        figures.append(f"faithfulness (Ragas) {rf['value']:.2f}")
    lines = [*head, "", " · ".join(figures), "", f"**Question:** {rec.get('question', '')}", ""]
    if ans.get("refused") or ans.get("error") or not (ans.get("answer") or "").strip():
        lines += [f"**Answer:** {_one_line(ans.get('answer') or '')}", ""]
        return lines
    sentences = sf.get("sentences") or answer_sentences(ans)
    lines += ["**Answer, sentence by sentence:**", ""]
    lines += [_sentence_line(i, s, "sentences" in sf) for i, s in enumerate(sentences, start=1)]
    lines.append("")
    stmts = ragas_statements(rf)
    if stmts:
        lines += ["**Ragas' statements** (verdict 1: supported by the contexts):", ""]
        lines += [f"- {st.get('verdict')}: {_one_line(str(st.get('statement', '')))}"
                  + (f" — {_one_line(str(st.get('reason', '')), 200)}" if st.get("verdict") == 0 else "")
                  for st in stmts]
        lines.append("")
    shown: list[int] = []
    for s in sentences:
        shown += [n for n in s.get("cites") or [] if n not in shown]
    passages = ans.get("passages") or []
    for n in sorted(shown):
        if not 0 < n <= len(passages):
            continue
        p = passages[n - 1]
        text = str(p.get("text", ""))
        cut = text if len(text) <= PASSAGE_CHARS else text[:PASSAGE_CHARS] + " …"
        lines += [f"Passage [{n}] `{p.get('source', '')}`:", "", *_blockquote(cut), ""]
    return lines


def drill_down(run_dir: Path, results: dict[str, Any]) -> list[str]:
    """The report's last section: every question of the run (from ``items/<id>.json``), drilled down."""
    items = Path(run_dir) / "items"
    ids = [r["id"] for r in results.get("per_item") or []]
    if not ids or not items.is_dir():
        return []
    lines = ["## Per question: the answer, each sentence's verdict and its passage", "",
             "Quotes are the handbook's own words (checked verbatim, no model); written sentences are the model's "
             "explanation as shown, each read against the passage(s) it cites by the sentence_faithfulness "
             "method; dropped sentences were written but not shown (the answer pipeline's Verifier failed them).",
             ""]
    for qid in ids:
        path = items / f"{qid}.json"
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        lines += question_drill_down(rec)
    return lines


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
