"""Answers end to end, one or more versions of studybot side by side: what a student is shown and when.

Usage::

    git worktree add /tmp/studybot-old <ref>          # the version to compare against (any commit)
    python -m bench.answer --gold evals/gold.jsonl --arm new=. --arm old=/tmp/studybot-old --dump D.jsonl
    python -m bench.answer --report D.jsonl --gold evals/gold.jsonl

Each arm is a worker process running *its own tree's* code (this file run with ``python -P`` and
``PYTHONPATH=<the arm's tree>``, so ``rag``, ``ingest`` and ``ui`` come from that tree) (``StudyService.ask_stream``, the public API every
version has) on the same index and model; the arms take turns question by question, so no two model jobs run
at once and a drift of the machine's speed hits both. A worker warms its model up before the first question.
Per question and arm it records the answer's JSON, the passages and units it saw (when the version exposes
them), and when each kind of event arrived: the sources (``Passages``), the first handbook text shown
(``Quotes``, or the old ``LeadReady``), the first explanation text (``Delta``) and the end (``Finished``).

``--report`` prints, per arm: refusals (unanswerable refused, answerable wrongly refused), the loss table for
answerable questions (the gold phrase, ``evals.gold.states``: in the retrieved passages, in the candidate
units, in the quotes, in the text shown, in the first content shown), markers inside code, and p50 seconds of
sources / first content / complete answer, and prompt tokens. Reading the answers against the handbooks is a
person's job: ``--sheet F`` writes them as a Markdown sheet to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


# -- the worker: runs in an arm's own tree ----------------------------------------------------------------------
def worker(root: str, max_tokens: int | None) -> int:
    """Answer the questions read from stdin with the code of the tree ``root`` (on PYTHONPATH, see :class:`Arm`)."""
    from rag.citations import markers_in_code
    from rag.settings import apply_offline_env
    from ui.service import StudyService

    apply_offline_env()
    svc = StudyService()
    t = time.perf_counter()
    svc.warm_up()
    import rag

    print(json.dumps({"ready": True, "warm_up_s": round(time.perf_counter() - t, 3), "code": rag.__file__}),
          flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        question = json.loads(line)["question"]
        t0 = time.perf_counter()
        seen: dict[str, float] = {}
        answer = None
        kwargs = {"max_tokens": max_tokens} if max_tokens else {}
        try:
            for event in svc.ask_stream(question, **kwargs):
                seen.setdefault(type(event).__name__, round(time.perf_counter() - t0, 3))
                if type(event).__name__ == "Finished":
                    answer = event.answer  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a bench records the error and goes on
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "events": seen}), flush=True)
            continue
        assert answer is not None
        data = answer.to_json()
        ranking = getattr(answer, "ranking", None)
        out = {
            "answer": data, "events": seen, "wall_s": round(time.perf_counter() - t0, 3),
            "retrieved": [{"source": p.chunk.source, "text": p.chunk.text} for p in getattr(answer, "retrieved", [])],
            "candidates": [{"text": c.text, "judge": c.judge, "final": c.final} for c in ranking.candidates]
            if ranking is not None else None,
            "passages": [{"n": n, "source": p.chunk.source, "text": p.chunk.text}
                         for n, p in enumerate(answer.passages, 1)],
            "markers_in_code": markers_in_code(data["answer"]),
            "raw": getattr(answer, "raw", ""),
            "checks": [{"text": c.text, "supported": c.supported, "reason": c.reason, "logodds": c.logodds}
                       for c in getattr(answer, "checks", [])],
        }
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


class Arm:
    def __init__(self, name: str, root: str, max_tokens: int | None) -> None:
        self.name = name
        # -P: this file's folder (bench/, with its own ingest.py) is not put first on sys.path; PYTHONPATH is the arm's
        cmd = [sys.executable, "-P", str(HERE), "--worker", str(Path(root).resolve())]
        if max_tokens:
            cmd += ["--max-tokens", str(max_tokens)]
        env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(Path(root).resolve()))
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"arm {self.name}: the worker exited (code {self.proc.wait()})")
        return dict(json.loads(line))

    def ask(self, question: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"question": question}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(args: argparse.Namespace) -> int:
    from evals.gold import load_gold

    items = [i for path in args.gold for i in load_gold(Path(path))]
    if args.limit:
        items = items[: args.limit]
    arms = [Arm(*spec.split("=", 1), args.max_tokens) for spec in args.arm]
    for arm in arms:
        print(f"{arm.name}: warm-up {arm.ready.get('warm_up_s')} s, code {arm.ready.get('code')}", file=sys.stderr)
    with open(args.dump, "w", encoding="utf-8") as f:
        for n, item in enumerate(items, 1):
            for arm in arms:
                rec = arm.ask(item.question)
                f.write(json.dumps({"id": item.id, "arm": arm.name, **rec}, ensure_ascii=False) + "\n")
                f.flush()
                a = rec.get("answer") or {}
                print(f"{n}/{len(items)} {item.id} {arm.name}: {'refused' if a.get('refused') else 'answered'} "
                      f"in {rec.get('wall_s')} s", file=sys.stderr)
    for arm in arms:
        arm.close()
    return 0


# -- the report ------------------------------------------------------------------------------------------------------
def _p50(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 2) if xs else None


def first_content(rec: dict[str, Any]) -> str:
    """What the student sees first of the answer: the first quote (or the old lead), else the answer's start."""
    a = rec.get("answer") or {}
    if a.get("quotes"):
        return str(a["quotes"][0]["text"])
    if a.get("lead"):
        return str(a["lead"]["text"])
    return str(a.get("answer", ""))


