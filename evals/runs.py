"""The run store: one directory per evaluation run (``<evals_dir>/<run id>``), found, resumed and written
atomically (a killed run never leaves half a file behind)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.gold import GoldItem


def write_json(path: Path, data: Any) -> None:
    """Atomic write (a killed run never leaves half a file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def runs_in(base: Path) -> list[Path]:
    """Run directories under ``base``, oldest first (run ids sort by time)."""
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and (p / "run.json").is_file())


def is_complete(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def previous_run(run_dir: Path) -> Path | None:
    """The latest completed run in the same parent directory before ``run_dir``."""
    done = [p for p in runs_in(run_dir.parent) if p.name < run_dir.name and is_complete(p)]
    return done[-1] if done else None


def latest_run(base: Path, complete: bool | None = None) -> Path | None:
    runs = [p for p in runs_in(base) if complete is None or is_complete(p) == complete]
    return runs[-1] if runs else None



@dataclass
class RunSpec:
    items: list[GoldItem]
    metrics: list[str]  # LLM metrics to score (empty: answers + non-LLM metrics only)
    run_dir: Path
    judge: str = ""

    def identity(self) -> dict[str, Any]:
        return {"items": [i.id for i in self.items], "metrics": list(self.metrics)}


def resolve_run_dir(base: Path, items: Sequence[GoldItem], metrics: Sequence[str], run_dir: Path | None,
                    new: bool = False) -> tuple[Path, bool]:
    """(run directory, resumed?). Without an explicit ``run_dir``: the latest unfinished run under ``base``
    with the same questions and metrics, else a new one."""
    ident = {"items": [i.id for i in items], "metrics": list(metrics)}
    if run_dir is not None:
        return run_dir, (run_dir / "run.json").is_file()
    if not new:
        last = latest_run(base)
        if last is not None and not is_complete(last):
            try:
                meta = read_json(last / "run.json")
            except (OSError, ValueError):
                meta = {}
            if {"items": meta.get("items"), "metrics": meta.get("metrics")} == ident:
                return last, True
    run_id = new_run_id()
    path = base / run_id
    n = 1
    while path.exists():
        n += 1
        path = base / f"{run_id}-{n}"
    return path, False


