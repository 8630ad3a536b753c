"""The evidence ranking alone, without generating answers: is the unit that states the answer ranked first?

Usage::

    python -m bench.rank collect [--sets gold,holdout,holdout2,blind,blind2] [--n 12] [--out F] [--variant V]
    python -m bench.rank report [--dump F] [--k 4,6,8,10,12] [--weights 0,0.1,0.2,0.4,1]

``collect`` retrieves ``top_k`` passages per question (answerable and not), cuts the candidate units
(:class:`rag.answer.rank.Scorer`: every quotable unit, whole, scorer order), keeps the first ``n`` and asks
the model's judge about each (:class:`rag.answer.rank.Judge`; log-odds cached by prompt variant, question
and unit, so a rerun costs nothing). One JSON line per question goes to ``--out``.

``report`` prints, per question set and over all, for the answerable questions: the share whose gold phrase
is in the retrieved passages and in the candidates (the ceiling), then top-1 / top-3 / MRR of the first unit
that states a gold phrase (``evals.gold.states``: 80% of a phrase's words) for the scorer alone, the judge
alone on the scorer's first ``k``, and ``scorer + w x judge`` for each ``k`` and ``w``; a logistic ranker
over unit features, cross-validated by question set (trained on the other sets); the judge's cost per
question at each ``k``; and for the refusal, the best judge score of answerable vs unanswerable questions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evals.gold import load_gold, states
from rag import prompts
from rag.answer.passages import candidate_passages
from rag.answer.rank import Scorer, rank
from rag.answer.select import answers_logodds, choose, excerpts, quotes
from rag.settings import Settings, apply_offline_env
from rag.units import is_heading

EVALS = Path(__file__).resolve().parent.parent / "evals"
CACHE_DIR = Path.home() / ".cache" / "studybot" / "bench"
DEFAULT_SETS = "gold,holdout,holdout2,blind,blind2"
ANSWERS_WEIGHT = 0.2  # the judge's weight for the provisional quotes whose answers? check is recorded

Messages = list[dict[str, str]]


def _variant(name: str, llm: Any) -> Callable[[str, str, str], tuple[Messages, Callable[[], float]]]:
    """Prompt variants of the judge: each gives (prompt, scoring call). The shipped one is ``judge``."""
    import math

    def judge(question: str, section: str, excerpt: str) -> tuple[Messages, Callable[[], float]]:
        # the shipped prompt (rag/prompts/judge.txt: the first measurement, "plain" in the notes)
        m, shared = prompts.judge_messages(question, excerpt)
        return m, lambda: llm.yes_no(m, shared)

    def unified(question: str, section: str, excerpt: str) -> tuple[Messages, Callable[[], float]]:
        # measured and dropped: the answer path's own system message and examples, then the question and unit
        m = prompts.answer_messages(f"Judge.\nQuestion: {question}\n\nExcerpt ({section.split('>')[-1].strip()}):"
                                    f"\n{excerpt}\n\nDoes the excerpt answer the question?")
        return m, lambda: llm.yes_no(m)

    def graded(question: str, section: str, excerpt: str) -> tuple[Messages, Callable[[], float]]:
        # "Beyond Yes and No" (NAACL 2024): graded relevance, the expected grade
        m = [{"role": "user", "content": f"Question: {question}\n\nExcerpt: {excerpt}\n\nHow well does the excerpt "
                                         "answer the question? 0 = unrelated, 1 = on the topic but does not answer, "
                                         "2 = partly answers, 3 = answers it. Reply with the number."}]

        def score() -> float:
            lps = llm.choice_logprobs(m, [["0"], ["1"], ["2"], ["3"]])
            ps = [math.exp(x) for x in lps]
            return sum(i * p for i, p in enumerate(ps)) / (sum(ps) or 1.0)
        return m, score

    def upr(question: str, section: str, excerpt: str) -> tuple[Messages, Callable[[], float]]:
        # query likelihood (UPR, Sachan et al. 2022): log P(question | excerpt) per question token
        m = [{"role": "user", "content": f"Handbook excerpt ({section.split('>')[-1].strip()}):\n{excerpt}\n\n"
                                         "Write a question a student could ask that this excerpt answers."}]
        n = max(1, llm.count_tokens(question))
        return m + [{"role": "x", "content": question}], lambda: llm.continuation_logprob(m, question) / n

    def pre(question: str, section: str, excerpt: str) -> tuple[Messages, Callable[[], float]]:
        # the instruction before the unit, so each unit costs only its own tokens after the cached question
        m = [{"role": "user", "content": f"Question: {question}\nDoes the sentence below answer this question? "
                                         f"Answer yes or no.\n\nSentence: {excerpt}"}]
        return m, lambda: llm.yes_no(m)

    variants = {"judge": judge, "unified": unified, "graded": graded, "upr": upr, "pre": pre}
    if name not in variants:
        raise SystemExit(f"unknown variant {name!r}: one of {sorted(variants)}")
    return variants[name]


class JudgeCache:
    """Log-odds by (variant, question, section, excerpt), in a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, float] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    k, v = json.loads(line)
                    self.data[k] = v
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a")

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha1("\x00".join(parts).encode()).hexdigest()

    def get(self, key: str) -> float | None:
        return self.data.get(key)

    def put(self, key: str, value: float) -> None:
        self.data[key] = value
        self._f.write(json.dumps([key, value]) + "\n")
        self._f.flush()


