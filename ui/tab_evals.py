"""The Evals tab: run the eval suite on the first N gold questions and watch it, view any run's report.

``build_evals_tab(service)`` builds a ``gr.Tab`` inside the current ``gr.Blocks``. A run answers with the app's own service (on the shared LLM queue) and judges with the
local llama_cpp.server judge (or STUDYBOT_JUDGE_BASE_URL), exactly like ``studybot eval --limit N``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from evals.gold import GoldItem, load_gold
from evals.report import format_summary
from evals.runs import RunSpec, is_complete, resolve_run_dir, runs_in
from evals.scoring import DEFAULT_METRICS as _DEFAULT_METRICS
from evals.scoring import JUDGED_METRICS as LLM_METRICS
from evals.suite import Suite

# Questions an eval started from the tab asks unless told otherwise: set by hand, a small run to try the tab
# with (each question is answered, then judged, by the local model); `studybot eval --limit N` runs more.
DEFAULT_LIMIT = 3
DEFAULT_METRICS = list(_DEFAULT_METRICS)
# How the faithfulness figures are judged, and how far to trust them (under the developer's description).
TRUST = ("Faithfulness: `sentence_faithfulness` (the default, about a second a sentence) reads each shown written "
         "sentence against the passage it cites; `faithfulness` is Ragas' (minutes a question). Every figure carries "
         "its judge's balanced accuracy on labelled claims (`studybot eval --judge-accuracy`; the table below). "
         "Pick a question under the report to see its answer sentence by sentence, with verdicts and passages.")

__all__ = ["accuracy_table", "build_evals_tab", "latest_report", "question_ids", "question_view", "report_view",
           "run_eval", "stop_watching"]

# What the tab tells a student, in one line, above the developer's description.
PURPOSE = ("**What this tells you:** how often the search finds the handbook passage that answers a question, and "
           "how often the answers stick to what that passage says, measured on questions whose answers are known.")
STOP_LABEL = "Stop watching (the run goes on)"


def _finished_runs(settings: Any) -> list[Path]:
    return [p for p in reversed(runs_in(settings.storage.evals_dir)) if is_complete(p)]


def report_view(run_dir: Path | None) -> tuple[str, list[str]]:
    """(Markdown without the image links, chart paths) of a finished run."""
    if run_dir is None or not (run_dir / "report.md").is_file():
        return "No finished eval run yet: start one above (or run `studybot eval --limit 3`).", []
    lines = [ln for ln in (run_dir / "report.md").read_text(encoding="utf-8").splitlines()
             if not ln.startswith("![")]
    charts = sorted(str(p) for p in (run_dir / "charts").glob("*.png"))
    return "\n".join(lines), charts


def question_ids(run_dir: Path | None) -> list[str]:
    """The questions of a run, in its order (for the drill-down picker)."""
    if run_dir is None or not (run_dir / "results.json").is_file():
        return []
    from evals.report import load_results

    try:
        return [r["id"] for r in load_results(run_dir).get("per_item") or []]
    except (OSError, ValueError, KeyError):
        return []


def question_view(run_dir: Path | None, qid: str | None) -> str:
    """One question of a run, drilled down: the answer, each sentence's verdict and the passage it cites."""
    if run_dir is None or not qid:
        return ""
    import json

    from evals.report import question_drill_down

    try:
        rec = json.loads((run_dir / "items" / f"{qid}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"No saved answer for {qid} in `{run_dir.name}`."
    return "\n".join(question_drill_down(rec))


def accuracy_table() -> str:
    """The last judge-accuracy measurement (evals/judge_accuracy.json) as Markdown."""
    from evals.judge_accuracy import format_table, load_result
    from evals.sentences import DEFAULT_METHOD

    result = load_result()
    if not result:
        return "Not measured yet: run `studybot eval --judge-accuracy`."
    return ("Balanced accuracy of each faithfulness judge on the held-out half of the labelled claims "
            "(bold: the default metric's):\n\n" + format_table(result, default=DEFAULT_METHOD).split("\n\nclaims:")[0])


def latest_report(settings: Any) -> tuple[str, list[str], list[str]]:
    runs = _finished_runs(settings)
    md, charts = report_view(runs[0] if runs else None)
    return md, charts, [p.name for p in runs]


def _metrics(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [] if value.strip() in ("", "none") else value.split(",")
    return [m.strip() for m in (value or []) if m.strip() in LLM_METRICS]


def _eta(done: int, total: int, started: float) -> str:
    if done <= 0:
        return "estimating…"
    per = (time.monotonic() - started) / done
    left = per * (total - done)
    return f"{per:.0f} s per step (an answer, or one metric on one question), about {left / 60:.1f} min left"


_ACTIVE: dict[str, Any] = {}  # the run in progress in this process (one at a time)
_ACTIVE_LOCK = threading.Lock()


def run_eval(service: Any, limit: Any, metrics: Any, items: list[GoldItem] | None = None,
             poll: float = 1.0) -> Generator[tuple[str, str | None, list[str] | None], None, None]:
    """Run the suite in a worker thread and yield (status, report Markdown, charts) while it runs; None means
    "unchanged". Closing the generator (the tab's "Stop watching") leaves the run going in the background;
    starting again while it runs watches the same run instead of starting a second one."""
    with _ACTIVE_LOCK:
        active = _ACTIVE.get("run")
        if active is None or not active["thread"].is_alive():
            n = max(1, int(limit or DEFAULT_LIMIT))
            gold = (items if items is not None else load_gold())[:n]
            names = _metrics(metrics)
            run_dir, resumed = resolve_run_dir(service.settings.storage.evals_dir, gold, names, None)
            active = {"done": 0, "total": len(gold), "msg": "starting", "error": None, "result": None,
                      "logs": [], "run_dir": run_dir, "started": time.monotonic(),
                      "head": f"{'Resuming' if resumed else 'Run'} `{run_dir.name}`: {len(gold)} questions, "
                              f"LLM metrics: {', '.join(names) or 'none'}."}
            state = active

            def progress(msg: str, done: int, total: int) -> None:
                state.update(done=done, total=total, msg=msg)

            def work() -> None:
                try:
                    suite = Suite(service, RunSpec(gold, names, run_dir), progress=progress,
                                  log=state["logs"].append)
                    state["result"] = suite.run()
                except Exception as exc:  # shown in the tab
                    state["error"] = f"{type(exc).__name__}: {exc}"

            active["thread"] = threading.Thread(target=work, name="studybot-eval", daemon=True)
            _ACTIVE["run"] = active
            active["thread"].start()
    state = active
    while state["thread"].is_alive():
        state["thread"].join(poll)
        status = (f"{state['head']}\n\n**{state['done']}/{state['total']}** — {state['msg']} — "
                  f"{_eta(state['done'], state['total'], state['started'])}")
        if state["logs"]:
            status += f"\n\n{state['logs'][-1]}"
        yield status, None, None
    if state["error"]:
        yield f"{state['head']}\n\n**Failed:** {state['error']}", None, None
        return
    md, charts = report_view(state["run_dir"])
    summary = format_summary(state["result"]) if state["result"] else ""
    took = time.monotonic() - state["started"]
    yield f"{state['head']}\n\n**Done** in {took:.0f} s.\n\n{summary}", md, charts


def stop_watching() -> str:
    """What "Stop watching" did, truthfully: it closes this page's view of the run (the generator of
    :func:`run_eval`); the run itself goes on in its thread, and "Run eval" watches it again."""
    with _ACTIVE_LOCK:
        active = _ACTIVE.get("run")
    if active is None or not active["thread"].is_alive():
        return "No eval run is going on."
    return (f"Stopped watching `{active['run_dir'].name}` ({active['done']}/{active['total']} done): the run goes on "
            "in the background. Press **Run eval** to watch it again; stopping the server stops it, and the "
            "next run with the same settings resumes where it stopped.")


def build_evals_tab(service: Any) -> dict[str, Any]:
    """Build the Evals tab inside the current ``gr.Blocks``; returns its components."""
    try:
        from ui.tab_chat import LLM_QUEUE
    except ImportError:  # pragma: no cover - the chat tab is always there in the app
        LLM_QUEUE = "llm"  # noqa: N806

    def on_run(limit: Any, metrics: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
        for status, md, charts in run_eval(service, limit, metrics):
            if md is None:
                yield status, gr.skip(), gr.skip(), gr.skip()
            else:
                choices = [p.name for p in _finished_runs(service.settings)]
                yield status, md, charts, gr.update(choices=choices, value=choices[0] if choices else None)

    def on_pick(run_id: str | None) -> tuple[str, list[str]]:
        if not run_id:
            return report_view(None)
        return report_view(service.settings.storage.evals_dir / run_id)

    def on_refresh() -> tuple[str, list[str], Any]:
        md, charts, choices = latest_report(service.settings)
        return md, charts, gr.update(choices=choices, value=choices[0] if choices else None)

    md0, charts0, choices0 = latest_report(service.settings)
    with gr.Tab("Evals", id="evals"):
        gr.Markdown(PURPOSE, elem_id="sb-evals-purpose")
        gr.Markdown(
            "How: the first N gold questions are answered by the real pipeline and scored: hit@k (the right passage "
            "among the first k found) and MRR (how high it ranks), ID-based context precision and recall, refusals, "
            "and Ragas metrics judged by the local model (faithfulness: the share of the answer's claims that the "
            "passages support). Slow on a CPU: several minutes per question with all four LLM metrics. A stopped "
            "run resumes when started again with the same settings."
        )
        with gr.Row():
            limit = gr.Number(value=DEFAULT_LIMIT, precision=0, minimum=1, label="Questions", scale=1,
                              elem_id="sb-evals-limit")
            metrics = gr.CheckboxGroup(choices=list(LLM_METRICS), value=DEFAULT_METRICS, scale=3,
                                       label="LLM-judged metrics", elem_id="sb-evals-metrics")
        with gr.Row():
            run_btn = gr.Button("Run eval", variant="primary", elem_id="sb-evals-run")
            stop_btn = gr.Button(STOP_LABEL, elem_id="sb-evals-stop")
        status = gr.Markdown(elem_id="sb-evals-status")
        with gr.Row():
            pick = gr.Dropdown(choices=choices0, value=choices0[0] if choices0 else None, label="Report of run",
                               elem_id="sb-evals-run-pick", scale=3)
            refresh_btn = gr.Button("Latest report", scale=1, elem_id="sb-evals-refresh")
        charts = gr.Gallery(value=charts0, label="Charts", columns=2, height="auto", object_fit="contain",
                            elem_id="sb-evals-charts")
        report = gr.Markdown(md0, elem_id="sb-evals-report")
        gr.Markdown(TRUST, elem_id="sb-evals-trust")
        with gr.Accordion("How far to trust the faithfulness figures", open=False, elem_id="sb-evals-accuracy"):
            gr.Markdown(accuracy_table(), elem_id="sb-evals-accuracy-table")
        run0 = service.settings.storage.evals_dir / choices0[0] if choices0 else None
        ids0 = question_ids(run0)
        question = gr.Dropdown(choices=ids0, value=None, label="Drill down: a question of this run",
                               elem_id="sb-evals-question")
        drill = gr.Markdown(elem_id="sb-evals-drill")

    run_event = run_btn.click(on_run, [limit, metrics], [status, report, charts, pick], api_name="run_eval",
                              concurrency_id=LLM_QUEUE)
    stop_btn.click(stop_watching, None, [status], cancels=[run_event], api_visibility="private", queue=False)
    pick.change(on_pick, [pick], [report, charts], api_name="eval_report", queue=False)
    refresh_btn.click(on_refresh, None, [report, charts, pick], api_name="latest_eval_report", queue=False)

    def run_of(run_id: str | None) -> Path | None:
        return service.settings.storage.evals_dir / run_id if run_id else None

    def on_questions(run_id: str | None) -> Any:
        return gr.update(choices=question_ids(run_of(run_id)), value=None)

    pick.change(on_questions, [pick], [question], queue=False, api_visibility="private")
    question.change(lambda run_id, qid: question_view(run_of(run_id), qid), [pick, question], [drill],
                    api_name="eval_question", queue=False)
    return {"status": status, "report": report, "charts": charts, "pick": pick, "run": run_btn, "question": question,
            "drill": drill}