def shown_text(rec: dict[str, Any]) -> str:
    a = rec.get("answer") or {}
    lead = (a.get("lead") or {}).get("text", "")
    return f"{lead}\n{a.get('answer', '')}"


def report(args: argparse.Namespace) -> int:
    from evals.gold import load_gold, states

    items = {i.id: i for path in args.gold for i in load_gold(Path(path))}
    rows = [json.loads(line) for line in Path(args.report).read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm and r["id"] in items and "answer" in r]
        ans = [r for r in rs if items[r["id"]].answerable]
        una = [r for r in rs if not items[r["id"]].answerable]
        answered = [r for r in ans if not r["answer"]["refused"]]

        def share(pred: Any, group: list[dict[str, Any]] = ans) -> str:
            k = sum(1 for r in group if pred(r))
            return f"{k}/{len(group)} ({100 * k / max(len(group), 1):.0f}%)"

        def holds(r: dict[str, Any], text: str) -> bool:
            return states(items[r["id"]], text)

        first_keys = ("Quotes", "LeadReady")
        out[arm] = {
            "questions": len(rs),
            "errors": sum(1 for r in rows if r["arm"] == arm and "error" in r),
            "unanswerable refused": share(lambda r: r["answer"]["refused"], una),
            "answerable wrongly refused": share(lambda r: r["answer"]["refused"]),
            "refusal reasons (answerable)": dict(sorted(
                {k: sum(1 for r in ans if r["answer"].get("refusal_reason") == k)
                 for k in {r["answer"].get("refusal_reason") for r in ans if r["answer"]["refused"]}}.items())),
            "gold phrase in retrieved passages": share(lambda r: any(holds(r, p["text"]) for p in r["retrieved"])),
            "... in candidate units": share(lambda r: r.get("candidates") is not None
                                            and any(holds(r, c["text"]) for c in r["candidates"])),
            "... in the quotes (or lead)": share(lambda r: any(holds(r, q["text"]) for q in r["answer"].get("quotes", []))
                                                 or holds(r, (r["answer"].get("lead") or {}).get("text", ""))),
            "... in the text shown": share(lambda r: not r["answer"]["refused"] and holds(r, shown_text(r))),
            "first content states it (of answered)": share(lambda r: holds(r, first_content(r)), answered),
            "answers with a marker inside code": sum(1 for r in rs if r.get("markers_in_code")),
            "sources p50 s": _p50([r["events"]["Passages"] for r in rs if "Passages" in r["events"]]),
            "first content p50 s": _p50([next(r["events"][k] for k in first_keys if k in r["events"])
                                         for r in answered if any(k in r["events"] for k in first_keys)]),
            "first explanation text p50 s": _p50([r["events"]["Delta"] for r in answered if "Delta" in r["events"]]),
            "complete answer p50 s": _p50([r["events"]["Finished"] for r in answered if "Finished" in r["events"]]),
            "complete answer p90 s": round(sorted(r["events"]["Finished"] for r in answered)[int(0.9 * len(answered))], 2)
            if answered else None,
            "prompt tokens p50": _p50([float(r["answer"]["timings"].get("prompt_tokens") or 0) for r in answered]),
        }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        arms = list(out)
        print(f"| | {' | '.join(arms)} |\n|---|{'---|' * len(arms)}")
        for key in out[arms[0]]:
            print(f"| {key} | " + " | ".join(str(out[a].get(key)) for a in arms) + " |")
    if args.sheet:
        write_sheet(Path(args.sheet), rows, items, args.parts)
    return 0