def collect(args: argparse.Namespace) -> int:
    from ui.service import StudyService

    apply_offline_env()
    settings = Settings()
    svc = StudyService(settings)
    llm = svc.llm
    svc.warm_up()
    scorer = Scorer(settings.answer, svc.embedder, idf=svc.retriever.idf)
    variant = _variant(args.variant, llm)
    cache = JudgeCache(CACHE_DIR / "judge-cache.jsonl")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for set_name in args.sets.split(","):
            items = load_gold(EVALS / f"{set_name}.jsonl")
            for n, item in enumerate(items, 1):
                t = time.perf_counter()
                retrieved = svc.retriever.retrieve(item.question, settings.retrieval.top_k)
                passages = candidate_passages(retrieved)
                cands = scorer.candidates(item.question, passages)[: args.n]
                scorer_ms = (time.perf_counter() - t) * 1000
                rows = []
                fresh = 0
                t_judge = time.perf_counter()
                for c in cands:
                    prompt, score = variant(item.question, c.section, c.text)
                    key = cache.key(json.dumps(prompt))
                    judge = cache.get(key)
                    if judge is None:
                        judge = score()
                        cache.put(key, judge)
                        fresh += 1
                    rows.append({"text": c.text, "kind": c.unit.kind, "passage": c.passage, "score": c.score,
                                 "dense": c.dense, "terms": c.terms, "judge": judge,
                                 "tokens": llm.count_tokens(c.text), "heading": is_heading(c.unit),
                                 "label": states(item, c.text)})
                judge_s = time.perf_counter() - t_judge
                answers = None
                if args.variant == "judge" and rows:
                    # the answers? check on the quotes the provisional selection makes (see --help)
                    scores = [row["judge"] for row in rows]
                    ranking = rank(cands, lambda cs, sc=scores: sc[: len(cs)], top=len(cands),
                                   weight=ANSWERS_WEIGHT)
                    chosen = quotes(choose(ranking, max_quotes=2, min_logodds=0.5, margin=0.3), passages)
                    prompt, _ = prompts.about_quotes(excerpts(chosen), "answers", question=item.question)
                    key = cache.key(json.dumps(prompt))
                    answers = cache.get(key)
                    if answers is None:
                        answers = answers_logodds(llm, item.question, chosen)
                        cache.put(key, answers)
                f.write(json.dumps({
                    "set": set_name, "id": item.id, "answerable": item.answerable, "kind": item.kind,
                    "passage_hit": any(states(item, p.chunk.text) for p in retrieved),
                    "evidence": max((float(p.extra.get("similarity", 0.0)) for p in retrieved), default=0.0),
                    "scorer_ms": round(scorer_ms, 1), "judge_s": round(judge_s, 3) if fresh == len(cands) else None,
                    "answers": answers,
                    "units": rows}) + "\n")
                f.flush()
                print(f"{set_name} {n}/{len(items)} {item.id} judged {fresh} in {judge_s:.1f} s", file=sys.stderr)
    return 0


