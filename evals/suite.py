"""`studybot eval`: answer every gold question with the real pipeline, then score it.

Scores per run:

* retrieval (no LLM): hit@1/3/5 and MRR@5 of hybrid retrieval (``evals.retrieval``);
* ID-based context precision / recall (no LLM): which passages given to the model are relevant, decided by
  the gold phrases (``evals.gold.is_relevant``), against every relevant chunk in the index; citation
  precision: the share of cited passages that are relevant;
* refusals (no LLM): refusal rate on unanswerable items, wrong refusals on answerable ones, uncited answers;
* Ragas 0.4 LLM-judged metrics (``evals.judge``): faithfulness, answer relevancy, context precision and
  context recall (the last two against the gold reference).

Each metric reports ``n_scored`` / ``n_failed`` / ``n_skipped`` and the judge's parse failures: a NaN or a
failed judge call is never averaged away silently.

A run lives in one directory (``<evals_dir>/<run id>``): ``run.json`` (what is evaluated), ``items/<id>.json``
(the answer and scores of each question, written as soon as they exist), then ``results.json``,
``report.md`` and PNG charts. A killed run resumes where it stopped when rerun with the same ``--run-dir`` -
or with no ``--run-dir`` at all, which continues the latest unfinished run of the same questions and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.gold import GoldItem, is_relevant
from rag.errors import BackendUnreachableError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

Progress = Callable[[int, int, str], None]

# The flat metric keys of results.json["metrics"] (and `studybot eval --json`), in report order.
RETRIEVAL_KEYS = ("hit@1", "hit@3", "hit@5", "mrr@5")
ID_KEYS = ("id_context_precision", "id_context_recall", "citation_precision")
RATE_KEYS = ("refusal_rate", "wrong_refusal_rate", "uncited_rate")
SCORE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall", *ID_KEYS)


# ------------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    """Atomic write (a killed run never leaves half a file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def runs_in(base: Path) -> list[Path]:
    """Run directories under ``base``, oldest first (run ids sort by time)."""
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and (p / "run.json").is_file())


