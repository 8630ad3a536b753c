"""`studybot ingest`, `add`, `remove`, `retrieve` and `doctor`: the library, retrieval and health."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.types import Passage
from ui.commands import EXIT_FAILED, EXIT_OK, command, err
from ui.render import source_line

if TYPE_CHECKING:
    from ui.service import StudyService


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("ingest", help="bring the index in line with the library: the corpus folder and the files "
                       "added with `studybot add` (incremental)")
    s.add_argument("path", nargs="?", help="a folder or file to index instead of the configured corpus folder for "
                   "this run (added files are always kept)")
    s.add_argument("--rebuild", action="store_true",
                   help="build the index again in a fresh folder (recovers a corrupt index; the old one is kept aside)")
    s.add_argument("--max-file-mb", type=float, default=None, help="refuse files larger than this (default: "
                   "STUDYBOT_INGEST_MAX_FILE_MB, 20)")
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
                   "line with the library (rebuilt in a fresh folder if it cannot be read); restore a damaged "
                   "study database from its newest good backup (the damaged file is kept aside)")
    s.add_argument("--no-runtime", action="store_true", help="skip the llama.cpp runtime check (a real model load "
                   "and prefill in a child process)")
    s.add_argument("--json", action="store_true")



@command("ingest")
def cmd_ingest(args: argparse.Namespace, svc: StudyService) -> int:
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
def cmd_add(args: argparse.Namespace, svc: StudyService) -> int:
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
def cmd_remove(args: argparse.Namespace, svc: StudyService) -> int:
    status = EXIT_OK
    for name in args.names:
        try:
            print(svc.remove_document(name))
        except StudybotError as exc:
            err(str(exc))
            status = EXIT_FAILED
    return status


def _print_passages(passages: list[Passage]) -> None:
    for n, p in enumerate(passages, start=1):
        print(f"[{n}] {source_line(p)}  score {p.score:.4f}")
        c = p.chunk
        body = c.text if len(c.text) <= 400 else c.text[:400] + " …"
        print("    " + body.replace("\n", "\n    "))


@command("retrieve")
def cmd_retrieve(args: argparse.Namespace, svc: StudyService) -> int:
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
def cmd_doctor(args: argparse.Namespace, svc: StudyService) -> int:
    if args.fix:
        fix_study_database(svc)
        prepare(svc)
    checks = svc.doctor(runtime=not args.no_runtime)
    if args.json:
        print(json.dumps([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in checks]))
    else:
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FIX '} {c.name:<18} {c.detail}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def fix_study_database(svc: StudyService) -> bool:
    """`doctor --fix`: a study database that fails ``PRAGMA quick_check`` is moved aside and its newest good
    backup copied in; one line to stderr says so and how many reviews are lost. False when it could not be
    restored (the reason is printed)."""
    from rag.study.backup import quick_check, restore
    from rag.study.store import now_utc

    storage = svc.settings.storage
    path = storage.study_path
    if not path.exists() or quick_check(path) is None:
        return True
    try:
        print(restore(path, storage.backups_dir, now_utc()).sentence(), file=sys.stderr)
    except StudybotError as exc:
        err(str(exc))
        return False
    return True


def prepare(svc: StudyService) -> bool:
    """`doctor --fix` and `serve --prepare`: assemble + verify the default model, then bring the index in line
    with the library (built when empty, rebuilt in a fresh folder when it cannot be read). Prints what it did
    to stderr; False when something could not be fixed (the reason is printed)."""
    from rag.errors import IndexStateError
    from rag.llm import uses_default_model
    from ui.console import IngestConsole

    s = svc.settings
    ok = True
    if uses_default_model(s):
        from rag.backends.models import ensure_default_gguf

        try:
            ensure_default_gguf(s, show_progress=sys.stderr.isatty())
        except StudybotError as exc:
            err(str(exc))
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
        err(str(exc))
        ok = False
    return ok
