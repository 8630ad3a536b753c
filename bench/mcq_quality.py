"""How tempting glossary MCQs are (rag/quiz/mcq.py): the tells a student can answer by, measured on the real
index, without the model by default.

    .venv/bin/python -m bench.mcq_quality                       # distractor choice only: no model (~1 min)
    .venv/bin/python -m bench.mcq_quality --model --n 3 \\
        --topics "gradient descent,regularization,loss functions,ensemble methods" --items bench/out/mcq_items.jsonl

Without ``--model`` every glossary entry known without a model call is tried as a key: the "Term: definition"
lines the handbooks state (every chunk) and the model's glossaries cached by an earlier ``--model`` run
(``--cache``, raw replies per chunk id, parsed again by the current code); the distractors are chosen from the
pool :class:`rag.quiz.generation.QuizMaker` would read (the key passage's other entries, the entries of the
related passages it retrieves) by :func:`rag.quiz.mcq.choose_distractors`, and the item assembled by
:func:`rag.quiz.mcq.assemble`; the model's matching check is not run. With ``--model`` the real quiz maker
makes ``--n`` MCQs per topic (matching check and validation included) and the same figures are printed for
them; the glossary replies it got are added to the cache, and the items written to ``--items`` for a blind read
(every valid item, in the order made: none is left out by hand).

Figures (per item made):

* key longest: the key is strictly the longest of the four options (by characters; a blind reader's "the
  longest option" tell; 25% by chance);
* length ratio: the key's length over the mean length of the three distractors;
* >=2 same section / same list: at least two distractors from the key's own section (chunk section path), or
  from the key's own list (the same passage and list introduction) or passage;
* >=2 same head: at least two distractors whose term shares its head word (its last word: "loss" for
  "Huber Loss") or its definition's head (the first word: "Error" for "Error from ...") with the key's;
* term cos: the mean cosine of the key term's embedding and the distractor terms' (kind, as MiniLM sees it);
* wording tell: the key repeats a word of the asked term and no distractor does;
* aside: an option holds an "(e.g., ...)" aside or an "e.g." / "i.e." / "such as" example;
* use-fragment key: the key says what the term is for ("Critical for backpropagation", "Used to ...").
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from rag.quiz import (
    QuizError,
    QuizItem,
    QuizMaker,
    QuizSession,
    mcq,
    quizzable,
)
from rag.quiz.glossary import GlossaryEntry, words_of
from rag.quiz.mcq import DISTRACTORS, LETTERS
from rag.quiz.text import cos, normalize
from rag.settings import Settings, apply_offline_env
from rag.types import Chunk
from ui.service import StudyService

OUT = Path(__file__).resolve().parent / "out"
RELATED_PASSAGES = 6  # as rag.quiz.generation.RELATED_PASSAGES
_ASIDE = re.compile(r"\((?:e\.g\.|i\.e\.|eg\b|ie\b|such as|like)|\be\.g\.|\bi\.e\.|\bsuch as\b", re.I)
# A key that says what the term is used for or how important it is, not what it is (this bench's own reading,
# independent of any filter in rag/quiz).
_USE_FRAGMENT = re.compile(
    r"^(?:critical|crucial|essential|important|key|vital|useful|necessary|needed|required|helpful|ideal|"
    r"great|good|best|popular|common(?:ly)?|widely|often|used|helps?|useful)\b", re.I)


# Candidate distractors of the handbooks' stated keys, as they come out of the pool a quiz reads (the key
# passage's entries and its related passages', the trust rejections passed), read by hand: the ones of the same
# kind as the key (another optimizer for an optimizer, a plausible wrong answer), and the others. --kinds
# scores each ranking signal of rag.quiz.mcq.kinship on them (AUC: the chance a same-kind candidate outranks
# another one).
KIND_LABELS: dict[str, tuple[list[str], list[str]]] = {
    "Adam Optimizer": (["Stochastic GD (SGD)", "Hyperparameter Tuning"],
                       ["Lagrange Multipliers", "Convex Optimization", "Regularization"]),
    "Sigmoid": ([], ["Output Layer", "Perceptron", "Hidden Layers", "Input Layer"]),
    "One-Hot Encoding": (["Entity embeddings", "Grouping", "Scaling", "Datetime features"],
                         ["Data Augmentation", "Wrapper methods", "Filter methods", "Embedded", "Images", "Text"]),
    "F1-score": (["Accuracy", "Confusion Matrix"], ["Medical Diagnosis", "Weather Forecasting", "Spam Filter"]),
    "Quantization": (["Distillation", "Model distillation", "Caching", "Hardware"],
                     ["Prompting", "Parameter sharing", "Local connectivity", "Fine-tuning", "Translation invariance",
                      "Mobile Apps"]),
    "Skip-gram": (["GPT", "BERT"], ["Retriever", "Generator", "Captures semantic relationships"]),
    "BERT": (["CBOW", "Skip-gram"], ["Gating Mechanisms", "Captures semantic relationships"]),
    "Generator (G)": (["Autoregressive models"], ["Data Augmentation", "Art Generation", "Evaluation Challenges",
                                                  "Computational Resources"]),
    "Pearson": (["Spearman"], ["Vectors & Matrices", "Reverse causality", "NLP", "Image Processing",
                               "Eigenvalues/Eigenvectors"]),
    "KNN Imputation": (["Mean/Median/Mode", "Scaling", "Encoding categorical"],
                       ["Wrapper methods", "Filter methods", "Embedded", "Images"]),
    "Peeking": (["Multiple comparisons", "Simpson's Paradox", "Type I (False Positive)", "Type II (False Negative)"],
                ["Bias", "Variance", "Check data quality", "Ensemble methods"]),
    "Bagging": (["Feature randomness"], ["L2 (Ridge)"]),
    "Cross-Entropy Loss": (["Mean Squared Error (MSE)", "Huber Loss"], []),
}


def head_word(term: str) -> str:
    words = sorted(words_of(re.sub(r"\(.*?\)", " ", term).split()[-1] if term.split() else ""))
    return words[-1] if words else ""


def definition_head(definition: str) -> str:
    first = re.findall(r"[A-Za-z]+", definition)
    return first[0].lower() if first else ""


def figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The summary of per-item rows (see :func:`row_of`)."""
    n = len(rows)
    if not n:
        return {"items": 0}

    def share(key: str) -> float:
        return round(sum(1 for r in rows if r[key]) / n, 2)

    return {
        "items": n,
        "key longest": share("key_longest"),
        "length ratio key/distractors (mean)": round(statistics.mean(r["ratio"] for r in rows), 2),
        ">=2 same section": share("same_section2"),
        ">=2 same list or passage": share("same_list2"),
        ">=2 same head word": share("same_head2"),
        "term cos key/distractors (mean)": round(statistics.mean(r["term_cos"] for r in rows), 3),
        "wording tell": share("wording_tell"),
        "option with an aside": share("aside"),
        "use-fragment key": share("use_key"),
    }


