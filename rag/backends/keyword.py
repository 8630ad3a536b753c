"""The keyword (BM25) index of one collection version, persisted with bm25s.

``KeywordIndex.build(ids, texts)`` tokenizes with :func:`rag.text.tokenize` (the gold-set tokenizer)
and scores with bm25s's sparse matrix (one column per term, so a query costs only its terms' postings, not
one pass over every document as rank_bm25 did). :meth:`KeywordIndex.save` writes the index into
``<index_dir>/keyword/<collection name>/`` by building it in a temporary folder and renaming it into place,
so a killed write leaves no half index; the ingest writes it before it switches the manifest to the new
collection, and drops the folders of collections it drops. :meth:`KeywordIndex.load` memory-maps the
arrays, so start-up reads no chunk text. Alongside: the chunk ids in document order and the vocabulary (every
word of the chunks' text, titles and section paths) for the named-term check.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rag.terms import Vocabulary, words_of
from rag.text import tokenize

FOLDER = "keyword"
_IDS = "ids.json"
_WORDS = "words.txt"
_DONE = "done.json"  # written last: a folder without it is not an index
# k1 1.5, b 0.75: rank_bm25's defaults, with which the retrieval baseline (evals/baseline.json) was set.
# "lucene" idf (log(1 + (N - df + 0.5) / (df + 0.5)), never negative): hybrid hit@5 / MRR@5 on the gold set
# 0.9375 / 0.803, vs 0.925 / 0.794 for "robertson" (Okapi, negative idf clipped at 0), same run.
K1, B = 1.5, 0.75
METHOD = "lucene"
# BM25Okapi floors a negative idf (a term in more than half the chunks) at 0.25 x the mean idf: kept, so the
# evidence scorer's weights (rag/answer/rank.py) stay as they were tuned.
_EPSILON = 0.25


class KeywordIndex:
    """BM25 over the chunks of one collection: ``top(tokens, n)``, ``idf(token)``, ``vocabulary``."""

    def __init__(self, bm25: Any, ids: list[str], words: set[str]) -> None:
        self._bm25 = bm25
        self.ids = ids
        self._words = words
        self._idf: dict[str, float] | None = None
        self.vocabulary = Vocabulary.from_words(words)

    @classmethod
    def empty(cls) -> KeywordIndex:
        """An index of no chunks (what a retriever holds before it first opens the index)."""
        return cls(None, [], set())

    def __len__(self) -> int:
        return len(self.ids)

    # -- build / persist -------------------------------------------------------------------------
    @classmethod
    def build(cls, ids: Sequence[str], texts: Iterable[str], vocab_texts: Iterable[str] = ()) -> KeywordIndex:
        """``texts[i]`` is what chunk ``ids[i]`` is found by (its embed text); ``vocab_texts`` feed the
        vocabulary (default: ``texts``)."""
        import bm25s

        texts = list(texts)
        if not texts:
            return cls.empty()
        corpus = [tokenize(t) for t in texts]
        bm25 = bm25s.BM25(k1=K1, b=B, method=METHOD)
        bm25.index(corpus, show_progress=False)
        words: set[str] = set()
        for t in list(vocab_texts) or texts:
            words |= words_of(t)
        return cls(bm25, list(ids), words)

    def save(self, folder: Path) -> None:
        """Write the index to ``folder`` atomically (a temporary sibling renamed into place)."""
        if self._bm25 is None:
            raise ValueError("an empty keyword index is not saved")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
        try:
            self._bm25.save(str(tmp), show_progress=False)
            (tmp / _IDS).write_text(json.dumps(self.ids), encoding="utf-8")
            (tmp / _WORDS).write_text("\n".join(sorted(self._words)), encoding="utf-8")
            (tmp / _DONE).write_text(json.dumps({"chunks": len(self.ids)}), encoding="utf-8")
            if folder.exists():  # another process wrote the same version first: its copy is as good
                shutil.rmtree(tmp, ignore_errors=True)
                return
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex | None:
        """The index saved in ``folder`` (memory-mapped), or None when it is missing or unreadable."""
        if not (folder / _DONE).is_file():
            return None
        try:
            import bm25s

            bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
            ids = json.loads((folder / _IDS).read_text(encoding="utf-8"))
            words = set((folder / _WORDS).read_text(encoding="utf-8").split("\n"))
        except (OSError, ValueError, KeyError):
            return None
        if not isinstance(ids, list) or len(ids) != int(bm25.scores["num_docs"]):
            return None
        return cls(bm25, [str(i) for i in ids], words)

    # -- queries ---------------------------------------------------------------------------------
    def top(self, tokens: Sequence[str], n: int) -> list[str]:
        """The ids of the ``n`` best-scoring chunks for a tokenized query (only chunks that score > 0)."""
        import numpy as np

        if self._bm25 is None:
            return []
        token_ids = self._bm25.get_tokens_ids(list(tokens))
        if not token_ids:
            return []
        scores = self._bm25.get_scores_from_ids(token_ids)
        n = min(n, len(scores))
        part = np.argpartition(-scores, n - 1)[:n]
        order = part[np.argsort(-scores[part], kind="stable")]
        return [self.ids[i] for i in order if scores[i] > 0]

    def idf(self, token: str) -> float:
        """BM25Okapi's idf of a tokenized term (0.0 for one no chunk has)."""
        if self._idf is None:
            self._idf = self._okapi_idf()
        return self._idf.get(token, 0.0)

    def _okapi_idf(self) -> dict[str, float]:
        import numpy as np

        if self._bm25 is None:
            return {}
        n_docs = len(self.ids)
        df = np.diff(np.asarray(self._bm25.scores["indptr"]))
        raw = {t: math.log(n_docs - int(df[i]) + 0.5) - math.log(int(df[i]) + 0.5)
               for t, i in self._bm25.vocab_dict.items() if t and i < len(df) and df[i] > 0}
        floor = _EPSILON * (sum(raw.values()) / len(raw)) if raw else 0.0
        return {t: (v if v >= 0 else floor) for t, v in raw.items()}


def folder_for(index_dir: Path, collection: str) -> Path:
    """Where the keyword index of a collection version lives (local and Chroma-server mode alike)."""
    return index_dir / FOLDER / collection


def drop_orphans(index_dir: Path, keep: str | None) -> list[str]:
    """Remove the keyword indexes (and killed writes) of every collection but ``keep``."""
    root = index_dir / FOLDER
    dropped = []
    for path in root.iterdir() if root.is_dir() else []:
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)
            dropped.append(path.name)
    return dropped
