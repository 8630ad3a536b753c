"""The `studybot` command line: a thin layer over :class:`rag.service.StudyService`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.errors import StudybotError
from rag.settings import apply_offline_env

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

Command = Callable[[argparse.Namespace, Any], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def _service(args: argparse.Namespace) -> Any:
    from rag.service import StudyService
    from rag.settings import Settings

    return StudyService(Settings())


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
@command("ingest")
def cmd_ingest(args: argparse.Namespace, svc: Any) -> int:
    path = Path(args.path) if args.path else svc.settings.corpus_dir
    summary = svc.ingest(path, rebuild=args.rebuild, show_progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        for line in summary.lines():
            print(line)
    return EXIT_OK if summary.ok else EXIT_FAILED


def _print_passages(passages: list[Any]) -> None:
    for n, p in enumerate(passages, start=1):
        c = p.chunk
        page = f", p. {c.page}" if c.page else ""
        print(f"[{n}] {c.title} — {c.section or '(start)'}{page}  ({c.source}, score {p.score:.4f})")
        body = c.text if len(c.text) <= 400 else c.text[:400] + " …"
        print("    " + body.replace("\n", "\n    "))


@command("retrieve")
def cmd_retrieve(args: argparse.Namespace, svc: Any) -> int:
    if args.question is not None:
        passages = svc.retrieve(args.question, args.k, args.mode)
        if args.json:
            print(json.dumps([p.to_json() for p in passages], ensure_ascii=False))
        else:
            _print_passages(passages)
        return EXIT_OK
    status = EXIT_OK
    for line in sys.stdin:  # batch mode: one question per line, one JSON list per line
        question = line.rstrip("\n")
        try:
            passages = svc.retrieve(question, args.k, args.mode)
            print(json.dumps([p.to_json() for p in passages], ensure_ascii=False), flush=True)
        except StudybotError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
            status = EXIT_FAILED
    return status


@command("doctor")
def cmd_doctor(args: argparse.Namespace, svc: Any) -> int:
    if args.fix and svc.settings.llm_model is None and svc.settings.llm_backend == "llama_cpp":
        from rag.models import ensure_default_gguf

        ensure_default_gguf(svc.settings, show_progress=True)
    rows = svc.doctor()
    if args.json:
        print(json.dumps([{"check": c, "ok": ok, "detail": d} for c, ok, d in rows]))
    else:
        for check, ok, detail in rows:
            print(f"{'ok  ' if ok else 'FIX '} {check:<18} {detail}")
    return EXIT_OK if all(ok for _, ok, _ in rows) else EXIT_FAILED


@command("eval")
def cmd_eval(args: argparse.Namespace, svc: Any) -> int:
    from evals.gold import load_gold
    from evals.retrieval import evaluate_retrieval, format_table

    items = load_gold(Path(args.gold)) if args.gold else load_gold()
    if args.limit:
        items = items[: args.limit]
    if not args.retrieval_only or getattr(args, "compare", None):
        from evals import suite

        return suite.run_cli(args, svc, items)
    result = evaluate_retrieval(svc.retriever, items)
    if args.json:
        print(json.dumps(result["modes"]))
    else:
        print(format_table(result))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# Further commands live in their own modules; each defines ``add_parsers(sub)`` and registers its handlers
# with ``@command``. Add a module here to add its commands.
COMMAND_MODULES: list[str] = ["ui.cli_serve", "ui.cli_answer", "ui.cli_quiz"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studybot", description="Offline study chatbot over ML interview handbooks.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="ingest a folder or file into the index (incremental)")
    s.add_argument("path", nargs="?", help="folder or file (default: the bundled corpus)")
    s.add_argument("--rebuild", action="store_true", help="start the index over")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("retrieve", help="print the passages retrieved for a question")
    s.add_argument("question", nargs="?", help="the question; without it, read one question per line from stdin")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("doctor", help="report what is installed, verified and indexed")
    s.add_argument("--fix", action="store_true", help="assemble and verify the default model")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("eval", help="evaluate retrieval (and answers) on the gold set")
    s.add_argument("--retrieval-only", action="store_true")
    s.add_argument("--limit", type=int, default=0)
    s.add_argument("--gold", help="a gold .jsonl (default: evals/gold.jsonl)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--metrics", help="LLM-judged metrics, comma-separated (default: faithfulness,"
                   "answer_relevancy,context_precision,context_recall; 'none' for none)")
    s.add_argument("--no-judge", action="store_true", help="answers and non-LLM metrics only")
    s.add_argument("--run-dir", help="the run directory (resumes it if it exists); default: continue the latest "
                   "unfinished run of the same questions, else a new one under --out")
    s.add_argument("--out", help="where run directories go (default: <STUDYBOT_HOME>/evals)")
    s.add_argument("--new", action="store_true", help="start a new run even if the latest one is unfinished")
    s.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="print metric deltas B - A of two runs")
    s.add_argument("--judge-sanity", type=int, default=0, metavar="N",
                   help="score N faithful/fabricated answer pairs and report how often faithful wins")

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    apply_offline_env()
    args = build_parser().parse_args(argv)
    try:
        svc = _service(args)
        return COMMANDS[args.command](args, svc)
    except StudybotError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