def row_of(key: GlossaryEntry, distractors: Sequence[GlossaryEntry], item: QuizItem,
           term_vec: dict[str, list[float]]) -> dict[str, Any]:
    """The figures of one item (``item``: as assembled, its options the texts a student sees)."""
    others = [o for o in item.options if o != item.answer]
    key_len = len(item.answer)
    same_section = sum(1 for d in distractors if d.chunk.section == key.chunk.section)
    same_list = sum(1 for d in distractors if d.chunk.id == key.chunk.id
                    or (d.context and d.context == key.context and d.chunk.section == key.chunk.section))
    heads = {head_word(key.term)} - {""}
    dheads = {definition_head(key.definition)} - {""}
    same_head = sum(1 for d in distractors if head_word(d.term) in heads or definition_head(d.definition) in dheads)
    term_words = words_of(re.sub(r"\(.*?\)", " ", key.term))
    key_repeats = bool(term_words & words_of(item.answer))
    return {
        "key_longest": key_len > max(len(o) for o in others),
        "ratio": key_len / statistics.mean(len(o) for o in others),
        "same_section2": same_section >= 2,
        "same_list2": same_list >= 2,
        "same_head2": same_head >= 2,
        "term_cos": statistics.mean(cos(term_vec[key.term], term_vec[d.term]) for d in distractors),
        "wording_tell": key_repeats and not any(term_words & words_of(o) for o in others),
        "aside": any(_ASIDE.search(o) for o in item.options),
        "use_key": bool(_USE_FRAGMENT.match(item.answer)),
    }


def entry_of(option: str, known: Sequence[GlossaryEntry]) -> GlossaryEntry | None:
    """The entry whose definition an option is (or was cut from: rag.quiz.mcq.fit_length)."""
    n = normalize(option)
    return next((e for e in known if normalize(e.definition) == n), None) or next(
        (e for e in known if normalize(e.definition).startswith(n)), None)


