"""How far to trust a faithfulness judge: each method scored on the labelled claims (``evals/claims.jsonl``).

A claim is one answer sentence, the passage it cites and a verdict by reading: "stated" or "not_stated" by
that passage. ``studybot eval --judge-accuracy`` reads every claim with each method and reports, on the
held-out half, the balanced accuracy (the mean of the recall on "stated" and on "not stated": a judge that
says "stated" to everything scores 0.5), the precision and recall on "not stated" (the verdict a checker
exists to catch) and the seconds per claim.

The split is fixed and grouped by question: a claim's half is decided by a hash of its ``question_id``
(:func:`half_of`), so the sentences of one answer never sit on both sides. A method with a threshold (the
model's log-odds, a Ragas score) gets it from the ``tune`` half only (:func:`choose_threshold`); everything is
reported on ``test``. A method used as shipped (the answer pipeline's Verifier) is not tuned.

The computation (split, confusion, thresholds, the table) is separate from the model calls: a method is a
:class:`Method` whose ``read(claim)`` returns a number (higher = "more stated"), so the metrics are tested on
a scripted judge. The readers of the real model are below the computation; Ragas is read through the project's
local judge server (:mod:`evals.judge`), slowly (``--limit``).

The last result is kept in ``evals/judge_accuracy.json`` (committed): the eval report prints each faithfulness
figure with its method's balanced accuracy from there (:func:`accuracy_of`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rag import prompts
from rag.llm import LLM, Request, Response

if TYPE_CHECKING:
    from rag.settings import Settings

EVALS_DIR = Path(__file__).resolve().parent
CLAIMS_PATH = EVALS_DIR / "claims.jsonl"
RESULT_PATH = EVALS_DIR / "judge_accuracy.json"
# A second reader's verdicts on the held-out half (one JSON object a line: id, sentence, verdict, why), read blind
# (2026-12-06: a helper given only the question, the sentence and the passage, never the labels nor a checker's
# readings): how far two careful readers agree - the ceiling a checker is measured against.
SECOND_READER_PATH = EVALS_DIR / "claims_second_reader.jsonl"

Half = Literal["tune", "test"]
T = TypeVar("T")
HALVES: tuple[Half, Half] = ("tune", "test")
VERDICTS = ("stated", "not_stated")
SPLIT_SALT = "studybot-claims-v1"
SPLIT_RULE = f"sha256('{SPLIT_SALT}:' + question_id), first byte even: tune, odd: test"

# A reading for "failed the rules, the model was not asked" / "too short to be a claim, passed": beyond any
# log-odds the model gives (|log-odds| stays below 30 on a 1.5B model's yes/no).
RULES_FAIL = -100.0
SHORT_PASS = 100.0  # the other reading named above


# ------------------------------------------------------------------------------------------------------
# the claims and the split
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One labelled sentence: ``stated`` is the reader's verdict (True: the passage states it)."""

    id: str
    question: str
    sentence: str
    passage: str
    stated: bool
    question_id: str
    source: str = ""
    origin: str = ""
    kind: str = ""
    note: str = ""

    @property
    def half(self) -> Half:
        return half_of(self.question_id)


def _read_jsonl(path: Path, parse: Callable[[dict[str, Any]], T]) -> list[tuple[int, T]]:
    """``parse`` of each JSON object of a ``.jsonl`` file, with its line number (blank lines skipped); ValueError
    naming the line of one that is not JSON or that ``parse`` rejects."""
    out: list[tuple[int, T]] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, parse(json.loads(line))))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: {type(exc).__name__}: {exc}") from exc
    return out


def _stated(d: dict[str, Any]) -> bool:
    """A record's ``verdict``: True for "stated"; ValueError for one that is not in :data:`VERDICTS`."""
    verdict = d["verdict"]
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return bool(verdict == "stated")


def _claim(d: dict[str, Any]) -> Claim:
    return Claim(id=str(d["id"]), question=str(d.get("question") or ""), sentence=str(d["sentence"]),
                 passage=str(d["passage"]), stated=_stated(d), question_id=str(d.get("question_id") or d["id"]),
                 source=str(d.get("source") or ""), origin=str(d.get("origin") or ""), kind=str(d.get("kind") or ""),
                 note=str(d.get("note") or ""))


def load_claims(path: Path = CLAIMS_PATH) -> list[Claim]:
    """The claims of a ``.jsonl`` file (one object a line; see the module doc). Raises ValueError naming the
    line of a malformed one."""
    claims: list[Claim] = []
    seen: set[str] = set()
    for n, claim in _read_jsonl(path, _claim):
        if claim.id in seen:
            raise ValueError(f"{path}:{n}: the id {claim.id!r} is used twice")
        seen.add(claim.id)
        claims.append(claim)
    return claims


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def half_of(question_id: str) -> Half:
    """The half of every claim about ``question_id`` (:data:`SPLIT_RULE`): fixed, and the same on any machine."""
    return "tune" if hashlib.sha256(f"{SPLIT_SALT}:{question_id}".encode()).digest()[0] % 2 == 0 else "test"


