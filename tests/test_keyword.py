"""The persisted keyword index (rag/backends/keyword.py): BM25 as before, written beside each index version and
switched with it, loaded without rebuilding, rebuilt only when missing or broken."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ingest.pipeline import ingest_corpus
from rag.backends import keyword
from rag.backends.keyword import KeywordIndex, folder_for
from rag.backends.store import Index
from rag.retrieval import HybridRetriever
from rag.settings import Settings
from rag.text import tokenize
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "L1 regularization drives some weights to exactly zero, a sparse model.",
    "L2 regularization shrinks every weight toward zero without making it zero.",
    "Dropout randomly zeroes neurons during training so they cannot co-adapt.",
    "Gradient descent updates the weights against the gradient of the loss.",
    "Random forests average many decorrelated trees trained on bootstrap samples.",
    "Boosting fits each new tree to the residual errors of the ensemble so far.",
    "Precision is the share of predicted positives that are truly positive.",
]
IDS = [f"c{i}" for i in range(len(TEXTS))]


def test_scores_rank_the_matching_chunk_first_and_idf_is_the_previous_engines(tmp_path: Path) -> None:
    from rank_bm25 import BM25Okapi

    new = KeywordIndex.build(IDS, TEXTS)
    old = BM25Okapi([tokenize(t) for t in TEXTS])
    for term in ("zero", "dropout", "tree", "weight", "regularization"):  # evidence weights stay as tuned
        token = tokenize(term)[0]
        assert new.idf(token) == pytest.approx(old.idf[token])
    assert new.idf("zorblax") == 0.0
    for query, best in (("which trees are averaged in random forests", "c4"), ("dropout neurons", "c2"),
                        ("share of positives", "c6"), ("residual errors of boosting", "c5")):
        top = new.top(tokenize(query), 3)
        assert top[0] == best and len(top) == len(set(top))
        scores = old.get_scores(tokenize(query))
        assert IDS[int(scores.argmax())] == best  # the previous engine agrees on the best chunk
    assert new.top(tokenize("zorblax"), 3) == [] and new.top([], 3) == []
    assert set(new.top(tokenize("weights"), 10)) == {"c0", "c1", "c3"}  # only chunks that hold a term score


def test_saved_index_loads_memory_mapped_and_a_half_written_one_does_not(tmp_path: Path) -> None:
    folder = folder_for(tmp_path, "handbooks__v1-abc")
    KeywordIndex.build(IDS, TEXTS).save(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["handbooks__v1-abc"]  # no temporary left
    loaded = KeywordIndex.load(folder)
    assert loaded is not None and len(loaded) == len(TEXTS)
    assert loaded.top(tokenize("bootstrap samples"), 1) == ["c4"]
    assert loaded.vocabulary.mentions("Dropout") and not loaded.vocabulary.mentions("Zorblax")
    (folder / "done.json").unlink()  # a write killed before its last file
    assert KeywordIndex.load(folder) is None
    (folder / "done.json").write_text("{}")
    (folder / "ids.json").write_text(json.dumps(["only-one"]))  # ids and matrix disagree
    assert KeywordIndex.load(folder) is None
    assert KeywordIndex.load(tmp_path / "nowhere") is None


def _index(home: Path) -> Index:
    return Index(Settings(storage={"home": home}), HashEmbedder())


def _keyword_dirs(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "index" / keyword.FOLDER).iterdir())


def test_ingest_writes_the_keyword_index_with_its_version_and_retrieval_never_rebuilds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / "ml-overview-notes.txt", corpus)
    home = tmp_path / "home"
    index = _index(home)
    first = ingest_corpus(index, corpus)
    assert _keyword_dirs(home) == [first.collection]

    def no_rebuild(*_: object) -> None:
        raise AssertionError("the keyword index was rebuilt")

    monkeypatch.setattr("rag.retrieval.build_keyword", no_rebuild)  # the ingest's and the retriever's builds
    retriever = HybridRetriever(_index(home))  # a new process's view
    top = retriever.retrieve("How do random forests combine trees?", 3, mode="bm25")
    assert top and any("forest" in p.chunk.text.lower() for p in top)
    assert retriever._chunks is None  # retrieval read only the passages it returns
    assert ingest_corpus(index, corpus).chunks_embedded == 0  # unchanged: nothing rebuilt
    monkeypatch.undo()

    (corpus / "extra.md").write_text("# Extra\n\n## Zorblax\n\nZorblax is a made-up regularizer for tests.\n")
    second = ingest_corpus(index, corpus)
    assert second.collection != first.collection and _keyword_dirs(home) == [second.collection]
    retriever.refresh()  # follows the switch
    assert retriever.retrieve("What is Zorblax?", 1, mode="bm25")[0].chunk.source == "extra.md"
    assert retriever.vocabulary().mentions("Zorblax")


def test_a_missing_or_broken_keyword_index_is_rebuilt_once_from_the_collection(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / "ml-overview-notes.txt", corpus)
    home = tmp_path / "home"
    summary = ingest_corpus(_index(home), corpus)
    folder = folder_for(home / "index", summary.collection)
    (folder / "indptr.csc.index.npy").write_bytes(b"garbage")
    top = HybridRetriever(_index(home)).retrieve("How do random forests combine trees?", 3, mode="bm25")
    assert top and KeywordIndex.load(folder) is not None  # rebuilt and saved in place
    shutil.rmtree(folder)
    assert HybridRetriever(_index(home)).retrieve("bagging", 1, mode="bm25")
    assert KeywordIndex.load(folder) is not None