# -- report -------------------------------------------------------------------------------------------------
def first_hit(order: Sequence[dict[str, Any]]) -> int | None:
    return next((i for i, u in enumerate(order) if u["label"]), None)


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {"top1": round(sum(r == 0 for r in ranks) / n, 3),
            "top3": round(sum(r is not None and r < 3 for r in ranks) / n, 3),
            "mrr": round(sum(1 / (r + 1) for r in ranks if r is not None) / n, 3)}


def order_by(units: list[dict[str, Any]], k: int, key: Callable[[dict[str, Any]], float]) -> list[dict[str, Any]]:
    """The scorer's first ``k`` reordered by ``key``, then the rest in the scorer's order."""
    return sorted(units[:k], key=lambda u: -key(u)) + units[k:]


FEATURES = ("score", "dense", "terms", "judge", "rank", "tokens", "heading", "code", "row", "item", "formula",
            "novel", "novel_share", "asks_code", "asks_number", "asks_formula")


def features(u: dict[str, Any], i: int, question: str = "") -> list[float]:
    import re

    from rag.answer.checks import content_tokens

    q = content_tokens(question)
    own = content_tokens(u["text"])
    novel = own - q
    ql = question.lower()
    return [u["score"], u["dense"], u["terms"], u["judge"], 1 / (1 + i), math.log1p(u["tokens"]),
            float(u["heading"]), float(u["kind"] == "code"), float(u["kind"] == "row"), float(u["kind"] == "item"),
            float(u["kind"] == "formula"), math.log1p(len(novel)), len(novel) / max(len(own), 1),
            float(("code" in ql or "python" in ql or "pandas" in ql) and u["kind"] == "code"),
            float(bool(re.search(r"how (many|much)|what (value|year|percent)|\bnumber\b", ql))
                  and bool(re.search(r"\d", u["text"]))),
            float(("formula" in ql or "equation" in ql) and u["kind"] == "formula")]


def logistic_cv(rows: list[dict[str, Any]], k: int) -> list[int | None]:
    """A logistic ranker over unit features, trained per held-out set on the other sets' answerable questions."""
    from sklearn.linear_model import LogisticRegression

    ranks: list[int | None] = []
    sets = sorted({r["set"] for r in rows})
    by_set: dict[str, list[int | None]] = {}
    for held in sets:
        train = [r for r in rows if r["set"] != held]
        xs = [features(u, i, r["question"]) for r in train for i, u in enumerate(r["units"][:k])]
        ys = [int(u["label"]) for r in train for u in r["units"][:k]]
        if len(set(ys)) < 2:
            continue
        from sklearn.preprocessing import StandardScaler
        scaler = StandardScaler().fit(xs)
        model = LogisticRegression(max_iter=4000, C=1.0).fit(scaler.transform(xs), ys)
        out = []
        for r in rows:
            if r["set"] != held:
                continue
            units = r["units"]
            probs = (model.decision_function(scaler.transform([features(u, i, r["question"])
                                                                for i, u in enumerate(units[:k])]))
                     if units[:k] else [])
            order = [u for _, u in sorted(zip(probs, units[:k], strict=True), key=lambda x: -x[0])] + units[k:]
            out.append(first_hit(order))
        by_set[held] = out
    for held in sets:
        ranks += by_set.get(held, [])
    return ranks


