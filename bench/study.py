"""The study loop on the real model: seconds per study guide and per weak-spot question, on an idle machine;
and the FSRS optimiser on a synthetic review history (no model).

    .venv/bin/python -m bench.study [--topics regularization,"gradient descent"] [--weak 3] [--out DIR]
    .venv/bin/python -m bench.study --fsrs-only [--cards 200] [--days 365] [--seed 7]

Guides: one per topic (kept / dropped lines, seconds), written to DIR as Markdown and as JSON with the
cited passages' text, to judge by reading. Weak spots: a
temporary study database gets a history in which two sections were forgotten (cards rated "again"), then
``StudyService.weak_quiz`` writes ``--weak`` MCQs from them (seconds per valid question, and whether each
came from a weak section and repeats no card). Run it alone: two model jobs at once slow each other.

Optimiser: a student whose memory follows known non-default FSRS parameters (:data:`TRUE_PARAMETERS`) reviews
``--cards`` cards for ``--days`` days when FSRS's default scheduler says (``rag.study.schedule.simulate_reviews``,
seeded); the reviews go into a temporary study database through ``StudyStore.review`` and
``StudyStore.optimize`` (what `studybot schedule --optimize` runs) fits the parameters. Printed: the log-loss of
the defaults and of the fitted parameters on that history, the seconds it took, and, for reference, the true
parameters' log-loss and all three on a second history of the same student (another seed) the fit never saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rag.quiz import QuizError, QuizItem, QuizSession
from rag.settings import Settings, apply_offline_env
from rag.study.schedule import DEFAULT_PARAMETERS, counted_reviews, log_loss, simulate_reviews
from rag.study.store import StudyStore, top_section
from rag.types import Citation
from ui.render import guide_markdown
from ui.service import StudyService

TOPICS = ["regularization", "gradient descent", "random forests"]
# The simulated student forgets faster than FSRS's defaults assume: smaller initial stabilities (w0-w3), a smaller
# stability increase after a success (w8) and a steeper forgetting curve (decay w20 0.35 instead of 0.1542).
TRUE_PARAMETERS = [0.1, 0.4, 0.9, 3.0, *DEFAULT_PARAMETERS[4:8], 1.2, *DEFAULT_PARAMETERS[9:20], 0.35]


def bench_optimizer(out: Path, cards: int, days: int, seed: int) -> dict[str, object]:
    """The FSRS optimiser on a seeded synthetic history, through the study database (see the docstring)."""
    retention = Settings().study.desired_retention  # the app's scheduler, as a user who set none has it
    history = simulate_reviews(TRUE_PARAMETERS, cards=cards, days=days, seed=seed, retention=retention)
    path = out / "optimizer.sqlite3"
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)  # a rerun into the same folder starts from an empty history
    store = StudyStore(path)
    user = "simulated"
    ids = store.add_items(user, [QuizItem("flashcard", f"Simulated card {n}?", "an answer", "", [],
                                          Citation(1, f"sim{n}", "sim.md", "Sim", "Sim", None, "text"))
                                 for n in range(1, cards + 1)], now=history[0].at)
    for r in sorted(history, key=lambda r: r.at):
        store.review(user, ids[r.card - 1], r.rating, now=r.at)
    start, cpu = time.perf_counter(), time.process_time()
    result = store.optimize(user)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    run = result["optimization"]
    unseen = simulate_reviews(TRUE_PARAMETERS, cards=cards, days=days, seed=seed + 1, retention=retention)
    row: dict[str, object] = {
        "cards": cards, "days": days, "seed": seed, "reviews": len(history), "counted": counted_reviews(history),
        "log_loss_defaults": run["log_loss_before"], "log_loss_fitted": run["log_loss_after"],
        "log_loss_true": round(log_loss(history, TRUE_PARAMETERS) or 0, 4), "adopted": run["adopted"],
        "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "fit_seconds": run["seconds"],
        "unseen": {"reviews": len(unseen), "log_loss_defaults": round(log_loss(unseen) or 0, 4),
                   "log_loss_fitted": round(log_loss(unseen, result["parameters"]) or 0, 4),
                   "log_loss_true": round(log_loss(unseen, TRUE_PARAMETERS) or 0, 4)},
        "parameters": [round(w, 4) for w in result["parameters"]]}
    print(f"optimiser: {len(history)} reviews ({row['counted']} counted) of {cards} cards over {days} days: log-loss "
          f"defaults {row['log_loss_defaults']} -> fitted {row['log_loss_fitted']} (true parameters "
          f"{row['log_loss_true']}) in {seconds:.1f} s ({cpu:.1f} s of CPU)", file=sys.stderr)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topics", default=",".join(TOPICS))
    p.add_argument("--weak", type=int, default=3, help="weak-spot MCQs to write (0: none)")
    p.add_argument("--out", default=None, help="where the guides (.md) and the summary (study.json) go")
    p.add_argument("--fsrs-only", action="store_true", help="only the FSRS optimiser (no model)")
    p.add_argument("--cards", type=int, default=200, help="the optimiser's simulated cards")
    p.add_argument("--days", type=int, default=365, help="... and days of reviews")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    apply_offline_env()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-study-"))
    out.mkdir(parents=True, exist_ok=True)
    optimizer = bench_optimizer(out, args.cards, args.days, args.seed)
    if args.fsrs_only:
        (out / "study.json").write_text(json.dumps({"optimizer": optimizer}, indent=1), encoding="utf-8")
        print_optimizer(optimizer)
        print(f"\noutput: {out}")
        return 0
    base = Settings()
    settings = base.updated(storage={"study_db": out / "study.sqlite3"})
    svc = StudyService(settings)
    t0 = time.perf_counter()
    svc.warm_up()  # the model loaded, the fixed prompt evaluated
    svc.retriever.refresh()
    print(f"model ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    summary: dict[str, object] = {"guides": [], "weak": None, "optimizer": optimizer}
    guides: list[dict[str, object]] = []
    for topic in [t.strip() for t in args.topics.split(",") if t.strip()]:
        start = time.perf_counter()
        guide = svc.guide(topic)
        seconds = time.perf_counter() - start
        data = guide.to_json()
        slug = "".join(ch if ch.isalnum() else "-" for ch in topic.lower())
        (out / f"guide-{slug}.md").write_text(guide_markdown(data), encoding="utf-8")
        (out / f"guide-{slug}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        row = {"topic": topic, "seconds": round(seconds, 1), "terms": len(guide.terms),
               "summary": len(guide.summary), "questions": len(guide.questions), "dropped": guide.dropped,
               "reasons": guide.reasons}
        guides.append(row)
        print(f"guide {topic!r}: {seconds:.1f} s, {len(guide.lines)} lines kept, {guide.dropped} dropped",
              file=sys.stderr)
    summary["guides"] = guides
    result = None
    if args.weak:
        user = "bench"
        chunks = [c for c in svc.retriever.chunks.values() if c.section and len(c.text) > 300]
        seen: dict[tuple[str, str], object] = {}
        for c in chunks:
            key = (c.source, top_section(c.section))
            if key not in seen:
                seen[key] = c
        picked = list(seen.values())[:4]
        items = [QuizItem("flashcard", f"Bench card {i}: what does this passage say?", c.text.split(".")[0][:80],  # type: ignore[attr-defined]
                          "", [], Citation.of(1, c)) for i, c in enumerate(picked)]  # type: ignore[arg-type]
        ids = svc.record_quiz(user, items)
        for iid, rating in zip(ids, ["again", "again", "good", "easy"], strict=True):
            svc.study.review(user, iid, rating)
        weak_keys = {(w["source"], w["section"]) for w in svc.study.weak_sections(user)}
        before = set(svc.study.questions(user))
        start = time.perf_counter()
        try:
            result, weak = svc.weak_quiz(user, args.weak, "mcq", session=QuizSession(0))
        except QuizError as exc:  # every attempt failed validation: a figure too
            summary["weak"] = {"asked": args.weak, "valid": 0, "error": str(exc),
                               "seconds": round(time.perf_counter() - start, 1)}
            print(f"weak spots: {exc}", file=sys.stderr)
            result = None
        seconds = time.perf_counter() - start
    if result is not None:
        from_weak = sum((i.citation.source, top_section(i.citation.section)) in weak_keys for i in result.items)
        summary["weak"] = {"asked": args.weak, "valid": len(result.items), "generated": result.generated,
                           "seconds": round(seconds, 1),
                           "s_per_question": round(seconds / len(result.items), 1) if result.items else None,
                           "from_weak_sections": from_weak, "repeats": sum(i.question in before for i in result.items),
                           "weak_sections": [w["section"] for w in weak], "reasons": result.reasons,
                           "questions": [i.question for i in result.items]}
        print(f"weak spots: {len(result.items)} MCQs in {seconds:.1f} s", file=sys.stderr)
    (out / "study.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    print("| guide topic | seconds | terms | summary | questions | dropped |\n|---|---|---|---|---|---|")
    for g in guides:
        print(f"| {g['topic']} | {g['seconds']} | {g['terms']} | {g['summary']} | {g['questions']} | {g['dropped']} |")
    if summary["weak"]:
        w = summary["weak"]
        print(f"\nweak-spot MCQs: {w['valid']}/{w['asked']} in {w['seconds']} s ({w.get('s_per_question')} s per "  # type: ignore[union-attr,index]
              f"question; {w.get('generated')} generated; from weak sections {w.get('from_weak_sections')}; "  # type: ignore[union-attr]
              f"repeats {w.get('repeats')}; {w.get('error', '')})")  # type: ignore[union-attr]
    print_optimizer(optimizer)
    print(f"\noutput: {out}")
    return 0


def print_optimizer(o: dict[str, object]) -> None:
    unseen = o["unseen"]
    assert isinstance(unseen, dict)
    print(f"\n| FSRS optimiser ({o['reviews']} reviews, {o['counted']} counted; {o['cards']} cards, {o['days']} days, "
          f"seed {o['seed']}) | defaults | fitted | true parameters |\n|---|---|---|---|")
    print(f"| log-loss on the history it was fitted on | {o['log_loss_defaults']} | {o['log_loss_fitted']} | "
          f"{o['log_loss_true']} |")
    print(f"| log-loss on another history of the same student ({unseen['reviews']} reviews) | "
          f"{unseen['log_loss_defaults']} | {unseen['log_loss_fitted']} | {unseen['log_loss_true']} |")
    print(f"\noptimised in {o['seconds']} s ({o['cpu_seconds']} s of CPU; the fit {o['fit_seconds']} s); parameters "
          f"adopted: {o['adopted']}")


if __name__ == "__main__":
    sys.exit(main())
