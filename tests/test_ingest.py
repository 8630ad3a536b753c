"""Ingest on real components: loaders (incl. PDFs made here), chunking, incremental index, kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.chunking import chunk_document, parse_markdown, windows
from ingest.loaders import load_file
from ingest.pipeline import ingest_corpus, ingest_paths, remove_sources
from rag.backends.store import Index
from rag.errors import IngestError
from rag.retrieval import HybridRetriever
from rag.settings import IngestSettings, Settings
from tests.fakes import HashEmbedder

CHUNKING = (IngestSettings().chunk_size, IngestSettings().chunk_min)  # the settings' chunk size and minimum

ROOT = Path(__file__).resolve().parent.parent


def make_pdf(path: Path, pages: list[str], password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    if password:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(str(path)))
        writer.encrypt(password)
        with path.open("wb") as fh:
            writer.write(fh)
    return path


# --- loaders --------------------------------------------------------------------------------------
def test_pdf_pages_are_kept(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "notes.pdf", ["Gradient clipping caps the norm of gradients.",
                                            "Label smoothing softens one-hot targets."])
    doc = load_file(pdf)
    assert [p.number for p in doc.pages] == [1, 2]
    chunks = chunk_document(doc, *CHUNKING)
    assert {c.page for c in chunks} == {1, 2}
    assert any("Label smoothing" in c.text and c.page == 2 for c in chunks)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("blank.txt", b"   \n\n", "empty"),
        ("binary.txt", bytes(range(256)) * 8, "binary"),
        ("latin1.md", "caf\xe9 na\xefve r\xe9sum\xe9 " .encode("latin-1") * 5, "UTF-8"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj<<>>garbage", "corrupt"),
        ("fake.pdf", b"this is not a pdf at all", "not a PDF"),
        ("slides.pptx", b"PK\x03\x04whatever", "unsupported"),
    ],
)
def test_bad_files_get_one_line_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(IngestError) as err:
        load_file(path)
    msg = str(err.value)
    assert reason.lower() in msg.lower() and name in msg and "\n" not in msg


def test_encrypted_pdf(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "locked.pdf", ["secret"], password="hunter2")
    with pytest.raises(IngestError, match="encrypted"):
        load_file(pdf)


# --- chunking -------------------------------------------------------------------------------------
def test_markdown_sections_code_and_qa(tmp_path: Path) -> None:
    md = tmp_path / "h.md"
    md.write_text(
        "# Handbook\n\n## Section 5 — Feature Engineering\n\n### Handling Imbalanced Data\n\n"
        "Use SMOTE or class weights when one class is rare.\n\n"
        "```python\n# 1. Not a heading\nx = 1\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "## Quick Q&A\n\n**Q1: What is the Central Limit Theorem?**\nSample means tend to a normal distribution.\n\n"
        "**Q2: Explain p-value.**\nProbability of data at least as extreme under the null.\n",
        encoding="utf-8",
    )
    doc = load_file(md)
    assert doc.title == "Handbook"
    sections = parse_markdown(doc.text)
    paths = [" > ".join(s.path) for s in sections]
    assert "Section 5 — Feature Engineering > Handling Imbalanced Data" in paths
    assert not any("Not a heading" in p for p in paths)  # code fences are not headings
    assert any(p.endswith("Q1: What is the Central Limit Theorem?") for p in paths)
    chunks = chunk_document(doc, size=900, minimum=50)
    imb = next(c for c in chunks if "SMOTE" in c.text)
    assert imb.section == "Section 5 — Feature Engineering > Handling Imbalanced Data"
    assert "```python\n# 1. Not a heading\nx = 1\n```" in imb.text  # code block kept whole
    assert "| a | b |\n|---|---|\n| 1 | 2 |" in imb.text  # table kept whole
    assert imb.embed_text().startswith("Handbook — Section 5 — Feature Engineering > Handling Imbalanced Data")
    assert doc.text[imb.start : imb.end].startswith("Use SMOTE")


def test_plain_text_numbered_headings(corpus_dir: Path) -> None:
    doc = load_file(corpus_dir / "ml-overview-notes.txt")
    chunks = chunk_document(doc, *CHUNKING)
    ens = [c for c in chunks if c.section.endswith("4.5 Ensemble methods")]
    assert ens and "Bagging" in ens[0].text
    assert ens[0].section.startswith("4. Supervised learning algorithms")


def test_corpus_chunks_are_bounded_and_unique(corpus_dir: Path) -> None:
    for path in sorted(corpus_dir.iterdir()):
        chunks = chunk_document(load_file(path), size=900, minimum=250)
        assert chunks, path
        assert max(len(c.text) for c in chunks) <= 1000
        assert len({c.id for c in chunks}) == len(chunks)
        assert all(c.section or c.ordinal == 0 for c in chunks)
        assert all(windows(c) for c in chunks)
    toc = chunk_document(load_file(corpus_dir / "ds-ai-ml-interview-handbook.md"), *CHUNKING)
    assert not any("Table of Contents" in c.section for c in toc)


# --- incremental index ----------------------------------------------------------------------------
def _index(home: Path, embedder) -> Index:
    return Index(Settings(storage={"home": home}), embedder)


def _texts(index: Index) -> list[str]:
    return [c.text for c in index.all_chunks()]


def test_window_spans_locate_each_window_in_its_chunk(corpus_dir: Path) -> None:
    from ingest.chunking import window_spans

    doc = load_file(corpus_dir / "ml-overview-notes.txt", "ml-overview-notes.txt")
    for chunk in chunk_document(doc, 900, 250):
        spans = window_spans(chunk)
        assert [w for w, _, _ in spans] == windows(chunk)
        for text, a, b in spans:
            body = text.removeprefix(f"{chunk.section}: ") if chunk.section else text
            first, last = body.split()[0], body.split()[-1]
            assert chunk.text[a:b].startswith(first) and chunk.text[a:b].endswith(last)


def test_a_chunks_vector_is_its_windows_mean_plus_its_lead(embedder) -> None:
    import numpy as np

    from ingest.pipeline import LEAD_WORDS, chunk_vector, lead_text
    from rag.types import Chunk

    chunk = Chunk(id="c", text=" ".join(["Dropout randomly disables units during training."] * 20), source="a.md",
                  title="Handbook", section="Regularization", page=None, start=0, end=0, content_hash="h", ordinal=0)
    lead = lead_text(chunk)
    assert lead.startswith("Handbook — Regularization Dropout") and len(lead.split()) == LEAD_WORDS
    wins = embedder.embed(["Regularization: Dropout randomly disables units.", "Regularization: during training."])
    (lead_vec,) = embedder.embed([lead])
    vec = np.asarray(chunk_vector(lead_vec, wins))
    mean = np.mean(wins, axis=0)
    expected = mean / np.linalg.norm(mean) + np.asarray(lead_vec)
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-9 and np.allclose(vec, expected / np.linalg.norm(expected))
    # closer to what the chunk says than to another topic
    dropout, other = embedder.embed(["dropout during training", "k-means clustering of customers"])
    assert np.dot(vec, dropout) > np.dot(vec, other)


def test_an_index_made_with_other_chunk_params_is_embedded_again_once(tmp_path: Path, monkeypatch) -> None:
    import ingest.pipeline as pipeline

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / "ml-overview-notes.txt", corpus / "ml-overview-notes.txt")
    index = _index(tmp_path / "home", HashEmbedder())
    current = pipeline.chunk_params
    monkeypatch.setattr(pipeline, "chunk_params", lambda ix: {**current(ix), "schema": 2})  # an older release
    first = ingest_corpus(index, corpus)
    monkeypatch.setattr(pipeline, "chunk_params", current)
    upgraded = ingest_corpus(index, corpus)
    assert upgraded.chunks_embedded == upgraded.chunks_total == first.chunks_total > 0
    assert ingest_corpus(index, corpus).chunks_embedded == 0


def test_the_embedding_step_can_be_swapped_through_the_public_hook(tmp_path: Path) -> None:
    """ingest_paths/ingest_corpus(embed=...): what bench/ingest_variants.py compares engines through."""
    from ingest.pipeline import embed_and_add

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / "ml-overview-notes.txt", corpus / "ml-overview-notes.txt")
    index = _index(tmp_path / "home", HashEmbedder())
    seen: list[int] = []

    def counting(ix: Index, collection: object, chunks: list, progress: object) -> None:
        seen.append(len(chunks))
        embed_and_add(ix, collection, chunks, None)

    summary = ingest_corpus(index, corpus, embed=counting)
    assert seen == [summary.chunks_embedded] and summary.chunks_embedded == summary.chunks_total > 0
    assert HybridRetriever(index).n_chunks == summary.chunks_total
    assert ingest_corpus(index, corpus, embed=counting).chunks_embedded == 0 and len(seen) == 1  # nothing new


def test_incremental_ingest(tmp_path: Path) -> None:
    embedder = HashEmbedder()  # the index's bookkeeping, not what the embedder knows
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("ml-overview-notes.txt", "ml-engineer-interview-report.md"):
        shutil.copy(ROOT / "corpus" / name, corpus / name)
    index = _index(tmp_path / "home", embedder)
    first = ingest_corpus(index, corpus)
    assert sorted(first.added) == ["ml-engineer-interview-report.md", "ml-overview-notes.txt"]
    assert first.chunks_embedded == first.chunks_total > 40

    again = ingest_corpus(index, corpus)
    assert again.chunks_embedded == 0 and not again.changed and len(again.unchanged) == 2

    # change one file: only its changed chunks are embedded, no stale chunk survives
    notes = corpus / "ml-overview-notes.txt"
    notes.write_text(notes.read_text().replace("Dropout", "Zorblax regularisation"), encoding="utf-8")
    changed = ingest_corpus(index, corpus)
    assert changed.updated == ["ml-overview-notes.txt"] and changed.unchanged == ["ml-engineer-interview-report.md"]
    assert 0 < changed.chunks_embedded < first.chunks_total
    texts = _texts(index)
    assert any("Zorblax" in t for t in texts)
    assert not any("\nDropout\n" in t or t.startswith("Dropout") for t in texts if "Zorblax" not in t)
    assert len(index.all_chunks()) == changed.chunks_total

    # a new version of a file that no longer loads keeps the old, good chunks
    report = corpus / "ml-engineer-interview-report.md"
    good = report.read_bytes()
    report.write_bytes(b"\x00\x01binary garbage")
    broken = ingest_corpus(index, corpus)
    assert "ml-engineer-interview-report.md" in broken.failed and not broken.ok
    assert any(c.source == "ml-engineer-interview-report.md" for c in index.all_chunks())
    report.write_bytes(good)

    # removing a file removes its chunks
    notes.unlink()
    removed = ingest_corpus(index, corpus)
    assert removed.removed == ["ml-overview-notes.txt"]
    assert {c.source for c in index.all_chunks()} == {"ml-engineer-interview-report.md"}

    # rebuild starts over and leaves exactly one collection
    rebuilt = ingest_corpus(index, corpus, rebuild=True)
    assert rebuilt.chunks_embedded == rebuilt.chunks_total
    names = [c.name for c in index.client.list_collections()]
    assert sum(n.startswith("handbooks__v") for n in names) == 1
    assert [p.name for p in (tmp_path / "home" / "index" / "keyword").iterdir()] == [rebuilt.collection]


def test_add_and_remove_single_files(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    index = _index(tmp_path / "home", embedder)
    a = tmp_path / "a.md"
    a.write_text("# Alpha\n\n## Kernels\n\nThe RBF kernel maps inputs to an infinite-dimensional space.\n")
    b = make_pdf(tmp_path / "b.pdf", ["Beta notes: the Adam optimizer keeps running moment estimates."])
    ingest_paths(index, [("a.md", a)], prune=False)
    ingest_paths(index, [("b.pdf", b)], prune=False)
    assert {c.source for c in index.all_chunks()} == {"a.md", "b.pdf"}
    r = HybridRetriever(index)
    top = r.retrieve("which optimizer keeps moment estimates?", 1)[0]
    assert top.chunk.source == "b.pdf" and top.chunk.page == 1
    remove_sources(index, ["a.md"])
    assert {c.source for c in index.all_chunks()} == {"b.pdf"}


KILL_SCRIPT = r"""
import sys
from pathlib import Path
from rag.settings import Settings
from tests.fakes import HashEmbedder
from rag.backends.embeddings import Embedder
from rag.backends.store import Index
from ingest.pipeline import ingest_corpus
s = Settings(storage={"home": Path(sys.argv[1])})
idx = Index(s, Embedder.from_settings(s))
def progress(stage, done, total):
    print("PROGRESS", done, total, flush=True)