def is_complete(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def previous_run(run_dir: Path) -> Path | None:
    """The latest completed run in the same parent directory before ``run_dir``."""
    done = [p for p in runs_in(run_dir.parent) if p.name < run_dir.name and is_complete(p)]
    return done[-1] if done else None


def latest_run(base: Path, complete: bool | None = None) -> Path | None:
    runs = [p for p in runs_in(base) if complete is None or is_complete(p) == complete]
    return runs[-1] if runs else None


# ------------------------------------------------------------------------------------------------------
# the answer under test (rag.answer.Answer is duck-typed: to_json() + passages)
# ------------------------------------------------------------------------------------------------------


def _passage_record(p: Any) -> dict[str, Any]:
    c = getattr(p, "chunk", p)
    pid = getattr(c, "id", None) or getattr(p, "id", None)
    extra = getattr(p, "extra", None) or {}
    # rag.context merges adjacent chunks into one passage; its extra["chunk_ids"] lists them all
    return {"id": pid, "chunk_ids": list(extra.get("chunk_ids") or [pid]), "source": c.source, "text": c.text}


def answer_record(answer: Any, seconds: float) -> dict[str, Any]:
    data = answer.to_json() if hasattr(answer, "to_json") else dict(answer)
    passages = getattr(answer, "passages", None)
    if passages is None:
        passages = data.get("passages") or []
    data = {k: v for k, v in data.items() if k != "passages"}
    data["passages"] = [_passage_record(p) if not isinstance(p, dict) else p for p in passages]
    data["seconds"] = round(seconds, 3)
    return data


# ------------------------------------------------------------------------------------------------------
# per-item scoring
# ------------------------------------------------------------------------------------------------------


def id_scores(item: GoldItem, rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """ID-based context precision / recall of the chunks given to the model (Ragas' IDBasedContextPrecision /
    IDBasedContextRecall definitions, with the reference ids = every chunk of the index that holds one of the
    item's gold phrases), and citation precision (the share of cited passages that are relevant)."""
    if not item.answerable:
        return {k: {"skipped": "unanswerable"} for k in ID_KEYS}
    out: dict[str, dict[str, Any]] = {}
    relevant = set(rec.get("relevant_ids") or [])
    passages = rec["answer"].get("passages", [])

    def passage_relevant(p: dict[str, Any]) -> bool:
        ids = p.get("chunk_ids") or [p.get("id")]
        return any(i in relevant for i in ids) or is_relevant(item, p.get("source", ""), p.get("text", ""))

    given = list(dict.fromkeys(i for p in passages for i in (p.get("chunk_ids") or [p.get("id")])))
    if not given:
        out["id_context_precision"] = {"skipped": "no passages"}
    else:
        out["id_context_precision"] = {"value": sum(1 for i in given if i in relevant) / len(given)}
    if not relevant:
        out["id_context_recall"] = {"skipped": "no relevant chunk in the index"}
    else:
        out["id_context_recall"] = {"value": len(relevant & set(given)) / len(relevant)}
    cites = rec["answer"].get("citations") or []
    if not cites:
        out["citation_precision"] = {"skipped": "no citations"}
    else:
        by_n = {n: p for n, p in enumerate(passages, start=1)}
        good = 0
        for c in cites:
            p = by_n.get(c.get("n")) or {"id": c.get("chunk_id"), "source": c.get("source", ""),
                                         "text": c.get("text", "")}
            good += passage_relevant(p)
        out["citation_precision"] = {"value": good / len(cites)}
    return out


def llm_metric_inputs(item: GoldItem, rec: dict[str, Any], metric: str) -> dict[str, Any] | str:
    """The ``ascore`` keyword arguments for ``metric`` on this item, or the reason it is skipped."""
    ans = rec["answer"]
    response = (ans.get("answer") or "").strip()
    contexts = [p["text"] for p in ans.get("passages", []) if p.get("text")]
    refused = bool(ans.get("refused"))
    if metric == "faithfulness":
        if refused or not response:
            return "refused"
        if not contexts:
            return "no passages"
        return {"user_input": item.question, "response": response, "retrieved_contexts": contexts}
    if not item.answerable:
        return "unanswerable"
    if metric == "answer_relevancy":
        if refused or not response:
            return "refused"
        return {"user_input": item.question, "response": response}
    if metric in ("context_precision", "context_recall"):
        if not contexts:
            return "no passages"
        if not item.reference:
            return "no reference"
        return {"user_input": item.question, "reference": item.reference, "retrieved_contexts": contexts}
    raise ValueError(f"unknown metric {metric!r}")


async def _score_one(metric_obj: Any, kwargs: dict[str, Any]) -> Any:
    return await metric_obj.ascore(**kwargs)


def run_llm_metric(name: str, metric_obj: Any, kwargs: dict[str, Any], stats: Any) -> dict[str, Any]:
    """Score one metric on one item; failures and NaN are recorded, never raised or dropped."""
    from evals.judge import metric_scope

    before = (stats.snapshot().get(name) or {}) if stats is not None else {}
    start = time.perf_counter()
    out: dict[str, Any]
    trace: list[dict[str, Any]] = []
    try:
        with metric_scope(name, trace):
            result = asyncio.run(_score_one(metric_obj, kwargs))
        value = getattr(result, "value", result)
        if _finite(value):
            out = {"value": float(value)}
        else:
            out = {"value": None, "error": "NaN: the judge produced nothing to score (e.g. no statements)"}
    except BackendUnreachableError:
        raise  # the judge is gone (server died, endpoint down): stop the run, do not record it as a score
    except Exception as exc:  # a judge failure is a result to report, not a crash of the run
        out = {"value": None, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["trace"] = trace
    if stats is not None:
        after = stats.snapshot().get(name) or {}
        out["calls"] = after.get("calls", 0) - before.get("calls", 0)
        out["parse_failures"] = after.get("parse_failures", 0) - before.get("parse_failures", 0)
    return out


# ------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------


def _lost_judge(score: Any) -> bool:
    """A score recorded when the judge was unreachable (by an older version): not a result, retry it."""
    return isinstance(score, dict) and str(score.get("error", "")).startswith("BackendError: Cannot reach")


@dataclass
class RunSpec:
    items: list[GoldItem]
    metrics: list[str]  # LLM metrics to score (empty: answers + non-LLM metrics only)
    run_dir: Path
    judge: str = ""

    def identity(self) -> dict[str, Any]:
        return {"items": [i.id for i in self.items], "metrics": list(self.metrics)}


def resolve_run_dir(base: Path, items: Sequence[GoldItem], metrics: Sequence[str], run_dir: Path | None,
                    new: bool = False) -> tuple[Path, bool]:
    """(run directory, resumed?). Without an explicit ``run_dir``: the latest unfinished run under ``base``
    with the same questions and metrics, else a new one."""
    ident = {"items": [i.id for i in items], "metrics": list(metrics)}
    if run_dir is not None:
        return run_dir, (run_dir / "run.json").is_file()
    if not new:
        last = latest_run(base)
        if last is not None and not is_complete(last):
            try:
                meta = _read_json(last / "run.json")
            except (OSError, ValueError):
                meta = {}
            if {"items": meta.get("items"), "metrics": meta.get("metrics")} == ident:
                return last, True
    run_id = new_run_id()
    path = base / run_id
    n = 1
    while path.exists():
        n += 1
        path = base / f"{run_id}-{n}"
    return path, False


@dataclass
class Suite:
    """One evaluation run over a :class:`rag.service.StudyService`.

    ``judge_factory(run_dir)`` is a context manager yielding a :class:`evals.judge.RagasJudgeLLM` (default:
    the local/configured judge endpoint); it is entered only when some item still needs an LLM metric.
    """

    service: Any
    spec: RunSpec
    judge_factory: Callable[[Path], Any] | None = None
    embeddings: Any = None
    progress: Progress | None = None
    show_bar: bool = False
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    _judge: Any = None
    _metrics: dict[str, Any] = field(default_factory=dict)
    _relevant: dict[str, list[str]] | None = None

    # -- setup -----------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir

    def _item_path(self, item: GoldItem) -> Path:
        return self.run_dir / "items" / f"{item.id}.json"

    def relevant_ids(self, item: GoldItem) -> list[str]:
        """Every chunk in the index that answers ``item`` (by the gold phrases)."""
        if self._relevant is None:
            chunks = self.service.index.all_chunks()
            self._relevant = {
                i.id: [c.id for c in chunks if is_relevant(i, c.source, c.text)] for i in self.spec.items
            }
        return self._relevant.get(item.id, [])

    def _default_judge(self, stack: contextlib.ExitStack) -> Any:
        from evals.judge import JudgeStats, judge_llm, open_judge

        settings = self.service.settings
        endpoint = stack.enter_context(open_judge(settings, self.run_dir))
        self.spec.judge = endpoint.description
        return judge_llm(endpoint, settings, JudgeStats())

    def _ensure_judge(self, stack: contextlib.ExitStack) -> Any:
        if self._judge is None:
            from evals.judge import RagasEmbeddings, build_metrics

            t0 = time.perf_counter()
            if self.judge_factory is not None:
                self._judge = stack.enter_context(self.judge_factory(self.run_dir))
                self.spec.judge = self.spec.judge or repr(self._judge)
            else:
                self._judge = self._default_judge(stack)
            self.log(f"judge: {self.spec.judge} (ready in {time.perf_counter() - t0:.1f} s)")
            emb = self.embeddings
            if emb is None and "answer_relevancy" in self.spec.metrics:
                emb = RagasEmbeddings(self.service.embedder)
            strictness = getattr(self.service.settings, "judge_relevancy_strictness", 2)
            self._metrics = build_metrics(self._judge, emb, self.spec.metrics, strictness=strictness)
        return self._judge

    # -- run -------------------------------------------------------------------------------------------
    def write_meta(self) -> None:
        path = self.run_dir / "run.json"
        meta = _read_json(path) if path.is_file() else {"run_id": self.run_dir.name, "started": time.time()}
        meta.update(self.spec.identity())
        meta["judge"] = self.spec.judge or meta.get("judge", "")
        s = self.service.settings
        meta["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in s.model_dump().items()
                            if k in ("top_k", "fetch_k", "rrf_k", "llm_backend", "llm_model", "llm_base_url",
                                     "max_tokens", "temperature", "context_budget_tokens", "judge_base_url",
                                     "judge_model", "judge_gguf", "judge_max_tokens", "judge_retries",
                                     "judge_relevancy_strictness")}
        _write_json(path, meta)

    def retrieval(self) -> dict[str, Any]:
        """Hybrid retrieval metrics (cached in the run directory)."""
        from evals.retrieval import evaluate_retrieval

        path = self.run_dir / "retrieval.json"
        if path.is_file():
            return _read_json(path)
        result = evaluate_retrieval(self.service.retriever, self.spec.items, modes=("hybrid",))
        _write_json(path, result)
        return result

    def answer(self, item: GoldItem) -> dict[str, Any]:
        path = self._item_path(item)
        if path.is_file():
            rec = _read_json(path)
            if rec.get("answer") is not None:
                return rec
        start = time.perf_counter()
        try:
            ans = self.service.ask(item.question)
            answer = answer_record(ans, time.perf_counter() - start)
        except BackendUnreachableError:
            raise  # the model is unreachable: every later question would fail the same way
        except Exception as exc:  # the pipeline failing on one question is a result
            answer = {"answer": "", "refused": False, "error": f"{type(exc).__name__}: {exc}", "passages": [],
                      "citations": [], "seconds": round(time.perf_counter() - start, 3)}
        rec = {"id": item.id, "question": item.question, "answerable": item.answerable,
               "relevant_ids": self.relevant_ids(item), "answer": answer, "scores": {}}
        _write_json(path, rec)
        return rec

    def score_ids(self, item: GoldItem, rec: dict[str, Any]) -> dict[str, Any]:
        """The non-LLM scores of one answered item (cheap; recomputed on every run)."""
        scores = rec.setdefault("scores", {})
        changed = False
        for key, value in id_scores(item, rec).items():
            if scores.get(key) != value:
                scores[key] = value
                changed = True
        if changed:
            _write_json(self._item_path(item), rec)
        return rec

    def score_metric(self, item: GoldItem, rec: dict[str, Any], name: str, stack: contextlib.ExitStack) -> None:
        """One LLM-judged metric on one item, cached in the item's file."""
        scores = rec.setdefault("scores", {})
        if name in scores and not _lost_judge(scores[name]):
            return  # cached (a judge failure is cached too: delete the item file to retry it)
        if rec["answer"].get("error"):
            scores[name] = {"skipped": "answer failed"}
        else:
            inputs = llm_metric_inputs(item, rec, name)
            if isinstance(inputs, str):
                scores[name] = {"skipped": inputs}
            else:
                judge = self._ensure_judge(stack)
                try:
                    scores[name] = run_llm_metric(name, self._metrics[name], inputs, getattr(judge, "stats", None))
                except BackendUnreachableError as exc:
                    raise BackendUnreachableError(
                        f"The judge stopped answering while scoring {name} for {item.id} ({exc}). Scores so "
                        f"far are saved in {self.run_dir}: run the same `studybot eval` again to resume."
                    ) from exc
        _write_json(self._item_path(item), rec)  # after every metric: a kill loses one judge call at most

    def run(self) -> dict[str, Any]:
        """Answer every question first, then score metric by metric: consecutive judge calls of one metric
        share its long fixed prompt (instructions and examples), which llama.cpp then keeps in its KV cache
        instead of evaluating it again for every call."""
        items = self.spec.items
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_meta()
        retrieval = self.retrieval()
        records: dict[str, dict[str, Any]] = {}
        bar = None
        steps = len(items) * (1 + len(self.spec.metrics))
        if self.show_bar:
            from tqdm import tqdm

            bar = tqdm(total=steps, unit="step", desc="eval", file=sys.stderr, dynamic_ncols=True)
        done = 0

        def step(msg: str, advance: bool) -> None:
            nonlocal done
            done += advance
            if bar is not None:
                bar.set_postfix_str(msg)
                bar.update(int(advance))
            if self.progress:
                self.progress(done, steps, msg)

        t_run = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                for item in items:
                    step(f"{item.id}: answering", False)
                    records[item.id] = self.score_ids(item, self.answer(item))
                    step(f"{item.id}: answered", True)
                for name in self.spec.metrics:
                    for item in items:
                        step(f"{name}: {item.id}", False)
                        self.score_metric(item, records[item.id], name, stack)
                        step(f"{name}: {item.id} done", True)
        finally:
            if bar is not None:
                bar.close()
            self.write_meta()
        results = aggregate(items, records, retrieval, self.spec, stats=getattr(self._judge, "stats", None))
        results["wall_seconds_this_session"] = round(time.perf_counter() - t_run, 1)
        _write_json(self.run_dir / "results.json", results)
        from evals.report import write_report

        write_report(self.run_dir, results, previous_run(self.run_dir))
        return results


# ------------------------------------------------------------------------------------------------------
# aggregation
# ------------------------------------------------------------------------------------------------------


def aggregate(items: Sequence[GoldItem], records: dict[str, dict[str, Any]], retrieval: dict[str, Any],
              spec: RunSpec, stats: Any = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    detail: dict[str, dict[str, Any]] = {}

    hybrid = (retrieval.get("modes") or {}).get("hybrid") or {}
    for k in RETRIEVAL_KEYS:
        metrics[k] = hybrid.get(k)
    detail["retrieval"] = {"n": hybrid.get("n", 0)}

    for name in (*spec.metrics, *ID_KEYS):
        values, failed, skipped, parse_failures, calls, seconds = [], 0, 0, 0, 0, 0.0
        errors: list[str] = []
        for item in items:
            s = (records.get(item.id) or {}).get("scores", {}).get(name)
            if s is None:
                continue
            if "skipped" in s:
                skipped += 1
                continue
            parse_failures += int(s.get("parse_failures", 0))
            calls += int(s.get("calls", 0))
            seconds += float(s.get("seconds", 0.0))
            if _finite(s.get("value")):
                values.append(float(s["value"]))
            else:
                failed += 1
                if s.get("error"):
                    errors.append(f"{item.id}: {s['error']}")
        metrics[name] = _mean(values)
        detail[name] = {"mean": _mean(values), "n_scored": len(values), "n_failed": failed,
                        "n_skipped": skipped}
        if name not in ID_KEYS:
            detail[name].update({"parse_failures": parse_failures, "judge_calls": calls,
                                 "judge_seconds": round(seconds, 1), "errors": errors[:10]})

    answerable = [i for i in items if i.answerable]
    unanswerable = [i for i in items if not i.answerable]

    def ans(i: GoldItem) -> dict[str, Any]:
        return (records.get(i.id) or {}).get("answer") or {}

    metrics["refusal_rate"] = (round(sum(bool(ans(i).get("refused")) for i in unanswerable) / len(unanswerable), 4)
                               if unanswerable else None)
    metrics["wrong_refusal_rate"] = (round(sum(bool(ans(i).get("refused")) for i in answerable) / len(answerable), 4)
                                     if answerable else None)
    answered = [i for i in items if not ans(i).get("refused") and (ans(i).get("answer") or "").strip()]
    metrics["uncited_rate"] = (round(sum(bool(ans(i).get("uncited")) for i in answered) / len(answered), 4)
                               if answered else None)
    detail["refusals"] = {"n_answerable": len(answerable), "n_unanswerable": len(unanswerable),
                          "n_answered": len(answered),
                          "answer_errors": sum(1 for i in items if ans(i).get("error"))}

    answer_s = [float(ans(i).get("seconds", 0.0)) for i in items if ans(i)]
    judge_s = [sum(float(v.get("seconds", 0.0)) for v in ((records.get(i.id) or {}).get("scores") or {}).values())
               for i in items if records.get(i.id)]
    timing = {
        "answer_seconds_mean": _mean(answer_s),
        "judge_seconds_mean": _mean(judge_s),
        "seconds_per_item": _mean([a + j for a, j in zip(answer_s, judge_s, strict=False)]),
    }

    per_item = []
    for item in items:
        rec = records.get(item.id) or {}
        row: dict[str, Any] = {"id": item.id, "answerable": item.answerable,
                               "refused": bool((rec.get("answer") or {}).get("refused")),
                               "rank": ((retrieval.get("per_item") or {}).get("hybrid") or {})
                               .get(item.id, {}).get("rank")}
        for name, s in (rec.get("scores") or {}).items():
            row[name] = s.get("value") if "skipped" not in s else None
        per_item.append(row)

    return {
        "run_id": spec.run_dir.name,
        "run_dir": str(spec.run_dir),
        "finished": time.time(),
        "n_items": len(items),
        "llm_metrics": list(spec.metrics),
        "judge": spec.judge,
        "metrics": metrics,
        "detail": detail,
        "timing": timing,
        "judge_calls": stats.snapshot() if stats is not None else {},
        "per_item": per_item,
    }


# ------------------------------------------------------------------------------------------------------
# judge sanity: does the judge rate a faithful answer above a fabricated one?
# ------------------------------------------------------------------------------------------------------


def sanity_pairs(service: Any, items: Sequence[GoldItem], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` (question, contexts, faithful, fabricated) pairs from the answerable gold items: the
    contexts are the chunks that hold the item's gold phrases, the faithful answer is the gold reference and
    the fabricated one is the reference of an item from another handbook (fluent, but unsupported)."""
    gold = [i for i in items if i.answerable and i.reference]
    chunks = service.index.all_chunks()
    pairs = []
    for k, item in enumerate(gold):
        contexts = [c.text for c in chunks if is_relevant(item, c.source, c.text)][:3]
        if not contexts:
            continue
        other = next((o for o in gold[k + 1:] + gold[:k] if o.source != item.source), None)
        if other is None:
            continue
        pairs.append({"id": item.id, "question": item.question, "contexts": contexts,
                      "faithful": item.reference, "fabricated": other.reference, "fabricated_from": other.id})
        if len(pairs) >= n:
            break
    return pairs


def run_judge_sanity(judge: Any, pairs: Sequence[dict[str, Any]], progress: Progress | None = None,
                     out: Path | None = None) -> dict[str, Any]:
    from evals.judge import build_metrics

    metric = build_metrics(judge, None, ["faithfulness"])["faithfulness"]
    rows = []
    for n, pair in enumerate(pairs):
        row: dict[str, Any] = {"id": pair["id"], "fabricated_from": pair["fabricated_from"]}
        for kind in ("faithful", "fabricated"):
            r = run_llm_metric("faithfulness", metric, {"user_input": pair["question"], "response": pair[kind],
                                                         "retrieved_contexts": pair["contexts"]},
                               getattr(judge, "stats", None))
            row[kind] = r.get("value")
            row[f"{kind}_error"] = r.get("error")
            row[f"{kind}_seconds"] = r.get("seconds")
        row["holds"] = _finite(row["faithful"]) and _finite(row["fabricated"]) and row["faithful"] > row["fabricated"]
        rows.append(row)
        summary = _sanity_summary(rows)
        if out is not None:
            _write_json(out, summary)  # after every pair: a stopped run still has its figure so far
        if progress:
            progress(n + 1, len(pairs), f"{pair['id']}: {row['faithful']} vs {row['fabricated']}")
    return _sanity_summary(rows)


def _sanity_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    holds = sum(1 for r in rows if r["holds"])
    return {"n": len(rows), "holds": holds, "rate": round(holds / len(rows), 4) if rows else None,
            "failed": sum(1 for r in rows if not (_finite(r["faithful"]) and _finite(r["fabricated"]))),
            "pairs": rows}


# ------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------


def _parse_metrics(text: str | None) -> list[str]:
    from evals.judge import LLM_METRICS

    if text is None:
        return list(LLM_METRICS)
    names = [m.strip() for m in text.split(",") if m.strip() and m.strip() != "none"]
    unknown = [m for m in names if m not in LLM_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(LLM_METRICS)} or none")
    return names


def run_cli(args: Any, svc: Any, items: list[GoldItem]) -> int:
    """`studybot eval` without ``--retrieval-only`` (see ``ui/cli.py`` for the arguments)."""
    from evals.report import compare_runs, format_compare, format_summary

    compare = getattr(args, "compare", None)
    if compare:
        a, b = (Path(p) for p in compare)
        try:
            diff = compare_runs(a, b)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot compare {a} and {b}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        print(json.dumps(diff, indent=2) if args.json else format_compare(diff))
        return EXIT_OK

    base = Path(args.out) if getattr(args, "out", None) else svc.settings.evals_dir
    try:
        metrics = [] if getattr(args, "no_judge", False) else _parse_metrics(getattr(args, "metrics", None))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    sanity = int(getattr(args, "judge_sanity", 0) or 0)
    if sanity:
        return _cli_sanity(args, svc, items, base, sanity)

    run_dir_arg = Path(args.run_dir) if getattr(args, "run_dir", None) else None
    run_dir, resumed = resolve_run_dir(base, items, metrics, run_dir_arg, new=getattr(args, "new", False))
    if resumed:
        try:
            meta = _read_json(run_dir / "run.json")
            if meta.get("items") != [i.id for i in items] or meta.get("metrics") != metrics:
                print(f"error: {run_dir} was started with other questions or metrics (its run.json): rerun with "
                      "the same --limit/--gold/--metrics, or use --new", file=sys.stderr)
                return EXIT_ERROR
        except (OSError, ValueError):
            pass
    print(f"{'resuming' if resumed else 'run'} {run_dir} ({len(items)} questions; LLM metrics: "
          f"{', '.join(metrics) or 'none'})", file=sys.stderr)
    suite = Suite(svc, RunSpec(items, metrics, run_dir), show_bar=not args.json)
    results = suite.run()
    if args.json:
        print(json.dumps({**results["metrics"], "run_dir": str(run_dir), "detail": results["detail"],
                          "timing": results["timing"]}))
    else:
        print(format_summary(results))
        print(f"\nreport: {run_dir / 'report.md'}")
    return EXIT_OK


def _cli_sanity(args: Any, svc: Any, items: list[GoldItem], base: Path, n: int) -> int:
    from evals.judge import JudgeStats, judge_llm, open_judge

    pairs = sanity_pairs(svc, items, n)
    if not pairs:
        print("error: no answerable gold items with relevant chunks in the index", file=sys.stderr)
        return EXIT_ERROR
    out_dir = base / f"judge-sanity-{new_run_id()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=len(pairs), unit="pair", desc="judge sanity", file=sys.stderr, disable=args.json)

    def progress(done: int, total: int, msg: str) -> None:
        bar.set_postfix_str(msg)
        bar.update(done - bar.n)

    with open_judge(svc.settings, out_dir) as endpoint:
        judge = judge_llm(endpoint, svc.settings, JudgeStats())
        summary = run_judge_sanity(judge, pairs, progress, out_dir / "judge_sanity.json")
    bar.close()
    summary["judge"] = endpoint.description
    summary["judge_calls"] = judge.stats.snapshot()
    (out_dir / "judge_sanity.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(summary))
    else:
        for r in summary["pairs"]:
            print(f"{r['id']}: faithful {r['faithful']} vs fabricated {r['fabricated']} "
                  f"-> {'ok' if r['holds'] else 'NO'}")
        print(f"judge sanity: faithful > fabricated in {summary['holds']}/{summary['n']} pairs "
              f"({summary['failed']} with a failed score); {out_dir / 'judge_sanity.json'}")
    return EXIT_OK
