"""`studybot eval`: answer every gold question with the real pipeline, then score it.

Scores per run:

* retrieval (no LLM): hit@1/3/5 and MRR@5 of hybrid retrieval (``evals.retrieval``);
* ID-based context precision / recall (no LLM): which passages given to the model are relevant, decided by
  the gold phrases (``evals.gold.is_relevant``), against every relevant chunk in the index; citation
  precision: the share of cited passages that are relevant;
* refusals (no LLM): refusal rate on unanswerable items, wrong refusals on answerable ones;
* ``sentence_faithfulness`` (the default LLM metric, :mod:`evals.sentences`): the share of each answer's shown
  written sentences that the passage they cite states, read by the judge-accuracy method that measured best at
  a cost the full gold set affords (one forward pass per sentence, the model in process; no judge server);
* Ragas 0.4 LLM-judged metrics (``evals.judge``), by name: faithfulness, answer relevancy, context precision
  and context recall (the last two against the gold reference).

Each metric reports ``n_scored`` / ``n_failed`` / ``n_skipped`` and the judge's parse failures: a NaN or a
failed judge call is never averaged away silently.

A run lives in one directory (``<evals_dir>/<run id>``): ``run.json`` (what is evaluated), ``items/<id>.json``
(the answer and scores of each question, written as soon as they exist), then ``results.json``,
``report.md`` and PNG charts. A killed run resumes where it stopped when rerun with the same ``--run-dir`` -
or with no ``--run-dir`` at all, which continues the latest unfinished run of the same questions and metrics.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evals.gold import GoldItem, is_relevant
from evals.runs import RunSpec, previous_run, read_json, write_json
from evals.scoring import aggregate, answer_record, id_scores, llm_metric_inputs, lost_judge, run_llm_metric
from evals.sentences import SENTENCE_METRIC
from rag.errors import BackendUnreachableError
from rag.settings import Settings
from rag.types import Progress

if TYPE_CHECKING:
    from rag.answer import Answer
    from rag.backends.embeddings import TextEmbedder
    from rag.backends.store import Index
    from rag.retrieval import Retriever


class System(Protocol):
    """What a run evaluates: the answering system (``ui.service.StudyService`` is one)."""

    settings: Settings

    @property
    def index(self) -> Index: ...

    @property
    def embedder(self) -> TextEmbedder: ...

    @property
    def retriever(self) -> Retriever: ...

    def ask(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Answer: ...


@dataclass
class Suite:
    """One evaluation run over a :class:`ui.service.StudyService`.

    ``judge_factory(run_dir)`` is a context manager yielding a :class:`evals.judge.RagasJudgeLLM` (default:
    the local/configured judge endpoint); it is entered only when some item still needs an LLM metric.
    """

    service: System
    spec: RunSpec
    judge_factory: Callable[[Path], Any] | None = None
    embeddings: Any = None
    progress: Progress | None = None
    show_bar: bool = False
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    sentence_method: Any = None  # an evals.judge_accuracy.Method (default: evals.sentences.default_method)
    _judge: Any = None
    _metrics: dict[str, Any] = field(default_factory=dict)
    _sentence: tuple[Any, float] | None = None
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
            strictness = self.service.settings.judge.relevancy_strictness
            ragas = [m for m in self.spec.metrics if m != SENTENCE_METRIC]
            self._metrics = build_metrics(self._judge, emb, ragas, strictness=strictness)
        return self._judge

    def _sentence_judge(self) -> tuple[Any, float]:
        """The method that reads ``sentence_faithfulness`` and its threshold (built once, on first use)."""
        if self._sentence is None:
            from evals.sentences import default_method, method_threshold

            method = self.sentence_method
            if method is None:
                llm = self.service.llm  # type: ignore[attr-defined]  # StudyService has it; fakes pass a method
                method = default_method(self.service.settings, llm)
            self._sentence = (method, method_threshold(method, self.service.settings.answer.verify_min_logodds))
        return self._sentence

    # -- run -------------------------------------------------------------------------------------------
    def write_meta(self) -> None:
        path = self.run_dir / "run.json"
        meta = read_json(path) if path.is_file() else {"run_id": self.run_dir.name, "started": time.time()}
        meta.update(self.spec.identity())
        meta["judge"] = self.spec.judge or meta.get("judge", "")
        s = self.service.settings
        meta["settings"] = s.model_dump(mode="json", include={
            "retrieval": {"top_k", "fetch_k", "rrf_k"},
            "llm": {"backend", "model", "base_url", "max_tokens", "temperature"},
            "answer": {"judge_top_k", "judge_weight", "refuse_below_answers", "max_quotes", "verify_min_logodds"},
            "judge": {"base_url", "model", "gguf", "max_tokens", "retries", "relevancy_strictness"},
        })
        write_json(path, meta)

    def retrieval(self) -> dict[str, Any]:
        """Hybrid retrieval metrics (cached in the run directory)."""
        from evals.retrieval import evaluate_retrieval

        path = self.run_dir / "retrieval.json"
        if path.is_file():
            return read_json(path)
        result = evaluate_retrieval(self.service.retriever, self.spec.items, modes=("hybrid",))
        write_json(path, result)
        return result

    def answer(self, item: GoldItem) -> dict[str, Any]:
        path = self._item_path(item)
        if path.is_file():
            rec = read_json(path)
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
        write_json(path, rec)
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
            write_json(self._item_path(item), rec)
        return rec

    def score_metric(self, item: GoldItem, rec: dict[str, Any], name: str, stack: contextlib.ExitStack) -> None:
        """One LLM-judged metric on one item, cached in the item's file."""
        scores = rec.setdefault("scores", {})
        if name in scores and not lost_judge(scores[name]):
            return  # cached (a judge failure is cached too: delete the item file to retry it)
        if rec["answer"].get("error"):
            scores[name] = {"skipped": "answer failed"}
        elif name == SENTENCE_METRIC:
            from evals.sentences import judge_answer

            method, threshold = self._sentence_judge()
            scores[name] = judge_answer(item.question, rec["answer"], method, threshold, item.id)
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
        write_json(self._item_path(item), rec)  # after every metric: a kill loses one judge call at most

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
                self.progress(msg, done, steps)

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
        write_json(self.run_dir / "results.json", results)
        from evals.report import write_report

        write_report(self.run_dir, results, previous_run(self.run_dir))
        return results