def write_sheet(path: Path, rows: list[dict[str, Any]], items: dict[str, Any], parts: int = 1) -> None:
    """The answers to read, blind: per question, each arm's answer under a letter (the letters shuffled per
    question, seeded), the question's reference answer and the cited passages. ``<path>.key.json`` maps the
    letters back to the arms. With ``parts`` > 1, one sheet per part (``<stem>-<i>.md``), for several readers."""
    import random

    rng = random.Random(20261205)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["id"] in items and "answer" in r:
            by_id.setdefault(r["id"], []).append(r)
    ids = list(by_id)
    key: dict[str, dict[str, str]] = {}
    chunks = [ids[i::parts] for i in range(parts)] if parts > 1 else [ids]
    for part, chunk in enumerate(chunks, 1):
        lines = ["# Answers to read", "",
                 "For each question: the student's question, what the handbooks say (a reference answer and the "
                 "phrase(s) that state it), then each version's answer under a letter, with the passages it cites.",
                 ""]
        for qid in chunk:
            item = items[qid]
            arms = by_id[qid]
            rng.shuffle(arms)
            key[qid] = {}
            lines += [f"## {qid}: {item.question}", "",
                      f"_Handbooks ({'answerable' if item.answerable else 'NOT answerable'}):_ {item.reference}",
                      *(f"_Phrase ({item.source}):_ `{ph}`" for ph in item.phrases), ""]
            for letter, r in zip("XYZW", arms, strict=False):
                key[qid][letter] = r["arm"]
                a = r["answer"]
                lines += [f"### {qid} answer {letter}", ""]
                if a.get("lead"):
                    lines += ["_Shown first (a quote):_", "", *("> " + ln for ln in str(a["lead"]["text"]).splitlines()),
                              ""]
                lines += [str(a.get("answer", "")), ""]
                for c in a.get("citations", []):
                    lines += [f"_Passage [{c['n']}] ({c['source']}, {c.get('section') or ''}):_", "", "```text",
                              str(c["text"]), "```", ""]
        target = path if parts == 1 else path.with_name(f"{path.stem}-{part}{path.suffix}")
        target.write_text("\n".join(lines), encoding="utf-8")
    path.with_suffix(".key.json").write_text(json.dumps(key, indent=1), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", metavar="ROOT", help=argparse.SUPPRESS)
    ap.add_argument("--gold", action="append", default=[], help="question sets (repeat)")
    ap.add_argument("--arm", action="append", default=[], help="NAME=TREE: a version of studybot (repeat)")
    ap.add_argument("--dump", help="write one JSON line per question and arm")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--report", metavar="DUMP", help="summarise a dump instead of running")
    ap.add_argument("--sheet", help="with --report: write the answers to read, blind, as Markdown")
    ap.add_argument("--parts", type=int, default=1, help="with --sheet: split it for this many readers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.max_tokens)
    if args.report:
        return report(args)
    if not args.arm or not args.dump or not args.gold:
        ap.error("--gold, --arm and --dump are needed to run")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
