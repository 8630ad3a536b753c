"""Scoring one evaluation run: the non-LLM scores of an answer (retrieval, ID-based context, citations,
refusals), the inputs and calls of the Ragas LLM metrics, the aggregation into results, and the judge's
sanity check (faithful vs fabricated answers)."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.gold import GoldItem, is_relevant
from evals.runs import RunSpec, write_json
from rag.errors import BackendUnreachableError
from rag.types import Progress

# The flat metric keys of results.json["metrics"] (and `studybot eval --json`), in report order.
RETRIEVAL_KEYS = ("hit@1", "hit@3", "hit@5", "mrr@5")
ID_KEYS = ("id_context_precision", "id_context_recall", "citation_precision")
RATE_KEYS = ("refusal_rate", "wrong_refusal_rate")
SCORE_METRICS = ("sentence_faithfulness", "faithfulness", "answer_relevancy", "context_precision", "context_recall",
                 *ID_KEYS)
# The metrics a judge reads: the default one (evals.sentences, the model in process), then Ragas' (evals.judge.
# LLM_METRICS, through the judge server). `studybot eval` scores DEFAULT_METRICS unless --metrics names others:
# the full gold set in minutes (README, Evals), the Ragas ones by name.
JUDGED_METRICS = ("sentence_faithfulness", "faithfulness", "answer_relevancy", "context_precision", "context_recall")
DEFAULT_METRICS = ("sentence_faithfulness",)
# The faithfulness figures and the judge-accuracy method behind each (evals.judge_accuracy): the report prints
# each with the method's balanced accuracy on the held-out labelled claims.
RAGAS_METHOD = "ragas"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _passage_record(p: Any) -> dict[str, Any]:
    c = getattr(p, "chunk", p)
    pid = getattr(c, "id", None) or getattr(p, "id", None)
    extra = getattr(p, "extra", None) or {}
    # rag.answer.passages merges adjacent chunks into one passage; its extra["chunk_ids"] lists them all
    return {"id": pid, "chunk_ids": list(extra.get("chunk_ids") or [pid]), "source": c.source, "text": c.text}


def answer_record(answer: Any, seconds: float) -> dict[str, Any]:
    data = answer.to_json() if hasattr(answer, "to_json") else dict(answer)
    passages = getattr(answer, "passages", None)
    if passages is None:
        passages = data.get("passages") or []
    data = {k: v for k, v in data.items() if k != "passages"}
    data["passages"] = [_passage_record(p) if not isinstance(p, dict) else p for p in passages]
    checks = getattr(answer, "checks", None)
    if checks and "checks" not in data:  # every explanation sentence's verdict (the report's drill-down)
        data["checks"] = [{"text": c.text, "supported": c.supported, "reason": c.reason, "logodds": c.logodds}
                          for c in checks]
    data["seconds"] = round(seconds, 3)
    return data



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



def _sentence_counts(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The pooled sentence counts of ``sentence_faithfulness`` (per-answer scores are in the mean)."""
    judged = [s for s in scores if "method" in s]
    out: dict[str, Any] = {k: sum(int(s.get(k, 0)) for s in judged)
                           for k in ("written", "stated", "quotes", "quotes_verbatim", "dropped")}
    out["quotes_only"] = sum(1 for s in judged if "skipped" in s)
    if judged:
        out["method"], out["threshold"] = judged[0]["method"], judged[0].get("threshold")
    return out


def lost_judge(score: Any) -> bool:
    """A score recorded when the judge was unreachable (by an older version): not a result, retry it."""
    return isinstance(score, dict) and str(score.get("error", "")).startswith("BackendError: Cannot reach")



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
        if name == "sentence_faithfulness":
            detail[name].update(_sentence_counts([(records.get(i.id) or {}).get("scores", {}).get(name) or {}
                                                  for i in items]))
        method = detail[name].get("method") or (RAGAS_METHOD if name == "faithfulness" else None)
        if method:
            from evals.judge_accuracy import accuracy_of

            detail[name]["judge_accuracy"] = accuracy_of(method)

    answerable = [i for i in items if i.answerable]
    unanswerable = [i for i in items if not i.answerable]

    def ans(i: GoldItem) -> dict[str, Any]:
        return (records.get(i.id) or {}).get("answer") or {}

    metrics["refusal_rate"] = (round(sum(bool(ans(i).get("refused")) for i in unanswerable) / len(unanswerable), 4)
                               if unanswerable else None)
    metrics["wrong_refusal_rate"] = (round(sum(bool(ans(i).get("refused")) for i in answerable) / len(answerable), 4)
                                     if answerable else None)
    answered = [i for i in items if not ans(i).get("refused") and (ans(i).get("answer") or "").strip()]
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
            write_json(out, summary)  # after every pair: a stopped run still has its figure so far
        if progress:
            progress(f"{pair['id']}: {row['faithful']} vs {row['fabricated']}", n + 1, len(pairs))
    return _sanity_summary(rows)


def _sanity_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    holds = sum(1 for r in rows if r["holds"])
    return {"n": len(rows), "holds": holds, "rate": round(holds / len(rows), 4) if rows else None,
            "failed": sum(1 for r in rows if not (_finite(r["faithful"]) and _finite(r["fabricated"]))),
            "pairs": rows}


