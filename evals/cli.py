"""`studybot eval` beyond retrieval: run (or resume) the suite, compare two runs, check the judge."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evals.gold import GoldItem
from evals.runs import RunSpec, new_run_id, read_json, resolve_run_dir
from evals.scoring import run_judge_sanity, sanity_pairs
from evals.suite import Suite, System
from rag.errors import EXIT_OK, StudybotError


def _parse_metrics(text: str | None) -> list[str]:
    from evals.scoring import DEFAULT_METRICS, JUDGED_METRICS

    if text is None:
        return list(DEFAULT_METRICS)
    names = [m.strip() for m in text.split(",") if m.strip() and m.strip() != "none"]
    unknown = [m for m in names if m not in JUDGED_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(JUDGED_METRICS)} or none")
    return names


def _parse_methods(text: str | None) -> list[str]:
    from evals.judge_accuracy import ALL_METHODS

    if not text:
        return list(ALL_METHODS)
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    return names


def run_judge_accuracy(args: Any, svc: System) -> int:
    """`studybot eval --judge-accuracy`: each faithfulness method on the labelled claims (evals.judge_accuracy);
    the result goes to ``--accuracy-out`` (default: ``evals/judge_accuracy.json`` for the project's claims
    file, merged with the methods it already holds for the same file; a run on another file goes under
    ``<STUDYBOT_HOME>/evals``). Readings are kept in ``<evals dir>/judge-accuracy-cache.jsonl`` (a stopped run
    resumes, another method re-uses the prompts read before; ``--no-cache`` reads everything again)."""
    from evals import judge_accuracy as ja
    from evals.sentences import DEFAULT_METHOD

    claims_path = Path(args.claims) if getattr(args, "claims", None) else ja.CLAIMS_PATH
    if not claims_path.is_file():
        raise StudybotError(f"No labelled claims at {claims_path}: pass --claims FILE (one JSON object a line with "
                            "question, sentence, passage and verdict).")
    try:
        names = _parse_methods(getattr(args, "methods", None))
        ja.load_claims(claims_path)
    except ValueError as exc:
        raise StudybotError(f"The claims cannot be measured: {exc}.") from exc
    base = Path(args.out) if getattr(args, "out", None) else svc.settings.storage.evals_dir
    run_id = new_run_id()
    if getattr(args, "accuracy_out", None):
        out_path = Path(args.accuracy_out)
    elif claims_path.resolve() == ja.CLAIMS_PATH.resolve():
        out_path = ja.RESULT_PATH
    else:
        out_path = base / f"judge-accuracy-{run_id}.json"
    if getattr(args, "rescore", False):
        saved = ja.load_result(out_path)
        if not saved or not saved.get("methods"):
            raise StudybotError(f"No saved judge accuracy at {out_path} to rescore: run `studybot eval "
                                "--judge-accuracy` first.")
        if saved.get("claims", {}).get("sha256") != ja.file_sha256(claims_path):
            raise StudybotError(f"{out_path} was measured on another claims file than {claims_path}: read the "
                                "claims again (`studybot eval --judge-accuracy`) instead of rescoring.")
        try:
            rescored = ja.rescore(saved, ja.load_claims(claims_path))
        except ValueError as exc:  # a malformed second reader's file
            raise StudybotError(f"The claims cannot be rescored: {exc}.") from exc
        saved = ja.save_result(rescored, out_path)
        print(json.dumps(saved) if args.json else ja.format_table(saved, default=DEFAULT_METHOD)
              + f"\n\nrescored from the saved readings (no model); saved: {out_path}")
        return EXIT_OK
    limit = int(getattr(args, "limit", 0) or 0)
    from tqdm import tqdm

    bar = tqdm(unit="claim", desc="judge accuracy", file=sys.stderr, disable=args.json, dynamic_ncols=True)

    def progress(msg: str, done: int, total: int) -> None:
        if bar.total != total or done == 1:
            bar.reset(total=total)
        bar.set_postfix_str(msg)
        bar.update(done - bar.n)

    try:
        cache = None if getattr(args, "no_cache", False) else ja.ReadingCache(base / "judge-accuracy-cache.jsonl")
        result = ja.run(svc.settings, lambda: svc.llm, claims_path, names, limit,  # type: ignore[attr-defined]
                        base / f"judge-accuracy-{run_id}", progress, cache)
    except ValueError as exc:  # a malformed second reader's file (run reads it before any model call)
        raise StudybotError(f"The claims cannot be measured: {exc}.") from exc
    finally:
        bar.close()
    saved = ja.save_result(result, out_path)
    if args.json:
        print(json.dumps({**result, "saved": str(out_path)}))
    else:
        print(ja.format_table(saved, default=DEFAULT_METHOD))
        print(f"\nthis run: {', '.join(result['methods'])}" + (f" (each on at most {limit} claims)" if limit else "")
              + f"; saved: {out_path}; bold: the method behind the default faithfulness metric")
    return EXIT_OK


def run_cli(args: Any, svc: System, items: list[GoldItem]) -> int:
    """`studybot eval` without ``--retrieval-only`` (see ``ui/cli.py`` for the arguments). A failure raises
    :class:`StudybotError` (the CLI prints it as one line, or as ``{"error": ...}`` with ``--json``)."""
    from evals.report import compare_runs, format_compare, format_summary

    if getattr(args, "judge_accuracy", False):
        return run_judge_accuracy(args, svc)
    compare = getattr(args, "compare", None)
    if compare:
        a, b = (Path(p) for p in compare)
        try:
            diff = compare_runs(a, b)
        except (OSError, ValueError, KeyError) as exc:
            raise StudybotError(f"cannot compare {a} and {b}: {exc}") from exc
        print(json.dumps(diff, indent=2) if args.json else format_compare(diff))
        return EXIT_OK

    base = Path(args.out) if getattr(args, "out", None) else svc.settings.storage.evals_dir
    try:
        metrics = [] if getattr(args, "no_judge", False) else _parse_metrics(getattr(args, "metrics", None))
    except ValueError as exc:
        raise StudybotError(str(exc)) from exc

    sanity = int(getattr(args, "judge_sanity", 0) or 0)
    if sanity:
        return _cli_sanity(args, svc, items, base, sanity)

    run_dir_arg = Path(args.run_dir) if getattr(args, "run_dir", None) else None
    run_dir, resumed = resolve_run_dir(base, items, metrics, run_dir_arg, new=getattr(args, "new", False))
    if resumed:
        try:
            meta = read_json(run_dir / "run.json")
            started_otherwise = meta.get("items") != [i.id for i in items] or meta.get("metrics") != metrics
        except (OSError, ValueError):
            started_otherwise = False
        if started_otherwise:
            raise StudybotError(f"{run_dir} was started with other questions or metrics (its run.json): rerun "
                                "with the same --limit/--gold/--metrics, or use --new")
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


def _cli_sanity(args: Any, svc: System, items: list[GoldItem], base: Path, n: int) -> int:
    from evals.judge import JudgeStats, judge_llm, open_judge

    pairs = sanity_pairs(svc, items, n)
    if not pairs:
        raise StudybotError("no answerable gold items with relevant chunks in the index")
    out_dir = base / f"judge-sanity-{new_run_id()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=len(pairs), unit="pair", desc="judge sanity", file=sys.stderr, disable=args.json)

    def progress(msg: str, done: int, total: int) -> None:
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

