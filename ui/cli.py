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
    from ui.console import IngestConsole

    console = None if args.json else IngestConsole()
    path = Path(args.path).expanduser() if args.path else None
    summary = svc.ingest(path, rebuild=args.rebuild, progress=console, on_plan=console.plan if console else None,
                         max_file_mb=args.max_file_mb)
    if args.json:
        print(json.dumps(summary.to_json()))
    else:
        for line in summary.lines():
            print(line)
    return EXIT_OK if summary.ok else EXIT_FAILED


@command("add")
def cmd_add(args: argparse.Namespace, svc: Any) -> int:
    from ui.console import IngestConsole

    console = None if args.json else IngestConsole()
    results = svc.add_documents([Path(f).expanduser() for f in args.files], on_plan=console.plan if console else None,
                                max_file_mb=args.max_file_mb)
    if args.json:
        print(json.dumps([{"name": r.name, "ok": r.ok, "message": r.message, "source": r.source} for r in results]))
    else:
        for r in results:
            print(r.message if r.ok else f"  failed    {r.message}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


@command("remove")
def cmd_remove(args: argparse.Namespace, svc: Any) -> int:
    status = EXIT_OK
    for name in args.names:
        try:
            print(svc.remove_document(name))
        except StudybotError as exc:
            _err(str(exc))
            status = EXIT_FAILED
    return status


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
    if args.fix:
        prepare(svc)
    rows = svc.doctor(runtime=not args.no_runtime)
    if args.json:
        print(json.dumps([{"check": c, "ok": ok, "detail": d} for c, ok, d in rows]))
    else:
        for check, ok, detail in rows:
            print(f"{'ok  ' if ok else 'FIX '} {check:<18} {detail}")
    return EXIT_OK if all(ok for _, ok, _ in rows) else EXIT_FAILED


def prepare(svc: Any) -> bool:
    """`doctor --fix` and `serve --prepare`: assemble + verify the default model, then bring the index in line
    with the library (built when empty, rebuilt in a fresh folder when it cannot be read). Prints what it did
    to stderr; False when something could not be fixed (the reason is printed)."""
    from rag.errors import IndexStateError
    from ui.console import IngestConsole

    s = svc.settings
    ok = True
    if s.llm_model is None and s.llm_backend == "llama_cpp":
        from rag.models import ensure_default_gguf

        try:
            ensure_default_gguf(s, show_progress=sys.stderr.isatty())
        except StudybotError as exc:
            _err(str(exc))
            ok = False
    try:
        svc.index.manifest()
        broken = False
    except IndexStateError as exc:
        broken = True
        print(f"rebuilding the index: {exc}", file=sys.stderr)
    console = IngestConsole()
    try:
        summary = svc.ingest(rebuild=broken, progress=console, on_plan=console.plan)
        for line in summary.lines():
            print(line, file=sys.stderr)
    except StudybotError as exc:
        _err(str(exc))
        ok = False
    return ok


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

    s = sub.add_parser("ingest", help="bring the index in line with the library: the corpus folder and the files "
                       "added with `studybot add` (incremental)")
    s.add_argument("path", nargs="?", help="a folder or file to index instead of the configured corpus folder for "
                   "this run (added files are always kept)")
    s.add_argument("--rebuild", action="store_true",
                   help="build the index again in a fresh folder (recovers a corrupt index; the old one is kept aside)")
    s.add_argument("--max-file-mb", type=float, default=None, help="refuse files larger than this (default: "
                   "STUDYBOT_MAX_FILE_MB, 20)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("add", help="add files to the library (saved into the uploads folder, indexed incrementally)")
    s.add_argument("files", nargs="+", metavar="FILE", help=".md, .txt or .pdf files")
    s.add_argument("--max-file-mb", type=float, default=None, help="refuse files larger than this (default 20)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("remove", help="remove documents from the library (and added files from the uploads folder)")
    s.add_argument("names", nargs="+", metavar="NAME", help="a source as listed (uploads/notes.md) or an added "
                   "file's name (notes.md)")

    s = sub.add_parser("retrieve", help="print the passages retrieved for a question")
    s.add_argument("question", nargs="?", help="the question; without it, read one question per line from stdin")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("doctor", help="report what is installed, verified and indexed")
    s.add_argument("--fix", action="store_true", help="assemble and verify the default model; bring the index in "
                   "line with the library (rebuilt in a fresh folder if it cannot be read)")
    s.add_argument("--no-runtime", action="store_true", help="skip the llama.cpp runtime check (a real model load "
                   "and prefill in a child process)")
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
