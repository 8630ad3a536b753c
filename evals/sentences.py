"""An answer's sentences, each with its verdict and the passage it cites: the default faithfulness metric
(``sentence_faithfulness``) and the drill-down of the report.

An answer shows quotes (handbook units, verbatim) and then the explanation's written sentences, each cited.
:func:`answer_sentences` lists them from a saved answer (``items/<id>.json``): each quote (checked to be
verbatim in its passage: no model), each shown written sentence with the passage(s) it cites, and each
sentence the pipeline wrote but dropped (with the Verifier's reason). :func:`judge_answer` reads every shown
written sentence against its cited passage with a judge-accuracy :class:`~evals.judge_accuracy.Method` (the
same code that was measured on the labelled claims) and scores the answer: the share of its shown written
sentences judged stated. An answer with quotes only has nothing written to judge (skipped, counted); a refusal
is skipped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evals.gold import normalize
from evals.judge_accuracy import Claim, Method

if TYPE_CHECKING:
    from rag.llm import LLM
    from rag.settings import Settings

SENTENCE_METRIC = "sentence_faithfulness"
# The method that judges the default metric: the one with the best balanced accuracy on the claims' tune half
# (evals/judge_accuracy.json, 2026-12-06): "focus_pmi" (focus's log-odds + 0.25 x the sentence's least supported
# token) 0.77 on tune, ahead of "focus" (the NLI prompt on the passage's 3 units nearest the sentence) 0.75 and
# "yesno" 0.72. README, Evals, gives the held-out figures.
DEFAULT_METHOD = "focus_pmi"
# What judges it on a backend that gives no token log-probabilities (an OpenAI-compatible server): focus alone.
FALLBACK_METHOD = "focus"


def default_method(settings: Settings, llm: LLM) -> Method:
    """The default metric's method on ``llm``: :data:`DEFAULT_METHOD`, or :data:`FALLBACK_METHOD` when the
    backend cannot give token log-probabilities."""
    from evals.judge_accuracy import ModelReaders

    methods = ModelReaders(settings, llm).methods()
    return methods[DEFAULT_METHOD if hasattr(llm, "token_logprobs") else FALLBACK_METHOD]


def _passages(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return list(answer.get("passages") or [])


def _source_of(answer: dict[str, Any], n: int) -> str:
    for c in answer.get("citations") or []:
        if c.get("n") == n:
            return f"{c.get('title') or c.get('source', '')} — {c.get('section') or '(start)'}"
    ps = _passages(answer)
    return str(ps[n - 1].get("source", "")) if 0 < n <= len(ps) else ""


def _passage_text(answer: dict[str, Any], numbers: Sequence[int]) -> str:
    ps = _passages(answer)
    by_cite = {c.get("n"): c.get("text", "") for c in answer.get("citations") or []}
    texts = []
    for n in numbers:
        text = ps[n - 1].get("text", "") if 0 < n <= len(ps) else by_cite.get(n, "")
        if text:
            texts.append(str(text))
    return "\n\n".join(texts)


_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]*-[\s:|-]*\|?\s*$")


def is_verbatim(quote: str, passage: str) -> bool:
    """A quote is the passage's own words: each of its lines is in the passage (a unit joins a list item to its
    intro and a table row to its header, which the passage need not hold side by side, and draws the header's
    ``|---|`` rule itself; ``rag.units``)."""
    body = normalize(passage)
    lines = [normalize(line) for line in quote.splitlines() if line.strip() and not _TABLE_RULE.match(line)]
    return bool(lines) and all(line in body for line in lines)


def answer_sentences(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's sentences in the order shown: quotes (``kind`` "quote", ``verbatim``), written sentences
    (``kind`` "written"), then those the pipeline dropped (``kind`` "dropped", ``reason``, ``logodds``). Each has
    ``cites`` (passage numbers) and ``passage`` (their text)."""
    from rag.citations import cited_numbers
    from rag.units import split_units

    if answer.get("refused") or not (answer.get("answer") or "").strip():
        return []
    valid = set(range(1, len(_passages(answer)) + 1)) | {int(c.get("n") or 0) for c in answer.get("citations") or []}
    quoted: list[int] = []
    out: list[dict[str, Any]] = []
    for q in answer.get("quotes") or []:
        n = int((q.get("citation") or {}).get("n") or 0)
        passage = _passage_text(answer, [n]) or str((q.get("citation") or {}).get("text", ""))
        quoted.append(n)
        out.append({"kind": "quote", "text": q.get("text", ""), "cites": [n], "passage": passage,
                    "source": _source_of(answer, n),
                    "verbatim": is_verbatim(q.get("text", ""), passage)})
    for unit in split_units(answer.get("explanation") or ""):
        cites = cited_numbers(unit.text, valid) or list(dict.fromkeys(quoted))
        out.append({"kind": "written", "text": unit.text, "cites": cites, "passage": _passage_text(answer, cites),
                    "source": "; ".join(_source_of(answer, n) for n in cites)})
    for c in answer.get("checks") or []:
        if c.get("supported"):
            continue
        cites = cited_numbers(c.get("text", ""), valid) or list(dict.fromkeys(quoted))
        out.append({"kind": "dropped", "text": c.get("text", ""), "cites": cites, "reason": c.get("reason"),
                    "logodds": c.get("logodds"), "passage": _passage_text(answer, cites),
                    "source": "; ".join(_source_of(answer, n) for n in cites)})
    return out


