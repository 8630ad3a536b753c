"""Evidence selection (rag.evidence): units, scoring, the budget, the lead; and code-safe citation markers."""

from __future__ import annotations

import pytest

from rag.citations import markers_in_code, place_outside_code
from rag.evidence import EvidenceSelector, split_units
from rag.settings import Settings
from rag.terms import Vocabulary
from rag.types import Chunk, Passage
from tests.fakes import HashEmbedder

CODE_PASSAGE = """Resampling with SMOTE creates synthetic minority samples:
```python
from imblearn.over_sampling import SMOTE
smote = SMOTE()
X_resampled, y_resampled = smote.fit_resample(X, y)
```
Use it on the training split only. Never resample the test set."""

LIST_PASSAGE = """**Use Cases:**
- **Medical Diagnosis:** Prioritize recall to minimize false negatives.
- **Weather Forecasting:** Use MAE for symmetric error penalties.
- **Fraud Detection:** Optimize precision to reduce false alarms."""


def passage(i: int, text: str, section: str = "Sec") -> Passage:
    chunk = Chunk(id=f"c{i}", text=text, source=f"doc{i}.md", title=f"Doc {i}", section=section, page=None,
                  start=0, end=len(text), content_hash=f"h{i}", ordinal=i * 10)
    return Passage(chunk=chunk, score=1.0 / (i + 1), extra={"similarity": 0.5})


def count(text: str) -> int:
    return len(text) // 4 + 1


def test_code_blocks_stay_whole_and_sentences_do_not_split_inside_identifiers() -> None:
    units = split_units("Consider using np.argsort() to find the nearest points, e.g. the 5 closest. "
                        "Then vote with np.bincount().argmax() on 0.5 of them.\n" + CODE_PASSAGE)
    kinds = [u.kind for u in units]
    texts = [u.text for u in units]
    assert texts[0].startswith("Consider using np.argsort()") and texts[0].endswith("the 5 closest.")
    assert texts[1].startswith("Then vote with np.bincount().argmax() on 0.5")
    code = [u for u in units if u.kind == "code"]
    assert len(code) == 1 and "smote.fit_resample(X, y)" in code[0].text and code[0].text.startswith("```")
    assert code[0].text.rstrip().endswith("```")
    assert kinds.count("sentence") >= 4  # the prose around the block is split into its sentences


def test_list_items_are_units_and_a_chunk_starting_inside_a_code_block_is_code() -> None:
    items = [u for u in split_units(LIST_PASSAGE) if u.kind == "item"]
    assert [u.text.split(":**")[0] for u in items] == ["- **Medical Diagnosis", "- **Weather Forecasting",
                                                        "- **Fraud Detection"]
    units = split_units("model = joblib.load('m.pkl')\npreds = model.predict(X)\n```\nThat is all you need.")
    assert units[0].kind == "code" and "joblib.load" in units[0].text
    assert units[-1].text == "That is all you need."


def test_offsets_point_at_the_unit_text() -> None:
    text = "First sentence here. Second one follows!\n- an item of a list\n"
    for u in split_units(text):
        assert text[u.start : u.end] == u.text


def test_selection_keeps_the_on_point_units_under_budget_and_leads_with_the_best() -> None:
    settings = Settings()
    sel = EvidenceSelector(settings.answer, HashEmbedder(), idf=lambda _t: 1.0)
    filler = " ".join(f"Unrelated sentence number {i} talks about gardening and tomatoes." for i in range(30))
    passages = [passage(0, filler), passage(1, LIST_PASSAGE), passage(2, CODE_PASSAGE)]
    ev = sel.select("Which error metric for weather forecasting?", passages, count, budget=120)
    assert ev.tokens <= 120 + 40  # the budget counts units; block headers are on top
    assert ev.lead is not None and "Use MAE" in ev.lead.text
    assert ev.lead.citations[0].n == 1 and ev.lead.citations[0].chunk_id == "c1"
    shown = "\n".join(p.chunk.text for p in ev.passages)
    assert "Weather Forecasting" in shown and "tomatoes" not in shown
    assert ev.passages[0].chunk.id == "c1"  # excerpts keep the stored chunk's id (citations open it)


def test_an_introduction_ending_in_a_colon_brings_its_code() -> None:
    sel = EvidenceSelector(Settings().answer, HashEmbedder())
    ev = sel.select("How do I create synthetic minority samples with SMOTE resampling?", [passage(0, CODE_PASSAGE)],
                    count)
    shown = ev.passages[0].chunk.text
    assert "smote.fit_resample(X, y)" in shown and shown.count("```") == 2
    assert ev.lead is not None and "```" in ev.lead.text  # "...samples:" is led with the block it introduces


def test_real_embedder_picks_the_sentence_that_answers(embedder) -> None:  # type: ignore[no-untyped-def]
    """With the retrieval embedder, the lead is the list item about the asked use case, not its neighbours."""
    sel = EvidenceSelector(Settings().answer, embedder)
    ev = sel.select("For a weather forecasting model, which error measure should I use?",
                    [passage(0, LIST_PASSAGE, "Model Evaluation Metrics"), passage(1, CODE_PASSAGE)], count)
    assert ev.lead is not None and "Use MAE" in ev.lead.text


@pytest.mark.parametrize(("text", "fixed"), [
    ("Use np [1].argsort() to sort.", "Use np.argsort() to sort [1]."),
    ("Then call `smote.fit_resample(X, y) [2]` on the training set.", "Then call `smote.fit_resample(X, y)` on the training set [2]."),
    ("Load it with joblib [1].load(path).", "Load it with joblib.load(path) [1]."),
    ("Save it:\n```\nimport joblib [1]\n```\nDone.", "Save it:\n```\nimport joblib\n```\n[1]\nDone."),
    ("L1 adds sparsity [1]. L2 shrinks weights [2].", "L1 adds sparsity [1]. L2 shrinks weights [2]."),
])
def test_markers_never_stay_inside_code_or_identifiers(text: str, fixed: str) -> None:
    assert place_outside_code(text) == fixed
    assert markers_in_code(fixed) == 0
    assert markers_in_code(text) == (0 if text == fixed else 1)


@pytest.mark.parametrize("term", ["XGBoost-style", "BERT-like", "GPT-ish", "CNN-based", "LSTM-type"])
def test_compounds_of_known_terms_are_mentions(term: str) -> None:
    vocab = Vocabulary(["XGBoost and BERT are common; GPT models and CNN or LSTM layers too."])
    assert vocab.mentions(term)


def test_compounds_of_unknown_terms_are_not() -> None:
    vocab = Vocabulary(["XGBoost and BERT are common."])
    assert not vocab.mentions("Mahalanobis-based")
    assert not vocab.mentions("RoBERTa-style")
