"""Hybrid retrieval, the gold-set targets, the CLI's JSON, and Chroma's server mode, on real components."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from evals.gold import load_gold
from evals.retrieval import evaluate_retrieval
from ingest.pipeline import ingest_corpus
from rag.backends.store import Index
from rag.errors import IndexStateError, QueryError
from rag.retrieval import HybridRetriever, as_langchain, rrf
from rag.settings import Settings
from rag.text import tokenize
from tests.helpers import free_port
from ui import cli

ROOT = Path(__file__).resolve().parent.parent


def test_rrf_and_tokenize() -> None:
    fused = rrf([(["a", "b", "c"], 1.0), (["c", "a"], 1.0)], k=10)
    assert max(fused, key=lambda i: fused[i]) == "a"
    assert fused["c"] > fused["b"]
    assert tokenize("What is Regularization of the models?") == ["regular", "model"]


def test_gold_set_targets(corpus_service) -> None:
    items = load_gold()
    assert sum(i.answerable for i in items) >= 40 and sum(not i.answerable for i in items) >= 10
    assert len({i.source for i in items if i.answerable}) == 5
    result = evaluate_retrieval(corpus_service.retriever, items)
    hybrid = result["modes"]["hybrid"]
    assert hybrid["hit@5"] >= 0.92, result["modes"]
    assert hybrid["mrr@5"] >= 0.75, result["modes"]
    assert hybrid["context_chars@5"] < 4000
    assert hybrid["mrr@5"] >= max(result["modes"]["dense"]["mrr@5"], result["modes"]["bm25"]["mrr@5"])


def test_passages_carry_metadata_and_langchain_retriever(corpus_service) -> None:
    passages = corpus_service.retrieve("How do I deal with a dataset where one class is very rare?", 5)
    assert len(passages) == 5
    assert passages[0].score >= passages[-1].score
    top = passages[0].chunk
    assert top.source.endswith((".md", ".txt")) and top.title and top.section
    docs = as_langchain(corpus_service.retriever, k=3).invoke("What does dropout do?")
    assert len(docs) == 3 and docs[0].metadata["id"] and docs[0].metadata["section"]


def test_empty_and_huge_questions(corpus_service) -> None:
    with pytest.raises(QueryError, match="empty"):
        corpus_service.retrieve("   ")
    with pytest.raises(QueryError, match="characters"):
        corpus_service.retrieve("why " * 5000)


def test_empty_index_is_a_clear_error(tmp_path: Path, embedder) -> None:
    r = HybridRetriever(Index(Settings(storage={"home": tmp_path / "empty"}), embedder))
    with pytest.raises(IndexStateError, match="studybot ingest"):
        r.retrieve("what is bagging?", Settings().retrieval.top_k)


def test_cli_retrieve_json(corpus_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["retrieve", "Why would a model do great on training data but poorly on new data?",
                     "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 3
    assert set(out[0]) == {"id", "text", "source", "title", "section", "page", "score"}


def test_cli_retrieve_batch_stdin(corpus_settings: Settings, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("what is PCA?\n\nwhat is an LSTM?\n"))
    assert cli.main(["retrieve", "-k", "2", "--json"]) == 1  # the empty line is an error, the rest answered
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    first, empty, third = (json.loads(x) for x in lines)
    assert len(first) == 2 and len(third) == 2
    assert "empty" in empty["error"]


def test_cli_errors_are_one_sentence(tmp_path: Path, capsys) -> None:
    assert cli.main(["retrieve", "", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert cli.main(["retrieve", "what is bagging?"]) == 2  # nothing ingested in this home
    assert "studybot ingest" in capsys.readouterr().err


def test_cli_ingest_reports_failures(tmp_path: Path, capsys) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\n## Trees\n\nDecision trees split on impurity.\n")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    (docs / "empty.txt").write_text("")
    assert cli.main(["ingest", str(docs), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["added"] == ["good.md"] and set(out["failed"]) == {"bad.pdf", "empty.txt"}


def test_chroma_server_mode(tmp_path: Path, embedder) -> None:
    chroma = shutil.which("chroma") or str(Path(__import__("sys").executable).parent / "chroma")
    port = free_port()
    proc = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        settings = Settings(storage={"home": tmp_path / "home"}, chroma={"host": "127.0.0.1", "port": port})
        index = Index(settings, embedder)
        deadline = time.time() + 60
        while True:
            try:
                index.client.heartbeat()
                break
            except Exception:
                if time.time() > deadline:
                    raise
                index._client = None
                time.sleep(0.5)
        docs = tmp_path / "docs"
        docs.mkdir()
        shutil.copy(ROOT / "corpus" / "ml-overview-notes.txt", docs)
        summary = ingest_corpus(index, docs)
        assert summary.ok and summary.chunks_total > 10
        assert index.where.startswith("chroma://127.0.0.1")
        top = HybridRetriever(index).retrieve("How do random forests combine trees?", 3)
        assert any("Bagging" in p.chunk.text or "forest" in p.chunk.text.lower() for p in top)
        assert not (tmp_path / "home" / "index" / "chroma").exists()  # no vectors stored locally
        # the keyword index: written by the ingesting machine, built once from the server on another one
        assert (tmp_path / "home" / "index" / "keyword" / summary.collection / "done.json").is_file()
        other = Index(Settings(storage={"home": tmp_path / "other"}, chroma={"host": "127.0.0.1", "port": port}),
                      embedder)
        again = HybridRetriever(other).retrieve("How do random forests combine trees?", 3)
        assert [p.chunk.id for p in again] == [p.chunk.id for p in top]
        assert (tmp_path / "other" / "index" / "keyword" / summary.collection / "done.json").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_vocabulary_holds_the_handbooks_words_and_follows_a_new_ingest(corpus_settings: Settings, embedder,
                                                                         tmp_path: Path) -> None:
    from ui.service import StudyService

    svc = StudyService(corpus_settings, embedder=embedder)
    vocab = svc.retriever.vocabulary()
    assert vocab.mentions("dropout") and vocab.mentions("XGBoost") and vocab.mentions("k-means")
    assert not vocab.mentions("Mahalanobis") and not vocab.mentions("Zorblax")
    assert svc.retriever.vocabulary() is vocab  # built once per index version
    doc = tmp_path / "zorblax.md"
    doc.write_text("# Notes\n\n## Zorblax\n\nThe Zorblax estimator averages bootstrap medians.\n", encoding="utf-8")
    assert [r.ok for r in svc.add_documents([doc])] == [True]
    svc.retriever.refresh()
    assert svc.retriever.vocabulary().mentions("Zorblax")
