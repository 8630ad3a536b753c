"""Units of handbook text (rag.units): the cut, showing a unit whole, and what is never quoted alone."""

from __future__ import annotations

from rag.units import is_heading, is_question, quotable, split_units, whole

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

TABLE_PASSAGE = """**Measures of Spread**:
| Measure | Description | Formula |
|:---|:---|:---|
| **Range** | Max - Min | Simple but sensitive to outliers |
| **Variance** | Average squared deviation | σ² = Σ(x - μ)² / n |"""

FORMULA_PASSAGE = """Loss functions
MSE (regression):
MSE = (1/n) * Σ (y_i - ŷ_i)^2

MAE (regression):
MAE = (1/n) * Σ |y_i - ŷ_i|"""

DIAGRAM_PASSAGE = """**The Data Science Venn Diagram**:
```
        ┌─────────────────┐
        │  Domain/Business│
        └────────┬────────┘
```
Data science combines statistics, computing and domain knowledge."""


def shown(text: str) -> dict[str, str]:
    """Each quotable unit's text -> the unit shown whole."""
    units = split_units(text)
    return {u.text: whole(units, u, text) for u in units if quotable(units, u, text)}


def one(got: dict[str, str], start: str) -> str:
    [value] = [v for k, v in got.items() if k.startswith(start)]
    return value


def test_code_blocks_stay_whole_and_sentences_do_not_split_inside_identifiers() -> None:
    units = split_units("Consider using np.argsort() to find the nearest points, e.g. the 5 closest. "
                        "Then vote with np.bincount().argmax() on 0.5 of them.\n" + CODE_PASSAGE)
    texts = [u.text for u in units]
    assert texts[0].startswith("Consider using np.argsort()") and texts[0].endswith("the 5 closest.")
    assert texts[1].startswith("Then vote with np.bincount().argmax() on 0.5")
    code = [u for u in units if u.kind == "code"]
    assert len(code) == 1 and "smote.fit_resample(X, y)" in code[0].text and code[0].text.startswith("```")
    assert code[0].text.rstrip().endswith("```")


def test_a_chunk_starting_inside_a_code_block_is_code() -> None:
    units = split_units("model = joblib.load('m.pkl')\npreds = model.predict(X)\n```\nThat is all you need.")
    assert units[0].kind == "code" and "joblib.load" in units[0].text
    assert units[-1].text == "That is all you need."


def test_offsets_point_at_the_unit_text() -> None:
    text = "First sentence here. Second one follows!\n- an item of a list\n| a | b |\n" + TABLE_PASSAGE
    for u in split_units(text):
        assert text[u.start : u.end] == u.text


def test_a_list_item_is_shown_with_its_introduction() -> None:
    got = shown(LIST_PASSAGE)
    assert one(got, "- **Weather Forecasting:** Use ") == ("**Use Cases:**\n"
                                                     "- **Weather Forecasting:** Use MAE for symmetric error penalties.")
    assert "**Use Cases:**" not in got  # the introduction alone is a heading


def test_a_paragraphs_last_sentence_is_no_introduction() -> None:
    text = "Gradients flow backwards. This is how models learn by minimizing error.\n- Benefit: faster training."
    assert shown(text)["- Benefit: faster training."] == "- Benefit: faster training."


def test_a_table_row_is_shown_under_its_header_row() -> None:
    got = shown(TABLE_PASSAGE)
    assert one(got, "| **Variance** | Average square") == ("| Measure | Description | Formula |\n|---|---|---|\n"
                                                      "| **Variance** | Average squared deviation | σ² = Σ(x - μ)² / n |")
    assert not any(k.startswith("| Measure") for k in got)  # the header row alone states nothing


def test_a_formula_is_shown_with_its_label() -> None:
    got = shown(FORMULA_PASSAGE)
    assert one(got, "MAE = (1/n) * Σ |y_i - ŷ_i|") == "MAE (regression):\nMAE = (1/n) * Σ |y_i - ŷ_i|"
    assert "Loss functions" not in got and "MSE (regression):" not in got


def test_a_code_block_is_shown_with_its_introduction() -> None:
    got = shown(CODE_PASSAGE)
    [code] = [v for k, v in got.items() if k.startswith("```")]
    assert code.startswith("Resampling with SMOTE creates synthetic minority samples:\n```python")


def test_a_code_block_cut_by_its_chunk_is_shown_with_both_fences() -> None:
    head = "Serve it:\n```python\napp = FastAPI()\nmodel = joblib.load('model.pkl')"
    [code] = [v for k, v in shown(head).items() if "FastAPI" in k]
    assert code == "Serve it:\n```python\napp = FastAPI()\nmodel = joblib.load('model.pkl')\n```"
    tail = "preds = model.predict(X)\n```\nThat is all."
    [code] = [v for k, v in shown(tail).items() if "predict" in k]
    assert code == "```\npreds = model.predict(X)\n```"


def test_a_back_reference_is_shown_with_the_sentence_it_refers_to() -> None:
    got = shown("Dropout zeroes random units. This prevents co-adaptation of neurons.")
    assert one(got, "This prevents co-adaptation of") == "Dropout zeroes random units. This prevents co-adaptation of neurons."


def test_diagrams_headings_and_questions_are_never_quotable() -> None:
    got = shown(DIAGRAM_PASSAGE)
    assert list(got) == ["Data science combines statistics, computing and domain knowledge."]
    for text in ("- Support Vector Machines", "**Key Concepts:**", "4.2 K-Nearest Neighbors (kNN)",
                 "**Case Study: Recommendation System**"):
        assert is_heading(split_units(text)[0]), text
    for text in ("- How do you choose k in k-means?", "**Question**: You need to predict churn. Which model",
                 "Q3: Explain dropout"):
        assert is_question(split_units(text)[0]), text
    for text in ("- **Recency**: Days since last order", "1. Start with **Logistic Regression** (baseline)",
                 "Use MAE for symmetric error penalties.", "L2 (Ridge) adds λ * ||w||_2^2 to loss."):
        u = split_units(text)[0]
        assert not is_heading(u) and not is_question(u), text