def print_table(title: str, figs: dict[str, Any]) -> None:
    print(f"\n{title}")
    for k, v in figs.items():
        print(f"  {k:38} {v}")


class CachingEmbedder:
    """The embedder with its vectors kept per text, and :meth:`prime` to embed many texts in one batch (on a
    shared 2-core machine one call for one text took 0.35 s; the retrieval queries of 300 keys, batched, a few
    seconds)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.vectors: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prime(self, texts: Sequence[str]) -> None:
        todo = sorted({t for t in texts if t not in self.vectors})
        for t, v in zip(todo, self.inner.embed(todo), strict=True):
            self.vectors[t] = v

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.prime(texts)
        return [self.vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


def load_cache(path: Path) -> dict[str, str]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class Code:
    """The MCQ code measured: this tree's rag.quiz.glossary and rag.quiz.mcq, or a git revision's (--baseline:
    the two files loaded from ``git show REV:...`` as modules of their own; the rest of rag is this tree's)."""

    def __init__(self, rev: str | None = None) -> None:
        self.rev = rev
        if rev is None:
            from rag.quiz import glossary as g

            self.glossary, self.mcq = g, mcq
            return
        root = Path(__file__).resolve().parent.parent
        mods: dict[str, ModuleType] = {}
        for name in ("glossary", "mcq"):
            src = subprocess.check_output(["git", "show", f"{rev}:rag/quiz/{name}.py"], cwd=root, text=True)
            src = src.replace("from rag.quiz.glossary import", "from _baseline_glossary import")
            module = ModuleType(f"_baseline_{name}")
            module.__file__ = f"{rev}:rag/quiz/{name}.py"
            sys.modules[module.__name__] = module
            exec(compile(src, module.__file__, "exec"), module.__dict__)
            mods[name] = module
        self.glossary, self.mcq = mods["glossary"], mods["mcq"]


def record_glossaries(glossary: Any, cache: dict[str, str], path: Path) -> None:
    """Keep the glossary replies the model writes, per chunk id, in ``path`` as they come (for later offline
    runs; a run cut short keeps what it got)."""
    original = glossary.entries

    def entries(chunk: Chunk, temperature: float = 0.0) -> Any:
        got = original(chunk, temperature)
        if got[1]:
            cache[chunk.id] = got[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache, indent=0, ensure_ascii=False), encoding="utf-8")
        return got

    glossary.entries = entries


class Entries:
    """The glossary entries known without the model (stated ones of every chunk, cached model glossaries parsed
    again), with their vectors, and the pool of candidate distractors a quiz would read for a key."""

    def __init__(self, svc: StudyService, cache: dict[str, str], code: Code) -> None:
        self.svc = svc
        self.code = code
        self.retriever = retriever = svc.retriever
        chunks = retriever.chunks
        self.written: dict[str, list[GlossaryEntry]] = {}
        for cid, raw in cache.items():
            if cid in chunks:
                try:
                    self.written[cid] = code.glossary.parse_entries(raw, chunks[cid], retriever.idf)[0]
                except (ValueError, TypeError):
                    self.written[cid] = []
        self.stated = {c.id: code.glossary.stated_entries(c, retriever.idf) for c in chunks.values()}
        flat = [e for es in [*self.stated.values(), *self.written.values()] for e in es]
        vectors = svc.embedder.embed([e.definition for e in flat] + [e.term for e in flat])
        for e, v, tv in zip(flat, vectors[: len(flat)], vectors[len(flat):], strict=True):
            e.vector, e.term_vector = v, tv
        self.model_keys = [e for es in self.written.values() for e in es]
        self.stated_keys = [e for c in chunks.values() if quizzable(c) for e in self.stated[c.id]]
        svc.embedder.prime([f"{k.term}: {k.definition}"  # type: ignore[attr-defined]
                            for k in self.model_keys + self.stated_keys])

    def known(self, cs: Sequence[Chunk]) -> list[GlossaryEntry]:
        return [e for c in cs for e in [*self.written.get(c.id, []), *self.stated[c.id]]]

    def pool(self, key: GlossaryEntry) -> list[GlossaryEntry]:
        """As rag.quiz.generation.QuizMaker._mcq_for reads it (without asking the model for more glossaries)."""
        related = [p.chunk for p in self.retriever.retrieve(f"{key.term}: {key.definition}", k=RELATED_PASSAGES)
                   if p.chunk.id != key.chunk.id and quizzable(p.chunk)]
        own = self.written.get(key.chunk.id, []) + self.stated[key.chunk.id]
        return [e for e in own if e is not key] + self.known(related)


