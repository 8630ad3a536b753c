"""Answer pipeline benchmark on the gold set, side by side with bare llama-cpp-python.

Usage: python bench/answer.py [--limit N] [--bare-limit M] [--max-tokens T] [--json]
       python bench/answer.py --compare --gold evals/blind.jsonl ...   (old vs evidence-first: bench/answer_compare.py)

Per question: time to first token (end to end and of the model alone), decode tokens/s, prompt tokens,
total seconds; for the first M questions the exact same messages are also sent to
``llama_cpp.Llama.create_chat_completion`` on the same model instance (KV cache put back to the same state:
only the fixed prefix cached), giving the pipeline overhead ratio = pipeline total / (retrieval + bare total).
Also: the KV-cache prefix saving (the same prompt with a cold cache vs with the fixed prefix cached) and the
refusal figures (unanswerable refused, answerable wrongly refused). ``--limit`` takes a stratified sample
(answerable and unanswerable in the gold set's proportion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.gold import GOLD_PATH, GoldItem, is_relevant, load_gold  # noqa: E402
from rag.answer import STOP, AnswerPipeline  # noqa: E402
from rag.context import block  # noqa: E402
from rag.settings import Settings, apply_offline_env  # noqa: E402
from ui.service import StudyService  # noqa: E402


def sample(items: list[GoldItem], limit: int) -> list[GoldItem]:
    if not limit or limit >= len(items):
        return items
    ans = [i for i in items if i.answerable]
    una = [i for i in items if not i.answerable]
    n_una = max(1, round(limit * len(una) / len(items)))
    n_ans = limit - n_una
    pick_a = [ans[round(j * len(ans) / n_ans)] for j in range(n_ans)] if n_ans else []
    pick_u = [una[round(j * len(una) / n_una)] for j in range(n_una)]
    out: list[GoldItem] = []
    while pick_a or pick_u:  # interleave so a truncated run still sees both kinds
        for src, share in ((pick_a, max(1, n_ans // n_una)), (pick_u, 1)):
            for _ in range(share):
                if src:
                    out.append(src.pop(0))
    return out


class Bare:
    """llama-cpp-python directly on the pipeline's model instance."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.llama = llm.load()

    def tokens(self, messages: list[dict[str, str]]) -> list[int]:
        fmt = self.llm._formatter
        result = fmt(messages=messages)
        return self.llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def prefix_len(self) -> int:
        """Tokens shared by every answer prompt (system message + example turns)."""
        a = self.tokens(AnswerPipeline.messages("x", "first question?"))
        b = self.tokens(AnswerPipeline.messages("y", "another one?"))
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    def keep_prefix(self, n: int) -> None:
        """Forget the KV cache past the first ``n`` tokens (the next call re-evaluates the rest)."""
        self.llama.n_tokens = min(self.llama.n_tokens, n)

    def run(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> dict[str, Any]:
        start = time.perf_counter()
        ttft = None
        pieces = 0
        for chunk in self.llama.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=temperature, stop=STOP, seed=self.llm.seed,
            stream=True,
        ):
            if chunk["choices"][0].get("delta", {}).get("content"):
                pieces += 1
                if ttft is None:
                    ttft = time.perf_counter() - start
        total = time.perf_counter() - start
        return {"ttft_s": round(ttft or total, 3), "total_s": round(total, 3), "pieces": pieces}


def kv_saving(bare: Bare, messages: list[dict[str, str]], prefix: int) -> dict[str, Any]:
    """Prefill of one prompt with a cold cache vs with the fixed prefix cached (max_tokens=1)."""
    bare.llama.reset()
    cold = bare.run(messages, 1, 0.0)["ttft_s"]
    bare.keep_prefix(prefix)
    warm = bare.run(messages, 1, 0.0)["ttft_s"]
    return {"prefix_tokens": prefix, "prompt_tokens": len(bare.tokens(messages)), "cold_ttft_s": cold,
            "warm_ttft_s": warm, "saved_s": round(cold - warm, 3)}