def report(args: argparse.Namespace) -> int:
    rows = [json.loads(line) for line in Path(args.dump).read_text().splitlines() if line.strip()]
    items = {(name, i.id): i for name in {r["set"] for r in rows} for i in load_gold(EVALS / f"{name}.jsonl")}
    for r in rows:  # labels from the current rule (evals.gold.states), not the one the dump was made with
        r["question"] = items[(r["set"], r["id"])].question
        for u in r["units"]:
            u["label"] = states(items[(r["set"], r["id"])], u["text"])
    ks = [int(x) for x in args.k.split(",")]
    ws = [float(x) for x in args.weights.split(",")]
    answerable = [r for r in rows if r["answerable"]]
    groups: dict[str, list[dict[str, Any]]] = {"all": answerable}
    for r in answerable:
        groups.setdefault(r["set"], []).append(r)
    table: dict[str, dict[str, Any]] = {}
    for name, rs in groups.items():
        n = len(rs)
        line: dict[str, Any] = {
            "questions": n,
            "passage_hit": round(sum(r["passage_hit"] for r in rs) / n, 3),
            "candidate_hit": round(sum(any(u["label"] for u in r["units"]) for r in rs) / n, 3),
            "scorer": metrics([first_hit(r["units"]) for r in rs]),
        }
        for k in ks:
            line[f"judge@{k}"] = metrics([first_hit(order_by(r["units"], k, lambda u: u["judge"])) for r in rs])
            for w in ws:
                line[f"scorer+{w}j@{k}"] = metrics([first_hit(order_by(r["units"], k, lambda u, w=w: u["score"]
                                                                         + w * u["judge"])) for r in rs])
        table[name] = line
    for k in ks:
        table["all"][f"logistic_cv@{k}"] = metrics(logistic_cv(answerable, k))
    print(json.dumps(table, indent=1) if args.json else "")
    if not args.json:
        methods = [m for m in table["all"] if isinstance(table["all"][m], dict)]
        print(f"{'method':24} " + " ".join(f"{name[:10]:>18}" for name in table))
        for m in methods:
            print(f"{m:24} " + " ".join(
                f"{table[g][m]['top1']:.2f}/{table[g][m]['top3']:.2f}/{table[g][m]['mrr']:.2f}".rjust(18)
                if m in table[g] else " " * 18 for g in table))
        for key in ("questions", "passage_hit", "candidate_hit"):
            print(f"{key:24} " + " ".join(f"{table[g][key]:>18}" for g in table))
    costs = [r["judge_s"] / max(len(r["units"]), 1) for r in rows if r.get("judge_s")]
    if costs:
        per_unit = statistics.median(costs)
        print(f"judge seconds per unit p50 {per_unit:.3f}; per question at k: "
              + ", ".join(f"{k}: {per_unit * k:.2f}" for k in ks))
    for k in ks:
        best = {True: [], False: []}  # type: dict[bool, list[float]]
        for r in rows:
            js = [u["judge"] for u in r["units"][:k]]
            if js:
                best[r["answerable"]].append(max(js))
        if best[True] and best[False]:
            print(f"best judge@{k}: answerable p10/p50 {_q(best[True], 0.1):.2f}/{_q(best[True], 0.5):.2f}, "
                  f"unanswerable p50/p90 {_q(best[False], 0.5):.2f}/{_q(best[False], 0.9):.2f}")
    return 0


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--sets", default=DEFAULT_SETS)
    c.add_argument("--n", type=int, default=12)
    c.add_argument("--out", default=str(CACHE_DIR / "rank.jsonl"))
    c.add_argument("--variant", default="judge")
    r = sub.add_parser("report")
    r.add_argument("--dump", default=str(CACHE_DIR / "rank.jsonl"))
    r.add_argument("--k", default="4,6,8,10,12")
    r.add_argument("--weights", default="0.05,0.1,0.2,0.4")
    r.add_argument("--json", action="store_true")
    args = ap.parse_args()
    return collect(args) if args.cmd == "collect" else report(args)


if __name__ == "__main__":
    raise SystemExit(main())