def split(claims: Sequence[Claim]) -> dict[Half, list[Claim]]:
    out: dict[Half, list[Claim]] = {"tune": [], "test": []}
    for c in claims:
        out[c.half].append(c)
    return out


def split_summary(claims: Sequence[Claim]) -> dict[str, Any]:
    """The split as printed and saved: the rule, and per half the claims, the "not stated" ones and the
    questions (their ids)."""
    out: dict[str, Any] = {"rule": SPLIT_RULE}
    for half, cs in split(claims).items():
        out[half] = {"n": len(cs), "not_stated": sum(not c.stated for c in cs),
                     "questions": sorted({c.question_id for c in cs})}
    return out


def sample(claims: Sequence[Claim], limit: int) -> list[Claim]:
    """At most ``limit`` claims, half from each half (as far as each has claims), in a fixed order (by a hash of
    the claim id): the claims a slow method reads under ``--limit``."""
    if limit <= 0 or limit >= len(claims):
        return list(claims)

    def key(c: Claim) -> str:
        return hashlib.sha256(f"{SPLIT_SALT}:claim:{c.id}".encode()).hexdigest()

    halves = {h: sorted(cs, key=key) for h, cs in split(claims).items()}
    want_tune = min(len(halves["tune"]), max(limit - len(halves["test"]), (limit + 1) // 2))
    chosen = halves["tune"][:want_tune] + halves["test"][: limit - want_tune]
    order = {c.id: i for i, c in enumerate(claims)}
    return sorted(chosen, key=lambda c: order[c.id])


# ------------------------------------------------------------------------------------------------------
# the metrics
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Counts with "not stated" as the positive class (what a faithfulness checker must catch)."""

    tp: int  # not stated, judged not stated
    fp: int  # stated, judged not stated
    tn: int  # stated, judged stated
    fn: int  # not stated, judged stated

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def scores(self) -> dict[str, Any]:
        """Balanced accuracy, precision and recall on "not stated", recall on "stated", accuracy; None where a
        denominator is 0 (balanced accuracy needs claims of both verdicts)."""

        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        rec_not, rec_stated = ratio(self.tp, self.tp + self.fn), ratio(self.tn, self.tn + self.fp)
        ba = round((rec_not + rec_stated) / 2, 4) if rec_not is not None and rec_stated is not None else None
        return {"n": self.n, "balanced_accuracy": ba, "precision_not_stated": ratio(self.tp, self.tp + self.fp),
                "recall_not_stated": rec_not, "recall_stated": rec_stated,
                "accuracy": ratio(self.tp + self.tn, self.n), "tp": self.tp, "fp": self.fp, "tn": self.tn,
                "fn": self.fn}


def confusion(stated: Sequence[bool], judged_stated: Sequence[bool]) -> Confusion:
    """The confusion of a judge's verdicts (``judged_stated``) against the readers' (``stated``)."""
    if len(stated) != len(judged_stated):
        raise ValueError("one verdict per claim")
    pairs = list(zip(stated, judged_stated, strict=True))
    return Confusion(tp=sum(not s and not j for s, j in pairs), fp=sum(s and not j for s, j in pairs),
                     tn=sum(s and j for s, j in pairs), fn=sum(not s and j for s, j in pairs))


def share_agreement(claims: Sequence[Claim], judged_stated: Sequence[bool]) -> dict[str, Any]:
    """How far the figure a metric reports - the share of an answer's sentences judged stated - is from the
    readers' share: over all ``claims`` (``share_reader``, ``share_judged``, their difference ``share_bias``) and
    answer by answer (``share_error``: the mean over questions of |judged share - readers' share|, each
    question's claims being one answer's sentences). Balanced accuracy weighs the two errors alike; a metric
    that averages verdicts also needs them to cancel out."""
    if len(claims) != len(judged_stated):
        raise ValueError("one verdict per claim")
    if not claims:
        return {"share_reader": None, "share_judged": None, "share_bias": None, "share_error": None, "questions": 0}
    by_question: dict[str, list[tuple[bool, bool]]] = {}
    for c, j in zip(claims, judged_stated, strict=True):
        by_question.setdefault(c.question_id, []).append((c.stated, j))
    reader = sum(c.stated for c in claims) / len(claims)
    judged = sum(judged_stated) / len(claims)
    errors = [abs(sum(s for s, _ in v) - sum(j for _, j in v)) / len(v) for v in by_question.values()]
    return {"share_reader": round(reader, 4), "share_judged": round(judged, 4),
            "share_bias": round(judged - reader, 4), "share_error": round(statistics.fmean(errors), 4),
            "questions": len(by_question)}


def second_reader(claims: Sequence[Claim], path: Path | None = None) -> dict[str, Any] | None:
    """A second reader's verdicts (:data:`SECOND_READER_PATH`) scored like a method against the claims' own, on
    the claims they cover (same id and same sentence; a claim edited since is left out): per half, the confusion,
    the scores and the share agreement, and how many verdicts the two readers share. None when there is no such
    file or it covers none of ``claims``; ValueError naming the line of a malformed one."""
    path = Path(path or SECOND_READER_PATH)
    if not path.is_file():
        return None
    verdicts = dict(v for _, v in _read_jsonl(path, lambda d: ((str(d["id"]), str(d["sentence"])), _stated(d))))
    covered = [c for c in claims if (c.id, c.sentence) in verdicts]
    if not covered:
        return None
    out: dict[str, Any] = {"label": "a second reader, blind to the labels and the checkers", "n_read": len(covered)}
    for half in HALVES:
        cs = [c for c in covered if c.half == half]
        judged = [verdicts[(c.id, c.sentence)] for c in cs]
        out[half] = {**confusion([c.stated for c in cs], judged).scores(), **share_agreement(cs, judged),
                     "agree": sum(c.stated == j for c, j in zip(cs, judged, strict=True))}
    return out


def balanced_accuracy(stated: Sequence[bool], judged_stated: Sequence[bool]) -> float | None:
    ba: float | None = confusion(stated, judged_stated).scores()["balanced_accuracy"]
    return ba


def choose_threshold(values: Sequence[float], stated: Sequence[bool]) -> float:
    """The threshold ``t`` ("stated" when a reading >= t) with the best balanced accuracy on these claims (the
    tune half): candidates are the midpoints between consecutive distinct readings and one below / above them
    all; of equally good ones, the middle one (the widest margin on both sides)."""
    if len(values) != len(stated):
        raise ValueError("one reading per claim")
    if not values:
        raise ValueError("no readings to choose a threshold from")
    distinct = sorted(set(values))
    cands = [distinct[0] - 1.0] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:], strict=False)]
    cands.append(distinct[-1] + 1.0)
    best: list[float] = []
    best_ba = -1.0
    for t in cands:
        ba = balanced_accuracy(stated, [v >= t for v in values])
        score = -1.0 if ba is None else ba
        if score > best_ba + 1e-12:
            best_ba, best = score, [t]
        elif abs(score - best_ba) <= 1e-12:
            best.append(t)
    return round(best[(len(best) - 1) // 2], 4)


# ------------------------------------------------------------------------------------------------------
# a method and its evaluation
# ------------------------------------------------------------------------------------------------------


@dataclass
class Method:
    """A faithfulness judge as measured here. ``read(claim)`` -> a number, higher meaning "more stated" (a
    log-odds, a Ragas score, 1/0 for a yes/no verdict); ``threshold``: fixed ("as shipped", not tuned) or None
    (chosen on the tune half). ``seconds``: what the last ``read`` cost (a reader that shares a cached model
    call with another method is still charged that call: the cost it has on its own)."""

    name: str
    label: str
    read: Callable[[Claim], float]
    threshold: float | None = None
    cost: Callable[[], float] | None = None  # the seconds of the last read (default: measured around it)
    slow: bool = False  # seconds per claim rather than fractions of one (Ragas): run it under --limit


@dataclass
class Readings:
    """One method's readings of some claims (None: the reading failed, e.g. a Ragas parse failure)."""

    method: str
    values: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_all(method: Method, claims: Sequence[Claim], progress: Callable[[str, int, int], None] | None = None
             ) -> Readings:
    """Read every claim with ``method`` (in passage order, so consecutive claims share a cached passage)."""
    out = Readings(method.name)
    ordered = sorted(claims, key=lambda c: (c.passage, c.id))
    for i, c in enumerate(ordered):
        t = time.perf_counter()
        try:
            value: float | None = float(method.read(c))
            if value is not None and math.isnan(value):
                value = None
                out.errors[c.id] = "NaN"
        except Exception as exc:  # a failed reading is a result (counted), not a crash of the measurement
            from rag.errors import BackendUnreachableError

            if isinstance(exc, BackendUnreachableError):
                raise
            value = None
            out.errors[c.id] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        spent = time.perf_counter() - t
        out.values[c.id] = value
        out.seconds[c.id] = round(method.cost() if method.cost is not None else spent, 4)
        if progress:
            progress(f"{method.name}: {c.id}", i + 1, len(ordered))
    return out


def evaluate(method: Method, claims: Sequence[Claim], readings: Readings) -> dict[str, Any]:
    """The method's figures: its threshold (fixed, or chosen on the tune half's readings only), then per half
    the confusion and scores of the claims it read (a failed reading is left out and counted)."""
    read = [c for c in claims if c.id in readings.values]
    ok = [c for c in read if readings.values[c.id] is not None]
    tune = [c for c in ok if c.half == "tune"]
    threshold = method.threshold
    tuned = threshold is None
    if threshold is None:
        threshold = choose_threshold([float(readings.values[c.id] or 0.0) for c in tune],
                                     [c.stated for c in tune]) if tune else 0.0
    out: dict[str, Any] = {"label": method.label, "tuned": tuned, "threshold": threshold,
                           "n_read": len(read), "n_failed": len(read) - len(ok),
                           "seconds_per_claim": round(statistics.fmean(readings.seconds.values()), 3)
                           if readings.seconds else None}
    for half in HALVES:
        cs = [c for c in ok if c.half == half]
        judged = [float(readings.values[c.id] or 0.0) >= threshold for c in cs]
        out[half] = {**confusion([c.stated for c in cs], judged).scores(), **share_agreement(cs, judged)}
    if readings.errors:
        out["errors"] = dict(list(readings.errors.items())[:10])
    out["readings"] = {c.id: (None if readings.values[c.id] is None else round(float(readings.values[c.id] or 0.0), 4))
                       for c in read}
    return out


def measure(methods: Sequence[Method], claims: Sequence[Claim], limit: int = 0,
            progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Read ``claims`` (with ``limit``: :func:`sample`'s ``limit`` of them) with every method and evaluate each.
    Returns ``{"methods": {name: figures}, "split": ...}``."""
    out: dict[str, Any] = {"split": split_summary(claims), "methods": {}}
    for m in methods:
        subset = sample(claims, limit) if limit else list(claims)
        load_start = _load()
        t = time.perf_counter()
        readings = read_all(m, subset, progress)
        fig = evaluate(m, claims, readings)
        fig["limit"] = limit or None
        fig["wall_seconds"] = round(time.perf_counter() - t, 1)
        fig["measured"] = time.strftime("%Y-%m-%d %H:%M")
        fig["load_average"] = {"start": load_start, "end": _load()}  # 1/5/15-minute: the seconds' context
        out["methods"][m.name] = fig
    return out


# what a rescore keeps of a saved method's figures (they describe its reading, not the scoring)
_KEPT_ON_RESCORE = ("label", "seconds_per_claim", "limit", "wall_seconds", "measured", "load_average", "note", "errors")


def rescore(result: dict[str, Any], claims: Sequence[Claim], second_reader_path: Path | None = None
            ) -> dict[str, Any]:
    """``result`` with every method's figures computed again from its saved readings (no model): after the
    scoring changed. A tuned method's threshold is chosen again on the tune half (the same readings give the same
    threshold); a shipped one keeps its own. Readings of claims no longer in ``claims`` are dropped. The second
    reader's figures (:func:`second_reader`, from ``second_reader_path``) are computed again too."""
    ids = {c.id for c in claims}
    methods: dict[str, Any] = {}
    for name, fig in (result.get("methods") or {}).items():
        saved = fig.get("readings") or {}
        readings = Readings(name, {k: (None if v is None else float(v)) for k, v in saved.items() if k in ids})
        method = Method(name, fig.get("label", name), lambda c: 0.0,
                        threshold=None if fig.get("tuned") else fig.get("threshold"))
        new = evaluate(method, claims, readings)
        new.update({k: fig[k] for k in _KEPT_ON_RESCORE if k in fig})
        methods[name] = new
    out = {**result, "methods": methods}
    reader = second_reader(claims, second_reader_path)
    if reader:
        out["second_reader"] = reader
    return out


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return None


# ------------------------------------------------------------------------------------------------------
# the saved result and how the report reads it
# ------------------------------------------------------------------------------------------------------


def merge(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """``current``'s methods over ``previous``'s when both read the same claims file (a Ragas run under
    --limit, then the fast methods on all claims, end up in one file); else ``current`` alone."""
    if previous and previous.get("claims", {}).get("sha256") == current.get("claims", {}).get("sha256"):
        methods = {**previous.get("methods", {}), **current.get("methods", {})}
        return {**previous, **current, "methods": methods}
    return current


def load_result(path: Path | None = None) -> dict[str, Any] | None:
    """The saved judge-accuracy result (default: :data:`RESULT_PATH`), or None."""
    try:
        data = json.loads(Path(path or RESULT_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save_result(result: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    from evals.runs import write_json

    path = Path(path or RESULT_PATH)
    merged = merge(load_result(path), result)
    write_json(path, merged)
    return merged


def accuracy_of(method: str, result: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What the report prints beside a faithfulness figure judged by ``method``: its balanced accuracy on the
    test half of the claims (and n, precision / recall on "not stated", when measured), or None when the
    method was never measured (no ``evals/judge_accuracy.json``, or not in it)."""
    data = result if result is not None else load_result()
    fig = ((data or {}).get("methods") or {}).get(method)
    if not fig:
        return None
    test = fig.get("test") or {}
    return {"method": method, "label": fig.get("label", method), "balanced_accuracy": test.get("balanced_accuracy"),
            "precision_not_stated": test.get("precision_not_stated"),
            "recall_not_stated": test.get("recall_not_stated"), "n": test.get("n"),
            "share_bias": test.get("share_bias"), "share_error": test.get("share_error"),
            "threshold": fig.get("threshold"), "measured": fig.get("measured"),
            "claims": ((data or {}).get("claims") or {}).get("n")}


def trust_note(acc: dict[str, Any] | None) -> str:
    """One line: how far a figure judged by this method can be trusted."""
    if not acc or acc.get("balanced_accuracy") is None:
        return "judge accuracy not measured (run `studybot eval --judge-accuracy`)"
    note = (f"judge balanced accuracy {acc['balanced_accuracy']:.2f} on {acc.get('n')} held-out labelled claims "
            f"({acc.get('label')})")
    if acc.get("share_error") is not None and acc.get("share_bias") is not None:
        note += (f"; on those claims' answers its share of stated sentences is off the readers' by "
                 f"{acc['share_error']:.2f} an answer, {acc['share_bias']:+.2f} overall")
    return note


def _f(x: Any, nd: int = 2) -> str:
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _signed(x: Any) -> str:
    return "–" if x is None else f"{x:+.2f}"


def _test_cells(test: dict[str, Any]) -> str:
    """A table row's cells of the test half: balanced accuracy, precision / recall on "not stated", share bias and
    per-answer share error."""
    return (f"{_f(test.get('balanced_accuracy'))} | {_f(test.get('precision_not_stated'))} / "
            f"{_f(test.get('recall_not_stated'))} | {_signed(test.get('share_bias'))} | {_f(test.get('share_error'))}")


def format_table(result: dict[str, Any], default: str | None = None) -> str:
    """The judge-accuracy table (test half), then the split."""
    lines = ["| method | balanced accuracy (test) | precision / recall on not stated (test) | share stated: judged - "
             "readers' (test) | per-answer share error (test) | n test | threshold | seconds / claim | (tune BA) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, fig in (result.get("methods") or {}).items():
        test, tune = fig.get("test") or {}, fig.get("tune") or {}
        label = f"**{fig.get('label', name)}**" if name == default else fig.get("label", name)
        thr = f"{_f(fig.get('threshold'))} ({'tuned' if fig.get('tuned') else 'shipped'})"
        read = fig.get("n_read")
        n = f"{test.get('n')}" + (f" (of {read} read, limit {fig['limit']})" if fig.get("limit") else "")
        if fig.get("n_failed"):
            n += f", {fig['n_failed']} failed"
        lines.append(f"| {label} (`{name}`) | {_test_cells(test)} | {n} | {thr} | "
                     f"{_f(fig.get('seconds_per_claim'), 2)} | {_f(tune.get('balanced_accuracy'))} |")
    reader = result.get("second_reader")
    if reader:
        test, tune = reader.get("test") or {}, reader.get("tune") or {}
        lines.append(f"| {reader.get('label', 'a second reader')} (`second_reader`) | {_test_cells(test)} | "
                     f"{test.get('n')} (agrees on {test.get('agree')}) | – | – | {_f(tune.get('balanced_accuracy'))} |")
    sp = result.get("split") or {}
    claims = result.get("claims") or {}
    lines += ["", f"claims: {claims.get('path', '?')} ({claims.get('n', '?')}, sha256 {str(claims.get('sha256', ''))[:12]})",
              f"split: {sp.get('rule', SPLIT_RULE)}"]
    for half in HALVES:
        h = sp.get(half) or {}
        qs = h.get("questions") or []
        lines.append(f"  {half}: {h.get('n')} claims ({h.get('not_stated')} not stated), {len(qs)} questions: "
                     + ", ".join(qs))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# the model's readers
# ------------------------------------------------------------------------------------------------------


class ReadingCache:
    """Readings kept on disk (one JSON object a line: key, value, seconds), so a stopped measurement resumes and
    a later run of another method re-uses the prompts an earlier one read. Keys name the model (its file) and
    the whole input; delete the file after changing the llama.cpp build or the prompts' wording elsewhere."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, tuple[float, float]] = {}
        self.lists: dict[str, tuple[list[float], float]] = {}  # readings of several numbers (token log-probs)
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    d = json.loads(line)
                    if "values" in d:
                        self.lists[d["key"]] = ([float(v) for v in d["values"]], float(d["seconds"]))
                    else:
                        self.entries[d["key"]] = (float(d["value"]), float(d["seconds"]))

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> tuple[float, float] | None:
        return self.entries.get(key)

    def put(self, key: str, value: float, seconds: float) -> None:
        self.entries[key] = (value, seconds)
        self._append({"key": key, "value": value, "seconds": round(seconds, 4)})

    def get_list(self, key: str) -> tuple[list[float], float] | None:
        return self.lists.get(key)

    def put_list(self, key: str, values: list[float], seconds: float) -> None:
        self.lists[key] = (list(values), seconds)
        self._append({"key": key, "values": [round(v, 5) for v in values], "seconds": round(seconds, 4)})

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class CachedYesNo(LLM):
    """An :class:`LLM` whose :meth:`yes_no` evaluates each distinct prompt once (several methods read the same
    check prompt; with a :class:`ReadingCache` on disk, across runs too); :attr:`charged` adds up the seconds
    of the prompts read, cached or not, so each method is charged what its reading costs on its own."""

    def __init__(self, llm: LLM, cache: ReadingCache | None = None) -> None:
        self.llm = llm
        self.name = f"cached:{llm.name}"
        self.n_ctx = llm.n_ctx
        self._cache = cache or ReadingCache(None)
        self.charged = 0.0

    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        key = self._cache.key("yes_no", self.llm.name, messages)
        hit = self._cache.get(key)
        if hit is None:
            t = time.perf_counter()
            value = self.llm.yes_no(messages, shared)
            hit = (value, time.perf_counter() - t)
            self._cache.put(key, *hit)
        self.charged += hit[1]
        return hit[0]

    def token_logprobs(self, messages: list[dict[str, str]], text: str, shared: str = "") -> list[float]:
        """The backend's per-token log-probabilities of ``text`` as the reply (llama.cpp only), read once."""
        read = getattr(self.llm, "token_logprobs", None)
        if read is None:
            raise ValueError(f"the {self.llm.name} backend gives no token log-probabilities (use llama_cpp)")
        key = self._cache.key("token_logprobs", self.llm.name, messages, text)
        hit = self._cache.get_list(key)
        if hit is None:
            t = time.perf_counter()
            values = [float(v) for v in read(messages, text, shared)]
            hit = (values, time.perf_counter() - t)
            self._cache.put_list(key, *hit)
        self.charged += hit[1]
        return hit[0]

    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        return self.llm.generate(messages, request)

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def keep_prefix(self, messages: list[dict[str, str]]) -> int:
        return self.llm.keep_prefix(messages)


def excerpt_of(claim: Claim) -> str:
    """The claim's passage as the check prompt's excerpts block (numbered as the sentence cites it)."""
    from rag.citations import marker_numbers

    cited = marker_numbers(claim.sentence)
    n = cited[0] if len(set(cited)) == 1 else 1
    return prompts.excerpt_block(n, claim.source or "handbook", claim.passage.strip())


# Two more prompts for the vote: a bare NLI question without the answer path's system prompt, and its inverse
# (does the sentence add or change anything?), read as "no" = stated.
NLI_PROMPT = ("Passage:\n{passage}\n\nStatement: {claim}\n\nIs every part of the statement stated by the passage, "
              "with the same facts, numbers and direction? Answer yes or no.")
ADDS_PROMPT = ("Passage:\n{passage}\n\nStatement: {claim}\n\nDoes the statement add, change, swap or reverse "
               "anything compared with what the passage says? Answer yes or no.")


# focus_pmi's second reading: the sentence as the model's own one-sentence answer, read token by token with the
# focused excerpt and with no passage. A token the excerpt makes *less* likely than no passage at all (a swapped
# number, the other row's value, a reversed direction) is a token the excerpt contradicts; the reading adds
# PMI_WEIGHT x the sentence's lowest such difference to focus's log-odds. The prompt starts like NLI_PROMPT
# ("Passage:\n..."), so the excerpt's tokens evaluated for focus are re-used.
TOKEN_PROMPT = ("Passage:\n{passage}\n\nQuestion: {question}\n\nAnswer in one sentence, using only what the "
                "passage says.")
NO_PASSAGE = "(none)"
# 0.25: the ratio of the two coefficients (0.339 / 1.323 = 0.256) of a logistic regression of the verdict on focus's
# log-odds and the lowest token difference, fitted on the claims' tune half only (2026-12-06; grouped 5-fold
# cross-validation inside the tune half, 10 repeats: balanced accuracy 0.752 with it, 0.719 with focus alone).
PMI_WEIGHT = 0.25


# The focused excerpt: the passage's units (with their intro or table header) that share the most content words
# with the sentence, in passage order. 3 units: a claim rarely draws on more (claims.jsonl: answer sentences cite
# one fact or two), and the 1.5B model reads a short excerpt better than a whole passage (nli on whole passages
# vs focus, judge_accuracy.json).
FOCUS_UNITS = 3
_STOP = frozenset(["a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "which", "with"])


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def focused_excerpt(sentence: str, passage: str, k: int = FOCUS_UNITS) -> str:
    """The ``k`` units of ``passage`` sharing the most content words with ``sentence`` (ties: the earlier),
    each whole (a list item with its intro, a table row with its header), in the passage's order."""
    from rag.units import split_units, whole

    units = [u for u in split_units(passage) if u.text.strip()]
    if len(units) <= k:
        return passage.strip()
    want = _content_words(sentence)
    ranked = sorted(range(len(units)), key=lambda i: (-len(want & _content_words(units[i].text)), i))[:k]
    return "\n".join(dict.fromkeys(whole(units, units[i], passage) for i in sorted(ranked)))


class ModelReaders:
    """The methods that read a claim with the local model (one forward pass each, log-probabilities of
    yes/no) or with the answer pipeline's own Verifier; they share one :class:`CachedYesNo`."""

    def __init__(self, settings: Settings, llm: LLM, cache: ReadingCache | None = None) -> None:
        from rag.answer.verify import Verifier

        self.settings = settings
        self.llm = CachedYesNo(llm, cache)
        self.rules_only = Verifier(settings.answer, None)
        self.verifier = Verifier(settings.answer, lambda: self.llm)
        self._charged_before = 0.0
        self._rule_seconds = 0.0

    # -- costs: a method is charged its rules' time and the model calls it read ---------------------------------
    def _start(self) -> None:
        self._charged_before = self.llm.charged
        self._rule_seconds = 0.0

    def cost(self) -> float:
        return self._rule_seconds + (self.llm.charged - self._charged_before)

    def _rules(self, claim: Claim) -> str:
        """"short" (not a claim: passes), "" (passes the rules) or the rule it fails."""
        from rag.answer.verify import MIN_WORDS, strip_markers

        t = time.perf_counter()
        text = strip_markers(claim.sentence)
        if len(text.split()) < MIN_WORDS and not text.lstrip().startswith("```"):
            reason = "short"
        else:
            reason = self.rules_only.rules(claim.sentence, [claim.passage], claim.question)
        self._rule_seconds += time.perf_counter() - t
        return reason

    def _check_logodds(self, claim: Claim) -> float:
        from rag.answer.verify import check_messages, strip_markers

        messages, shared = check_messages(excerpt_of(claim), strip_markers(claim.sentence))
        return self.llm.yes_no(messages, shared)

    def _bare_logodds(self, template: str, claim: Claim) -> float:
        from rag.answer.verify import strip_markers

        content = prompts.render(template, passage=claim.passage.strip(), claim=strip_markers(claim.sentence))
        shared = content.split("\n\nStatement:", 1)[0]
        return self.llm.yes_no([{"role": "user", "content": content}], shared)

    # -- the readings -----------------------------------------------------------------------------------
    def read_rules(self, claim: Claim) -> float:
        self._start()
        return 0.0 if self._rules(claim) not in ("", "short") else 1.0

    def read_verifier(self, claim: Claim) -> float:
        """The answer pipeline's :meth:`Verifier.check` as in production (rules, then the model's yes/no at the
        shipped ``verify_min_logodds``), the claim's passage as its evidence."""
        self._start()
        t = time.perf_counter()
        check = self.verifier.check(claim.sentence, [claim.passage], claim.question, excerpts=excerpt_of(claim))
        model = self.llm.charged - self._charged_before
        self._rule_seconds = max(0.0, time.perf_counter() - t - model)
        return 1.0 if check.supported else 0.0

    def read_yesno(self, claim: Claim) -> float:
        """The model's log-odds of "yes" to the answer path's check prompt, no rules."""
        self._start()
        return self._check_logodds(claim)

    def read_rules_yesno(self, claim: Claim) -> float:
        """The Verifier's steps with a threshold of its own: the rules, then the check prompt's log-odds."""
        self._start()
        reason = self._rules(claim)
        if reason == "short":
            return SHORT_PASS
        return RULES_FAIL if reason else self._check_logodds(claim)

    def read_nli(self, claim: Claim) -> float:
        self._start()
        return self._bare_logodds(NLI_PROMPT, claim)

    def _focus(self, claim: Claim) -> tuple[str, float]:
        """:func:`focused_excerpt` of the claim's passage and the NLI prompt's log-odds on it."""
        from rag.answer.verify import strip_markers

        excerpt = focused_excerpt(strip_markers(claim.sentence), claim.passage)
        return excerpt, self._bare_logodds(NLI_PROMPT, Claim(**{**claim.__dict__, "passage": excerpt}))

    def read_focus(self, claim: Claim) -> float:
        """The NLI prompt on :func:`focused_excerpt` instead of the whole passage."""
        self._start()
        return self._focus(claim)[1]

    def least_supported_token(self, claim: Claim, excerpt: str) -> float:
        """The lowest, over the sentence's tokens, of log P(token | excerpt, question) - log P(token | no passage,
        question): the sentence read as the model's answer (:data:`TOKEN_PROMPT`)."""
        from rag.answer.verify import strip_markers

        text = strip_markers(claim.sentence)
        question = claim.question or text
        with_passage = prompts.render(TOKEN_PROMPT, passage=excerpt, question=question)
        without = prompts.render(TOKEN_PROMPT, passage=NO_PASSAGE, question=question)
        shared = with_passage.split("\n\nQuestion:", 1)[0]
        given = self.llm.token_logprobs([{"role": "user", "content": with_passage}], text, shared)
        alone = self.llm.token_logprobs([{"role": "user", "content": without}], text)
        return min((a - b for a, b in zip(given, alone, strict=True)), default=0.0)

    def read_focus_pmi(self, claim: Claim) -> float:
        """focus's log-odds + :data:`PMI_WEIGHT` x :meth:`least_supported_token` on the same excerpt."""
        self._start()
        excerpt, logodds = self._focus(claim)
        return logodds + PMI_WEIGHT * self.least_supported_token(claim, excerpt)

    def read_vote(self, claim: Claim) -> float:
        """Three prompts voting: the mean of the check prompt's, the NLI prompt's and minus the "adds
        anything?" prompt's log-odds."""
        self._start()
        return (self._check_logodds(claim) + self._bare_logodds(NLI_PROMPT, claim)
                - self._bare_logodds(ADDS_PROMPT, claim)) / 3

    def methods(self) -> dict[str, Method]:
        s = self.settings.answer
        return {
            "rules": Method("rules", "the Verifier's rules alone (numbers, terms, word support)", self.read_rules,
                            threshold=0.5, cost=self.cost),
            "verifier": Method("verifier", f"the answer pipeline's Verifier as shipped (rules, then yes/no log-odds "
                               f">= {s.verify_min_logodds})", self.read_verifier, threshold=0.5, cost=self.cost),
            "yesno": Method("yesno", "the model's yes/no log-odds, check prompt, one forward pass", self.read_yesno,
                            cost=self.cost),
            "rules_yesno": Method("rules_yesno", "the Verifier's rules, then yes/no log-odds at a tuned threshold",
                                  self.read_rules_yesno, cost=self.cost),
            "nli": Method("nli", "yes/no log-odds, a bare NLI prompt (no system prompt)", self.read_nli,
                          cost=self.cost),
            "focus": Method("focus", "yes/no log-odds, the NLI prompt on the passage's 3 units nearest the sentence",
                            self.read_focus, cost=self.cost),
            "focus_pmi": Method("focus_pmi", f"focus + {PMI_WEIGHT} x the sentence's least supported token (its "
                                "log-prob with the excerpt minus without it)", self.read_focus_pmi, cost=self.cost),
            "vote": Method("vote", "three prompts voting (mean log-odds: check, NLI, minus 'adds anything?')",
                           self.read_vote, cost=self.cost),
        }


FAST_METHODS = ("rules", "verifier", "yesno", "rules_yesno", "nli", "focus", "focus_pmi", "vote")
ALL_METHODS = (*FAST_METHODS, "ragas")


def ragas_method(judge: Any, cache: ReadingCache | None = None, model: str = "") -> Method:
    """Ragas 0.4 faithfulness with the project's judge (:mod:`evals.judge`): response = the sentence,
    retrieved_contexts = [the passage], user_input = the question; the score (the share of the sentence's
    statements the judge finds supported) is thresholded on the tune half. ``model`` names the judge in the
    cache keys."""
    from evals.judge import build_metrics
    from evals.scoring import run_llm_metric

    metric = build_metrics(judge, None, ["faithfulness"])["faithfulness"]
    cache = cache or ReadingCache(None)
    spent = [0.0]

    def read(claim: Claim) -> float:
        from rag.answer.verify import strip_markers

        inputs = {"user_input": claim.question or claim.sentence, "response": strip_markers(claim.sentence),
                  "retrieved_contexts": [claim.passage]}
        key = cache.key("ragas_faithfulness", model, inputs)
        hit = cache.get(key)
        if hit is not None:
            spent[0] = hit[1]
            return hit[0]
        r = run_llm_metric("faithfulness", metric, inputs, getattr(judge, "stats", None))
        spent[0] = float(r.get("seconds") or 0.0)
        if r.get("value") is None:
            raise ValueError(r.get("error") or "no score")
        cache.put(key, float(r["value"]), spent[0])
        return float(r["value"])

    return Method("ragas", "Ragas faithfulness, the local judge (1.5B, schema-constrained JSON)", read,
                  cost=lambda: spent[0], slow=True)


@contextlib.contextmanager
def open_methods(settings: Settings, llm: Callable[[], LLM], names: Sequence[str], log_dir: Path,
                 cache: ReadingCache | None = None) -> Iterator[list[Method]]:
    """The methods named (in :data:`ALL_METHODS` order); Ragas starts the judge server for the block."""
    unknown = [n for n in names if n not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    out: list[Method] = []
    with contextlib.ExitStack() as stack:
        fast = [n for n in FAST_METHODS if n in names]
        if fast:
            model = llm()
            from rag.answer.pipeline import warm_up

            warm_up(model)  # the check prompt's fixed prefix, kept between the prompts of other methods
            readers = ModelReaders(settings, model, cache).methods()
            out += [readers[n] for n in fast]
        if "ragas" in names:
            from evals.judge import JudgeStats, judge_gguf, judge_llm, open_judge

            endpoint = stack.enter_context(open_judge(settings, log_dir))
            judge_name = endpoint.base_url if not endpoint.local else judge_gguf(settings).name
            out.append(ragas_method(judge_llm(endpoint, settings, JudgeStats()), cache, judge_name))
        yield out


def run(settings: Settings, llm: Callable[[], LLM], claims_path: Path, names: Sequence[str], limit: int,
        log_dir: Path, progress: Callable[[str, int, int], None] | None = None,
        cache: ReadingCache | None = None) -> dict[str, Any]:
    """``studybot eval --judge-accuracy``: read the claims with each named method (``limit``: each reads
    :func:`sample`'s ``limit`` claims, half from each half; ``cache``: readings kept on disk, so a stopped run
    resumes)."""
    claims = load_claims(claims_path)
    if not claims:
        raise ValueError(f"{claims_path} holds no claims")
    result: dict[str, Any] = {"claims": {"path": _display(claims_path), "sha256": file_sha256(claims_path),
                                         "n": len(claims), "not_stated": sum(not c.stated for c in claims)},
                              "split": split_summary(claims), "methods": {}}
    reader = second_reader(claims)  # before the readings: a malformed file is said before any model call
    if reader:
        result["second_reader"] = reader
    with open_methods(settings, llm, names, log_dir, cache) as methods:
        result["methods"] = measure(methods, claims, limit, progress)["methods"]
    return result


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(EVALS_DIR.parent))
    except ValueError:
        return str(path)
