"""The question bank and streamed quizzes on the real model (2 cores: run it alone, it takes ~20 min idle).

    .venv/bin/python -m bench.bank                          # every part
    .venv/bin/python -m bench.bank --parts fill --sample 6  # one part

Parts (the index of the default home; the bank and the study database in a temporary folder):

* ``fill``: bank every type (flashcard, short, mcq) for ``--sample`` quizzable passages taken across the
  handbooks (round robin over the files, seeded), timed per type with its model calls; extrapolated to every
  quizzable passage of the index (a sample: MCQ distractor glossaries are cached less than in a full run, so the
  extrapolation is on the high side).
* ``warm``: ``--warm-items`` flashcards banked for ``--topic``, then a 10-question flashcard quiz on it
  (``StudyService.quiz_stream``): seconds to the first question and to all ten (targets 1 s / 3 s).
* ``cold`` (first, on the empty bank): a topic with nothing banked (``--cold-topic``): seconds to the first
  question of a 10-question MCQ quiz (fast start: a flashcard first) and of a short-answer quiz (target 15 s).
* ``ask``: ``--asks`` gold questions answered on an idle app, then again while the bank's worker fills the bank
  (each ask after a pause of 6-12 s, so the worker is writing an item when it comes): the extra seconds per
  question (same question, same work), their mean and p95 (target 2 s), how many bank generations were cut
  off, and for those the seconds from the ask's start to the bank's call releasing the model (the wait the bank
  itself causes; the paired difference also holds the host's noise).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.quiz import QuizSession, quizzable
from rag.quiz.bank import BANK_TYPES
from rag.settings import Settings, apply_offline_env
from ui.service import StudyService

ROOT = Path(__file__).resolve().parent.parent


def load_line() -> str:
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load ?"


def sample_chunks(svc: StudyService, n: int, seed: int) -> list[Any]:
    """``n`` quizzable passages, one file after another in turn (random within a file, seeded)."""
    rng = random.Random(seed)
    by_file: dict[str, list[Any]] = {}
    for c in svc.retriever.chunks.values():
        if quizzable(c):
            by_file.setdefault(c.source, []).append(c)
    for chunks in by_file.values():
        chunks.sort(key=lambda c: c.ordinal)
        rng.shuffle(chunks)
    files = sorted(by_file)
    out: list[Any] = []
    while len(out) < n and any(by_file.values()):
        for f in files:
            if by_file[f] and len(out) < n:
                out.append(by_file[f].pop())
    return out


def part_fill(svc: StudyService, args: argparse.Namespace) -> dict[str, Any]:
    chunks = sample_chunks(svc, args.sample, args.seed)
    total = len({c.content_hash for c in svc.retriever.chunks.values() if quizzable(c)})
    filler = svc.bank_filler()
    time.sleep(svc.settings.quiz.bank_idle_s)  # the bank's model view waits this long after the warm-up
    rows: dict[str, Any] = {}
    for qtype in BANK_TYPES:
        rep = filler.fill(filler.todo(chunks, [qtype], spread=False))
        rows[qtype] = {"passages": rep.tried, "made": rep.made, "seconds": round(rep.seconds, 1), "calls": rep.calls,
                       "s_per_passage": round(rep.seconds / max(rep.tried, 1), 1),
                       "calls_per_passage": round(rep.calls / max(rep.tried, 1), 2)}
        print(f"fill {qtype:9} {rep.tried} passages: {rep.made} made, {rep.calls} calls, {rep.seconds:.1f} s "
              f"({load_line()})", file=sys.stderr)
    per_passage_s = sum(r["s_per_passage"] for r in rows.values())
    per_passage_calls = sum(r["calls_per_passage"] for r in rows.values())
    made = sum(r["made"] for r in rows.values())
    tried = sum(r["passages"] for r in rows.values())
    return {"sample": len(chunks), "files": len({c.source for c in chunks}), "quizzable_passages": total,
            "by_type": rows, "extrapolated_hours": round(per_passage_s * total / 3600, 2),
            "extrapolated_calls": round(per_passage_calls * total),
            "extrapolated_items": round(made / max(tried, 1) * total * len(BANK_TYPES))}


def part_warm(svc: StudyService, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    rep = svc.fill_bank(args.topic, ["flashcard"], limit=args.warm_items)
    fill_s = time.perf_counter() - t0
    print(f"warm: banked {rep.made} flashcards for {args.topic!r} in {fill_s:.1f} s ({load_line()})", file=sys.stderr)
    runs = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        stream = svc.quiz_stream(args.topic, 10, "flashcard", session=QuizSession(seed))
        first = next(stream)
        t_first = time.perf_counter() - start
        rest = list(stream)
        t_all = time.perf_counter() - start
        assert first is not None
        runs.append({"first_s": round(t_first, 3), "all_s": round(t_all, 3), "items": 1 + len(rest),
                     "banked": len(stream.banked)})
        print(f"warm quiz: first {t_first:.2f} s, all {1 + len(rest)} in {t_all:.2f} s, {len(stream.banked)} banked",
              file=sys.stderr)
    return {"topic": args.topic, "banked_for_topic": rep.made, "fill_s": round(fill_s, 1), "runs": runs}


def part_cold(svc: StudyService, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"topic": args.cold_topic}
    for qtype in ("mcq", "short"):
        start = time.perf_counter()
        stream = svc.quiz_stream(args.cold_topic, 10, qtype, session=QuizSession(0), fast_start=True)
        banked = len(stream.banked)
        if banked:
            print(f"cold {qtype}: {banked} item(s) banked for {args.cold_topic!r}: not a cold topic", file=sys.stderr)
        first = next(stream)
        t_first = time.perf_counter() - start
        stream.close(wait=True)  # the item in progress is finished before the next measurement
        out[qtype] = {"first_s": round(t_first, 1), "first_type": first.type, "banked": banked}
        print(f"cold {qtype}: first question ({first.type}) in {t_first:.1f} s, {banked} banked ({load_line()})",
              file=sys.stderr)
    return out


def gold_questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "evals" / "gold.jsonl").read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows if r.get("answerable")][:n]


def part_ask(svc: StudyService, args: argparse.Namespace) -> dict[str, Any]:
    *questions, spare = gold_questions(args.asks + 1)
    svc.ask(spare)  # warm: the model loaded, the answer path's prefix evaluated (a question not measured)
    idle: list[float] = []
    for q in questions:
        start = time.perf_counter()
        svc.ask(q)
        idle.append(time.perf_counter() - start)
        print(f"ask idle {idle[-1]:5.1f} s  {q[:60]}", file=sys.stderr)
    worker = svc.start_bank_worker()
    assert worker is not None
    rng = random.Random(args.seed)
    busy: list[float] = []
    in_flight: list[bool] = []
    try:
        for q in questions:
            time.sleep(rng.uniform(6, 12))
            preempted = svc.gate.preemptions
            start = time.perf_counter()
            svc.ask(q)
            busy.append(time.perf_counter() - start)
            in_flight.append(svc.gate.preemptions > preempted)
            print(f"ask busy {busy[-1]:5.1f} s  (bank generation cut off: {in_flight[-1]}; worker {worker.status()}) "
                  f"({load_line()})", file=sys.stderr)
    finally:
        svc.stop_bank_worker()
    extra = [b - i for b, i in zip(busy, idle, strict=True)]
    ranked = sorted(extra)
    p95 = ranked[min(len(ranked) - 1, round(0.95 * (len(ranked) - 1)))]
    yields = sorted(svc.gate.yields)
    return {"n": len(questions), "idle_s": [round(x, 2) for x in idle], "busy_s": [round(x, 2) for x in busy],
            "extra_s": [round(x, 2) for x in extra], "extra_mean_s": round(statistics.mean(extra), 2),
            "extra_p95_s": round(p95, 2), "cut_off": sum(in_flight), "worker": worker.status(),
            "release_s": [round(x, 3) for x in yields], "release_max_s": round(yields[-1], 3) if yields else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="cold,warm,ask,fill")
    p.add_argument("--sample", type=int, default=9, help="passages banked in the fill part (default 9)")
    p.add_argument("--topic", default="regularization", help="the warm part's topic")
    p.add_argument("--warm-items", type=int, default=12, help="flashcards banked for the warm topic (default 12)")
    p.add_argument("--repeats", type=int, default=3, help="warm quizzes timed (default 3)")
    p.add_argument("--cold-topic", default="k-means clustering")
    p.add_argument("--asks", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    apply_offline_env()
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="studybot-bank-") as tmp:
        settings = Settings().updated(storage={"study_db": Path(tmp) / "study.sqlite3"})
        svc = StudyService(settings)
        t0 = time.perf_counter()
        svc.warm_up(search=True)  # what `studybot serve` does before the first request: model, embedder, index
        print(f"model {svc.llm.name} ready in {time.perf_counter() - t0:.1f} s; {load_line()}", file=sys.stderr)
        results: dict[str, Any] = {"start": load_line()}
        for part in parts:
            results[part] = {"fill": part_fill, "warm": part_warm, "cold": part_cold, "ask": part_ask}[part](svc, args)
        results["end"] = load_line()
        results["bank"] = svc.bank_status().line()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
