"""Quiz generation on the real model: seconds per valid question and the share of generated items that pass
validation, per type (mcq, short, flashcard), over a few topics.

    .venv/bin/python -m bench.quiz                     # 2 items per topic and type, 3 topics (~10 min, 2 cores)
    .venv/bin/python -m bench.quiz --n 1 --types mcq --dump /tmp/attempts.jsonl
    .venv/bin/python -m bench.quiz --grading            # grading calibration only (no LLM)
    .venv/bin/python -m bench.quiz --types mcq --n 4 --topics regularization,... --read /tmp/mcqs.md

``--read`` writes every valid item with its options, key and cited passage as a Markdown sheet, to judge by
reading (does exactly one option answer the question by the passage? is any text cut off?).

``--dump`` writes every model call (raw reply, parsed item, validation result) plus the support scores of
the item against an unrelated passage and with another item's answer: the data the support thresholds in
``rag/quiz/validation.py`` were chosen on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from rag.quiz import (
    QUIZ_TYPES,
    QuizError,
    QuizItem,
    QuizMaker,
    QuizSession,
    free_text_score,
    section_key,
    support_scores,
)
from rag.settings import Settings, apply_offline_env
from ui.service import StudyService

TOPICS = ["regularization", "gradient descent", "random forests"]

# (reference, student answer, label): label 2 = correct, 1 = partly right, 0 = wrong.
GRADING_SET: list[tuple[str, str, int]] = [
    ("L1 regularization adds the absolute value of the weights to the loss and can drive some weights to "
     "exactly zero.", "It penalizes the absolute size of the weights, which makes some of them zero.", 2),
    ("L1 regularization adds the absolute value of the weights to the loss and can drive some weights to "
     "exactly zero.", "adds an absolute-value weight penalty; gives sparse weights", 2),
    ("L1 regularization adds the absolute value of the weights to the loss and can drive some weights to "
     "exactly zero.", "It adds the squared weights to the loss.", 0),
    ("L1 regularization adds the absolute value of the weights to the loss and can drive some weights to "
     "exactly zero.", "It makes the model bigger.", 0),
    ("Dropout randomly sets a fraction of neuron activations to zero during training to reduce overfitting.",
     "Randomly turning off neurons while training so the network does not overfit.", 2),
    ("Dropout randomly sets a fraction of neuron activations to zero during training to reduce overfitting.",
     "It reduces overfitting.", 1),
    ("Dropout randomly sets a fraction of neuron activations to zero during training to reduce overfitting.",
     "It lowers the learning rate over time.", 0),
    ("Precision is the share of predicted positives that are truly positive.",
     "TP / (TP + FP): the fraction of positive predictions that are correct.", 2),
    ("Precision is the share of predicted positives that are truly positive.",
     "The number of epochs used in training.", 0),
    ("Bagging trains models on bootstrap samples in parallel and averages them to reduce variance.",
     "Train many models on bootstrapped samples and average their predictions, which lowers variance.", 2),
    ("Bagging trains models on bootstrap samples in parallel and averages them to reduce variance.",
     "It reduces variance.", 1),
    ("Bagging trains models on bootstrap samples in parallel and averages them to reduce variance.",
     "A clustering algorithm that groups similar points.", 0),
    ("The learning rate controls the size of each gradient descent step.",
     "How big the steps are when gradient descent updates the weights.", 2),
    ("The learning rate controls the size of each gradient descent step.", "The number of training epochs.", 0),
    ("PCA projects data onto the orthogonal directions of maximum variance.",
     "It finds orthogonal axes that capture the most variance and projects the data onto them.", 2),
    ("PCA projects data onto the orthogonal directions of maximum variance.", "Dimensionality reduction.", 1),
    ("PCA projects data onto the orthogonal directions of maximum variance.", "It clusters data into k groups.", 0),
    ("Cross-validation splits the data into k folds, trains on k-1 folds and validates on the remaining one, "
     "rotating through all folds.",
     "Split into k parts, train on all but one and test on the held-out part, repeating for each part.", 2),
    ("Cross-validation splits the data into k folds, trains on k-1 folds and validates on the remaining one, "
     "rotating through all folds.", "You evaluate the model on several splits of the data.", 1),
    ("Cross-validation splits the data into k folds, trains on k-1 folds and validates on the remaining one, "
     "rotating through all folds.", "Normalizing features to zero mean.", 0),
    ("An LSTM uses input, forget and output gates to control its cell state, which mitigates vanishing "
     "gradients.", "Gates (input, forget, output) control a memory cell so gradients do not vanish.", 2),
    ("An LSTM uses input, forget and output gates to control its cell state, which mitigates vanishing "
     "gradients.", "It is a convolutional layer for images.", 0),
    ("Random forests average many decorrelated decision trees trained on bootstrap samples with random "
     "feature subsets.", "Lots of trees on bootstrapped data with random subsets of features, averaged.", 2),
    ("Random forests average many decorrelated decision trees trained on bootstrap samples with random "
     "feature subsets.", "An ensemble of trees.", 1),
    ("Random forests average many decorrelated decision trees trained on bootstrap samples with random "
     "feature subsets.", "A single deep neural network.", 0),
]


def grading_report(embedder: Any) -> dict[str, Any]:
    rows = []
    for ref, answer, label in GRADING_SET:
        score = free_text_score(answer, ref, embedder)
        quiz = Settings().quiz
        got = 2 if score >= quiz.grade_correct else 1 if score >= quiz.grade_partial else 0
        rows.append({"label": label, "score": round(score, 3), "got": got, "answer": answer})
    exact = sum(r["got"] == r["label"] for r in rows) / len(rows)
    # The decision that matters most: is a wrong answer ever marked correct, or a right one marked wrong?
    wrong_as_right = sum(r["label"] == 0 and r["got"] == 2 for r in rows)
    right_as_wrong = sum(r["label"] == 2 and r["got"] == 0 for r in rows)
    return {"rows": rows, "exact": round(exact, 3), "wrong_marked_correct": wrong_as_right,
            "right_marked_wrong": right_as_wrong, "n": len(rows)}


def negatives(maker: QuizMaker, attempts: list[Any], rng: random.Random) -> list[dict[str, Any]]:
    """Support scores of each parsed item (a) against its own passage, (b) against a passage of another
    section, (c) with the answer of another item (same question, same passage)."""
    chunks = list(maker.retriever.chunks.values())
    parsed = [a for a in attempts if a.item is not None]
    out = []
    for a in parsed:
        own = maker.retriever.chunks[a.chunk_id]
        other = rng.choice([c for c in chunks if section_key(c) != section_key(own) and len(c.text) > 200])
        swap = rng.choice([b for b in parsed if b is not a] or [a])
        swapped = QuizItem(a.item.type, a.item.question, swap.item.answer, "", [], {})
        out.append({
            "type": a.item.type, "ok": a.ok, "reason": a.reason, "seconds": round(a.seconds, 2),
            "question": a.item.question, "answer": a.item.answer, "options": a.item.options,
            "explanation": a.item.explanation, "section": own.section,
            "own": support_scores(a.item, maker.embedder, own.text),
            "other_passage": support_scores(a.item, maker.embedder, other.text),
            "swapped_answer": support_scores(swapped, maker.embedder, own.text),
        })
    return out


def reading_sheet(items: list[QuizItem]) -> str:
    """Each item as a reader judges it: question, lettered options, the key, and the passage it cites."""
    out = ["# Quiz items to judge by reading", "",
           "For each: exactly one defensible answer by the passage (yes/no)? Anything cut off?", ""]
    for n, item in enumerate(items, start=1):
        out += [f"## {n}. {item.question}", ""]
        out += [f"- {'ABCD'[i]}) {o}" for i, o in enumerate(item.options)]
        out += ["", f"Key: {item.answer}", "", f"Passage ({item.citation.source} — {item.citation.section}):", ""]
        out += ["> " + line for line in item.citation.text.strip().splitlines()] + [""]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2, help="valid items asked per topic and type (default 2)")
    p.add_argument("--topics", default=",".join(TOPICS), help="comma-separated; '-' = no topic (spread)")
    p.add_argument("--types", default=",".join(QUIZ_TYPES))
    p.add_argument("--max-minutes", type=float, default=10.0, help="skip what is left after this long")
    p.add_argument("--dump", help="write every attempt with its support scores (JSONL)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--grading", action="store_true", help="only the grading calibration (no LLM)")
    p.add_argument("--read", help="write the valid items with their passages as Markdown, to judge by reading")
    args = p.parse_args()
    apply_offline_env()
    svc = StudyService(Settings())
    if args.grading:
        rep = grading_report(svc.embedder)
        for r in rep["rows"]:
            print(f"label {r['label']} got {r['got']} score {r['score']:.3f}  {r['answer'][:70]}")
        print(f"exact {rep['exact']:.2f} over {rep['n']}; wrong marked correct {rep['wrong_marked_correct']}, "
              f"right marked wrong {rep['right_marked_wrong']}")
        return 0

    t0 = time.perf_counter()
    svc.warm_up()  # the model loaded, the fixed prompt evaluated
    svc.retriever.refresh()
    print(f"model {svc.llm.name} ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    topics = [None if t.strip() == "-" else t.strip() for t in args.topics.split(",")]
    deadline = time.perf_counter() + args.max_minutes * 60
    summary: dict[str, Any] = {}
    all_attempts: list[dict[str, Any]] = []
    valid_items: list[QuizItem] = []
    rng = random.Random(0)
    for qtype in [t.strip() for t in args.types.split(",")]:
        maker = QuizMaker(svc.llm, svc.embedder, svc.retriever, svc.settings.quiz, glossary=svc.glossary)
        session = QuizSession(0)
        row = {"valid": 0, "generated": 0, "seconds": 0.0, "topics": 0, "errors": []}
        for topic in topics:
            if time.perf_counter() > deadline:
                row["errors"].append(f"skipped {topic!r}: time budget")
                continue
            start = time.perf_counter()
            n_before = len(maker.attempts)
            try:
                res = maker.make(topic, args.n, qtype, session=session)
                row["valid"] += len(res.items)
            except QuizError as exc:
                row["errors"].append(str(exc))
            row["seconds"] += time.perf_counter() - start
            row["generated"] += len(maker.attempts) - n_before
            row["topics"] += 1
            print(f"{qtype:9} {topic or '(spread)':18} {time.perf_counter() - start:6.1f} s", file=sys.stderr)
        row["s_per_valid"] = round(row["seconds"] / row["valid"], 1) if row["valid"] else None
        row["pass_rate"] = round(row["valid"] / row["generated"], 2) if row["generated"] else None
        row["seconds"] = round(row["seconds"], 1)
        row["reasons"] = [a.reason for a in maker.attempts if not a.ok]
        summary[qtype] = row
        all_attempts += negatives(maker, maker.attempts, rng)
        valid_items += [a.item for a in maker.attempts if a.ok and a.item is not None]
    print(f"\nglossary model calls (MCQ keys and distractors): {svc.glossary.calls}")
    print("\n| type | topics | generated | valid | pass rate | s / valid question |")
    print("|---|---|---|---|---|---|")
    for qtype, r in summary.items():
        print(f"| {qtype} | {r['topics']} | {r['generated']} | {r['valid']} | {r['pass_rate']} | {r['s_per_valid']} |")
    for qtype, r in summary.items():
        for reason in r["reasons"]:
            print(f"dropped {qtype}: {reason}")
        for err in r["errors"]:
            print(f"error {qtype}: {err}")
    if args.read:
        Path(args.read).write_text(reading_sheet(valid_items), encoding="utf-8")
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as fh:
            for a in all_attempts:
                fh.write(json.dumps(a, ensure_ascii=False) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