def judge_answer(question: str, answer: dict[str, Any], method: Method, threshold: float,
                 item_id: str = "") -> dict[str, Any]:
    """The answer's ``sentence_faithfulness`` score: ``value`` = stated / shown written sentences, and every
    sentence with its verdict (``sentences``). Skipped (with the sentences) when refused or nothing is written."""
    if answer.get("refused") or not (answer.get("answer") or "").strip():
        return {"skipped": "refused"}
    t = time.perf_counter()
    sentences = answer_sentences(answer)
    for i, s in enumerate(sentences):
        if s["kind"] != "written":
            continue
        if not s["passage"]:
            s["verdict"] = "no passage"
            continue
        claim = Claim(id=f"{item_id}:{i}", question=question, sentence=s["text"], passage=s["passage"], stated=True,
                      question_id=item_id, source=s.get("source", ""))
        reading = float(method.read(claim))
        s["reading"] = round(reading, 3)
        s["verdict"] = "stated" if reading >= threshold else "not stated"
    written = [s for s in sentences if s["kind"] == "written"]
    out: dict[str, Any] = {"method": method.name, "threshold": threshold, "sentences": sentences,
                           "written": len(written), "stated": sum(s.get("verdict") == "stated" for s in written),
                           "quotes": sum(s["kind"] == "quote" for s in sentences),
                           "quotes_verbatim": sum(bool(s.get("verbatim")) for s in sentences if s["kind"] == "quote"),
                           "dropped": sum(s["kind"] == "dropped" for s in sentences)}
    if not written:
        out["skipped"] = "quotes only (no written sentence to judge)"
    else:
        out["value"] = out["stated"] / len(written)
    out["seconds"] = round(time.perf_counter() - t, 3)
    return out


def method_threshold(method: Method, fallback: float, result: dict[str, Any] | None = None) -> float:
    """The threshold the metric judges with: the method's fixed one, else the one chosen on the claims' tune
    half (``evals/judge_accuracy.json``), else ``fallback``: the answer path's own ``answer.verify_min_logodds``
    (read on the gold/holdout explanation sentences; rag.settings)."""
    if method.threshold is not None:
        return method.threshold
    from evals.judge_accuracy import load_result

    data = result if result is not None else load_result()
    fig = ((data or {}).get("methods") or {}).get(method.name) or {}
    t = fig.get("threshold")
    return float(t) if isinstance(t, int | float) and fig.get("tuned") else fallback