ingest_corpus(idx, Path(sys.argv[2]), rebuild=True, progress=progress)
print("FINISHED", flush=True)
"""


def test_killed_ingest_leaves_previous_index_usable(tmp_path: Path, embedder) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    home = tmp_path / "home"
    index = _index(home, embedder)
    before = ingest_corpus(index, corpus)
    before_ids = sorted(c.id for c in index.all_chunks())
    # make the next ingest big enough to be killed mid-way
    (corpus / "extra.md").write_text(
        "\n\n".join(f"## Topic {i}\n\n" + f"Synthetic paragraph {i} about feature {i} and loss {i}. " * 12
                    for i in range(400)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(home), str(corpus)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            if line.startswith("PROGRESS"):
                seen += 1
                if seen >= 2:
                    break
            assert not line.startswith("FINISHED"), "ingest finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    fresh = _index(home, embedder)  # a new process's view of the index
    assert fresh.manifest().collection == before.collection
    assert (home / "index" / "keyword" / before.collection / "done.json").is_file()  # its keyword index whole
    assert sorted(c.id for c in fresh.all_chunks()) == before_ids
    top = HybridRetriever(fresh).retrieve("How does bagging reduce variance?", 3)
    assert top and all(p.chunk.source != "extra.md" for p in top)
    # the next ingest cleans up the orphan and completes
    after = ingest_corpus(fresh, corpus)
    assert "extra.md" in after.added
    names = [c.name for c in fresh.client.list_collections()]
    assert sum(n.startswith("handbooks__v") for n in names) == 1
    assert [p.name for p in (home / "index" / "keyword").iterdir()] == [after.collection]


def test_the_embedder_runs_in_bfloat16_only_where_the_cpu_computes_it_and_agrees(embedder) -> None:
    import numpy as np

    from rag.backends.embeddings import BF16_MIN_AGREEMENT, Embedder, native_bf16
    from rag.settings import EmbedSettings

    texts = ["L1 regularization drives some weights to zero.", "What does a random forest average?"]
    fp32 = Embedder(embedder.path, EmbedSettings(precision="float32"))
    auto = Embedder(embedder.path, EmbedSettings(precision="auto"))
    a, b = np.asarray(fp32.embed(texts)), np.asarray(auto.embed(texts))
    assert fp32.precision == "float32"
    assert auto.precision == ("bfloat16" if native_bf16() else "float32")
    assert (a * b).sum(axis=1).min() >= BF16_MIN_AGREEMENT and a.dtype == np.float64  # plain float lists
    assert all(abs(np.linalg.norm(v) - 1.0) < 1e-3 for v in b)


def test_bfloat16_that_disagrees_with_float32_falls_back(embedder, monkeypatch) -> None:
    import numpy as np

    import rag.backends.embeddings as embeddings
    from rag.settings import EmbedSettings

    monkeypatch.setattr(embeddings, "native_bf16", lambda: True)  # as if the CPU had it
    monkeypatch.setattr(embeddings, "BF16_MIN_AGREEMENT", 1.01)  # no bfloat16 vector can agree this well
    auto = embeddings.Embedder(embedder.path, EmbedSettings(precision="auto"))
    (vec,) = auto.embed(["Dropout randomly disables units during training."])
    (ref,) = embedder.embed(["Dropout randomly disables units during training."])
    assert auto.precision == "float32" and float(np.dot(vec, ref)) > 0.9999