def main() -> int:
    if "--compare" in sys.argv[1:]:
        from bench.answer_compare import main as compare

        sys.argv.remove("--compare")
        return compare()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="questions (stratified sample; default: all)")
    ap.add_argument("--gold", type=Path, default=GOLD_PATH,
                    help="question set (JSONL, gold format): e.g. evals/holdout.jsonl, which no threshold was tuned on")
    ap.add_argument("--ids", help="only these gold ids, comma-separated (e.g. to re-run the refused ones)")
    ap.add_argument("--bare-limit", type=int, default=8, help="questions also run on bare llama-cpp-python")
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dump", help="also write each question's raw reply and packed passages here (JSONL), to "
                    "re-score refusal and attribution thresholds offline")
    args = ap.parse_args()
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None  # noqa: SIM115

    apply_offline_env()
    settings = Settings()
    svc = StudyService(settings)
    items = sample(load_gold(args.gold), args.limit)
    if args.ids:
        wanted = {i.strip() for i in args.ids.split(",") if i.strip()}
        items = [i for i in items if i.id in wanted]
    pipeline = svc.answers
    llm = svc.llm
    bare = Bare(llm)
    prefix = bare.prefix_len()
    rows: list[dict[str, Any]] = []
    kv: dict[str, Any] | None = None
    bare.run(AnswerPipeline.messages("x", "warm up?"), 1, 0.0)  # the fixed prefix is cached, as in service
    n_bare = 0
    t_start = time.perf_counter()
    for i, item in enumerate(items):
        a = pipeline.ask(item.question, max_tokens=args.max_tokens)
        t = a.timings
        gen = (t.get("llm_total_s") or 0) - (t.get("llm_ttft_s") or 0)
        row: dict[str, Any] = {
            "id": item.id,
            "answerable": item.answerable,
            "refused": a.refused,
            "reason": a.refusal_reason,
            "evidence": t["evidence"],
            "support": t.get("support"),
            "semantic": t.get("semantic_support"),
            "second_look": a.second_look,
            "second_look_s": t.get("second_look_s"),
            "missing_terms": a.missing_terms,
            "cited": len(a.citations),
            "auto_cited": a.auto_cited,
            "cited_relevant": any(is_relevant(item, c.source, c.text) for c in a.citations)
            if item.answerable else None,
            "given_relevant": any(is_relevant(item, p.chunk.source, p.chunk.text) for p in a.passages)
            if item.answerable else None,
            "context_tokens": t["context_tokens"],
            "prompt_tokens": t["prompt_tokens"],
            "completion_tokens": t["completion_tokens"],
            "retrieval_ms": t["retrieval_ms"],
            "ttft_s": t["ttft_s"],
            "llm_ttft_s": t.get("llm_ttft_s"),
            "decode_tps": round(t["completion_tokens"] / gen, 1) if gen > 0 and t["completion_tokens"] else None,
            "total_s": t["total_s"],
            "answer": a.answer,
        }
        if a.passages and n_bare < args.bare_limit:
            messages = AnswerPipeline.messages("\n".join(block(n, p) for n, p in enumerate(a.passages, 1)),
                                               a.question)
            bare.keep_prefix(prefix)  # same cache state the pipeline call had: only the fixed prefix
            b = bare.run(messages, args.max_tokens, settings.llm.temperature)
            row["bare_ttft_s"] = b["ttft_s"]
            row["bare_total_s"] = b["total_s"]
            row["overhead"] = round(t["total_s"] / (t["retrieval_ms"] / 1000 + b["total_s"]), 3)
            n_bare += 1
            if kv is None:
                kv = kv_saving(bare, messages, prefix)
        rows.append(row)
        if dump is not None:
            dump.write(json.dumps({"id": item.id, "answerable": item.answerable, "question": a.question,
                                   "refused": a.refused, "reason": a.refusal_reason, "raw": a.raw,
                                   "second_look": a.second_look, "missing_terms": a.missing_terms,
                                   "evidence": t["evidence"],
                                   "passages": [p.chunk.text for p in a.passages],
                                   "relevant": [is_relevant(item, p.chunk.source, p.chunk.text)
                                                for p in a.passages] if item.answerable else []},
                                  ensure_ascii=False) + "\n")
            dump.flush()
        print(f"{i + 1}/{len(items)} {item.id} refused={a.refused} ({a.refusal_reason}) support={t.get('support')} "
              f"ttft={t['ttft_s']} total={t['total_s']} overhead={row.get('overhead')} | {a.answer[:100]!r}",
              file=sys.stderr, flush=True)

    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]

    def pct(xs: list[Any]) -> float | None:
        return round(100 * sum(1 for x in xs if x) / len(xs), 1) if xs else None

    called = [r for r in rows if r["prompt_tokens"]]
    with_bare = [r for r in rows if "overhead" in r]
    summary = {
        "question_set": args.gold.name,
        "questions": len(rows),
        "answerable": len(ans),
        "unanswerable": len(una),
        "unanswerable_refused_pct": pct([r["refused"] for r in una]),
        "answerable_wrongly_refused_pct": pct([r["refused"] for r in ans]),
        "refused_by_evidence": sum(1 for r in rows if r["reason"] == "evidence"),
        "refused_by_model": sum(1 for r in rows if r["reason"] == "model"),
        "refused_unsupported": sum(1 for r in rows if r["reason"] == "unsupported"),
        "refused_unknown_term": sum(1 for r in rows if r["reason"] == "unknown_term"),
        "second_looks": sum(1 for r in rows if r["second_look"]),
        "second_looks_answered": sum(1 for r in rows if r["second_look"] and not r["refused"]),
        "mean_second_look_s": round(statistics.mean(r["second_look_s"] for r in rows if r["second_look"]), 2)
        if any(r["second_look"] for r in rows) else None,
        "answerable_cited_relevant_pct": pct([r["cited_relevant"] for r in ans]),
        "answerable_given_relevant_pct": pct([r["given_relevant"] for r in ans]),
        "answered_uncited_pct": pct([r["cited"] == 0 for r in rows if not r["refused"]]),
        "mean_ttft_s": round(statistics.mean(r["ttft_s"] for r in called), 2) if called else None,
        "mean_total_s": round(statistics.mean(r["total_s"] for r in rows), 2) if rows else None,
        "mean_prompt_tokens": round(statistics.mean(r["prompt_tokens"] for r in called)) if called else None,
        "mean_decode_tps": round(statistics.mean(r["decode_tps"] for r in called if r["decode_tps"]), 1)
        if any(r["decode_tps"] for r in called) else None,
        "mean_overhead": round(statistics.mean(r["overhead"] for r in with_bare), 3) if with_bare else None,
        "kv_prefix": kv,
        "context_budget_tokens": settings.answer.context_budget_tokens,
        "min_evidence_similarity": settings.answer.min_evidence_similarity,
        "min_support": settings.answer.min_support,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False))
        return 0
    cols = ["id", "answerable", "refused", "reason", "evidence", "support", "semantic", "second_look", "cited",
            "cited_relevant",
            "prompt_tokens", "ttft_s", "llm_ttft_s", "decode_tps", "total_s", "bare_ttft_s", "bare_total_s",
            "overhead"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols))
    print()
    for k, v in summary.items():
        print(f"{k:<32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