def offline(known: Entries, show: int = 0) -> None:
    """Every key known without the model, its distractors chosen as a quiz would (no matching check)."""
    import random

    rng = random.Random(0)
    term_vec = {e.term: e.term_vector for e in [*known.model_keys, *known.stated_keys]}
    for label, keys in (("model-written keys (cached glossaries)", known.model_keys),
                        ("stated keys (every chunk)", known.stated_keys)):
        rows: list[dict[str, Any]] = []
        tried_chunks = {k.chunk.id for k in keys}
        made_chunks: set[str] = set()
        t0 = time.perf_counter()
        for key in keys:
            picks, _ = known.code.mcq.choose_distractors(key, known.pool(key))
            if len(picks) < DISTRACTORS:
                continue
            item = known.code.mcq.assemble(key, picks, rng)
            for e in picks:
                term_vec.setdefault(e.term, e.term_vector)
            rows.append(row_of(key, picks, item, term_vec))
            made_chunks.add(key.chunk.id)
            if show and len(rows) % max(1, len(keys) // show) == 0:
                print(f"- {key.term} [{key.chunk.section[-40:]}]: {item.answer}")
                for p, o in zip(picks, [o for o in item.options if o != item.answer], strict=False):
                    print(f"    x {p.term} [{p.chunk.section[-40:]}]: {o}")
        figs = figures(rows)
        figs["keys tried"] = len(keys)
        figs["items per key"] = round(len(rows) / len(keys), 2) if keys else 0
        figs["chunks with an item / chunks tried"] = f"{len(made_chunks)}/{len(tried_chunks)}"
        figs["seconds"] = round(time.perf_counter() - t0, 1)
        print_table(f"distractor choice, no model, {known.code.rev or 'this tree'}: {label}", figs)


def auc(pairs: Sequence[tuple[float, float]]) -> float:
    """The share of (same-kind score, other score) pairs ordered right, ties half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs) if pairs else 0.0


def kinds(known: Entries) -> None:
    """How well each ranking signal puts the hand-read same-kind candidates (KIND_LABELS) first."""
    signals: dict[str, Any] = {
        "same list": lambda k, c: float(c.chunk.id == k.chunk.id and bool(c.context) and c.context == k.context),
        "same passage": lambda k, c: float(c.chunk.id == k.chunk.id),
        "same section": lambda k, c: float(c.chunk.section == k.chunk.section),
        "same head word": lambda k, c: float(bool(mcq.head_word(k.term)) and mcq.head_word(k.term) == mcq.head_word(c.term)),
        "term cosine": lambda k, c: cos(k.term_vector, c.term_vector),
        "definition cosine": lambda k, c: cos(k.vector, c.vector),
        "kinship (the ranking)": mcq.kinship,
    }
    pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in signals}
    missing: list[str] = []
    for term, (same, other) in KIND_LABELS.items():
        key = next((e for e in known.stated_keys if e.term == term), None)
        if key is None:
            missing.append(term)
            continue
        pool = {e.term: e for e in known.pool(key)}
        same_e = [pool[t] for t in same if t in pool]
        other_e = [pool[t] for t in other if t in pool]
        missing += [f"{term} / {t}" for t in same + other if t not in pool]
        for name, f in signals.items():
            pairs[name] += [(f(key, a), f(key, b)) for a in same_e for b in other_e]
    print(f"\nkind signals on {len(KIND_LABELS)} hand-read keys ({len(pairs['term cosine'])} same/other pairs): AUC")
    for name, ps in pairs.items():
        print(f"  {name:38} {auc(ps):.2f}")
    if missing:
        print(f"  (not in the pool now: {'; '.join(missing)})")


def with_model(svc: StudyService, code: Code, topics: list[str], n: int, cache: dict[str, str], cache_path: Path,
               items_path: Path | None, resume: bool = False) -> None:
    """Real quizzes: ``n`` MCQs per topic (matching check and validation included); each item written to
    ``items_path`` as soon as its topic is done."""
    t0 = time.perf_counter()
    svc.warm_up()
    svc.retriever.refresh()
    print(f"model ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    glossary = code.glossary.Glossary(svc.llm, svc.embedder, svc.retriever.idf)
    record_glossaries(glossary, cache, cache_path)
    maker = QuizMaker(svc.llm, svc.embedder, svc.retriever, svc.settings.quiz, glossary=glossary)
    session = QuizSession(0)
    rows: list[dict[str, Any]] = []
    made = 0
    done: set[str] = set()
    if items_path is not None:
        items_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and items_path.exists():  # a run cut short: its topics are not made again
            done = {json.loads(line)["topic"] for line in items_path.read_text(encoding="utf-8").splitlines()}
        else:
            items_path.write_text("", encoding="utf-8")
    t0 = time.perf_counter()
    for topic in topics:
        if topic in done:
            print(f"{topic}: done in an earlier run", file=sys.stderr)
            continue
        start = time.perf_counter()
        try:
            items = maker.make(topic, n, "mcq", session=session).items
        except QuizError as exc:
            print(f"{topic}: {exc}", file=sys.stderr)
            items = []
        made += len(items)
        known = glossary.known(list(svc.retriever.chunks.values()))
        for item in items:
            record = {"topic": topic, "question": item.question,
                      "options": {LETTERS[i]: o for i, o in enumerate(item.options)},
                      "key": LETTERS[item.options.index(item.answer)],
                      "source": item.citation.source, "section": item.citation.section}
            if items_path is not None:
                with items_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            term = item.question.removeprefix("Which of these best describes ").removesuffix("?")
            key = next((e for e in known if e.term == term and e.chunk.id == item.citation.chunk_id), None)
            ds = [entry_of(o, known) for o in item.options if o != item.answer]
            entries = [d for d in ds if d is not None]
            if key is None or len(entries) != len(ds):
                print(f"  (an option of {item.question!r} is no known definition)", file=sys.stderr)
                continue
            terms = [key.term, *(d.term for d in entries)]
            term_vec = dict(zip(terms, svc.embedder.embed(terms), strict=True))
            rows.append(row_of(key, entries, item, term_vec))
        print(f"{topic:24} {len(items)} items {time.perf_counter() - start:6.1f} s", file=sys.stderr)
    seconds = time.perf_counter() - t0
    figs = figures(rows)
    attempts = len(maker.attempts)
    figs["items made / asked"] = f"{made}/{len(topics) * n}"
    figs["attempts (key terms tried)"] = attempts
    figs["items per attempt"] = round(made / attempts, 2) if attempts else 0
    figs["seconds per item"] = round(seconds / made, 1) if made else None
    figs["glossary model calls"] = glossary.calls
    print_table(f"real quizzes with the model, {code.rev or 'this tree'} ({len(topics)} topics x {n})", figs)
    for a in maker.attempts:
        if not a.ok:
            print(f"  dropped: {a.reason[:150]}")
    if items_path is not None:
        print(f"wrote {made} items to {items_path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="store_true", help="also make real quizzes with the model")
    p.add_argument("--topics", default="gradient descent,regularization,loss functions,ensemble methods")
    p.add_argument("--n", type=int, default=3, help="MCQs per topic (with --model)")
    p.add_argument("--cache", default=str(OUT / "glossary_cache.json"), help="glossary replies per chunk id")
    p.add_argument("--items", help="write the items made with --model here (JSONL)")
    p.add_argument("--show", type=int, default=0, help="print about this many items made without the model")
    p.add_argument("--kinds", action="store_true", help="score the ranking signals on the hand-read kinds")
    p.add_argument("--baseline", help="a git revision: its rag/quiz/glossary.py and mcq.py's figures without the"
                   " model, printed before this tree's (not with --model: quizzes use this tree's code)")
    p.add_argument("--resume", action="store_true", help="with --model: keep --items and skip its topics")
    p.add_argument("--no-offline", action="store_true", help="skip the figures without the model")
    args = p.parse_args()
    if args.model and args.baseline:
        p.error("--baseline measures a revision without the model; run --model on a checkout of that revision")
    apply_offline_env()
    settings = Settings()
    from rag.backends.embeddings import shared_embedder

    embedder = CachingEmbedder(shared_embedder(settings))
    svc = StudyService(settings, embedder=embedder)  # type: ignore[arg-type]
    cache_path = Path(args.cache)
    cache = load_cache(cache_path)
    codes = [Code(args.baseline), Code()] if args.baseline else [Code()]
    if args.model:
        with_model(svc, codes[0], [t.strip() for t in args.topics.split(",") if t.strip()], args.n, cache,
                   cache_path, Path(args.items) if args.items else None, args.resume)
    for code in codes:
        if not args.no_offline or args.kinds:
            known = Entries(svc, cache, code)
            if args.kinds and code.rev is None:
                kinds(known)
            if not args.no_offline:
                offline(known, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
