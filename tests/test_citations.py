"""Citation markers (parsing, keeping those to given passages) and the rule checks of written sentences
(word support, numbers, placeholders, restatement)."""

from __future__ import annotations

import pytest

from rag.answer.checks import novel_words, placeholder_markers, unsupported_numbers, word_support
from rag.citations import cited_numbers, keep_markers, markers_in_code, numbers, place_outside_code
from rag.types import Chunk, Passage


def passage(i: int, text: str, source: str = "doc.md", page: int | None = None) -> Passage:
    chunk = Chunk(id=f"c{i}", text=text, source=source, title=f"Title {i}", section=f"Sec {i}", page=page,
                  start=0, end=len(text), content_hash=f"h{i}", ordinal=i)
    return Passage(chunk=chunk, score=1.0 / (i + 1), extra={"similarity": 0.5})


PASSAGES = [
    passage(0, "L1 regularization adds the absolute value of the weights and can zero some of them."),
    passage(1, "L2 regularization adds the squared weights and shrinks them smoothly.", page=4),
    passage(2, "Dropout randomly disables units during training."),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [("1", [1]), ("1, 2", [1, 2]), ("2,1", [2, 1]), ("1-3", [1, 2, 3]), ("2 and 3", [2, 3]), ("1;1", [1])],
)
def test_marker_numbers(body: str, expected: list[int]) -> None:
    assert numbers(body) == expected


def test_only_markers_to_given_passages_are_kept() -> None:
    text = "L1 zeroes weights [1]. L2 shrinks them [2, 1]. Dropout too [3][2]."
    assert cited_numbers(text, [1, 2, 3]) == [1, 2, 3] and cited_numbers(text, [2]) == [2]
    assert keep_markers(text, [1, 2, 3]) == (text, 0)
    assert cited_numbers("Both shrink weights [Passage 1] and [1-2].", [1, 2]) == [1, 2]


def test_markers_to_other_passages_are_removed_and_counted() -> None:
    text, removed = keep_markers("L1 zeroes weights [7]. L2 shrinks them [2, 9]. Nothing [0].", [1, 2, 3])
    assert text == "L1 zeroes weights. L2 shrinks them [2]. Nothing." and removed == 3


def test_non_citation_brackets_are_kept() -> None:
    text, removed = keep_markers("A list [a, b] and x[i] and [see above] stay [1].", [1])
    assert text == "A list [a, b] and x[i] and [see above] stay [1]." and removed == 0


def test_word_support_is_low_for_sentences_from_memory() -> None:
    texts = [p.chunk.text for p in PASSAGES]
    q = "What are the default beta values of Adam?"
    assert (word_support("Adam uses beta1 0.9 and beta2 0.999 by default.", q, texts) or 0) < 0.5
    assert word_support("L1 regularization can zero some weights.", "What does L1 do?", texts) == 1.0
    assert word_support("What does L1 do?", "What does L1 do?", texts) == 0.0  # restates the question
    assert word_support("```python\nx = 1\n```", "q", texts) is None  # code alone is not a prose claim


def test_numbers_the_passages_do_not_state_are_found() -> None:
    ps = ["Use momentum 0.90 and an 80/20 split. ResNet-50 trains on 1,000 images; 95% intervals."]
    assert unsupported_numbers("Momentum is usually around 0.9 [1].", ps) == []  # 0.9 == 0.90
    assert unsupported_numbers("Split 80% / 20% and report a 95% interval [1].", ps) == []
    assert unsupported_numbers("ResNet-50 needs 1000 images.", ps) == []
    assert unsupported_numbers("Run it for at least 7 full weeks [1].", ps) == ["7"]
    assert unsupported_numbers("Warm up for 10-20% of the steps; it is 2x faster.", ps) == ["10", "2"]
    assert unsupported_numbers("Set k to 5.", [*ps, "Is k = 5 a good choice?"]) == []  # from the question


def test_names_with_digits_and_list_markers_are_not_claims() -> None:
    ps = ["Regularization penalises large weights."]
    assert unsupported_numbers("L1 and L2 penalties differ; F1 and GPT-4 too [1].", ps) == []
    assert unsupported_numbers("Steps:\n1. Fit the model.\n2. Score it.", ps) == []


def test_novel_words_are_what_the_answer_adds_to_the_question() -> None:
    question = "What is the closed-form KL divergence between two Gaussians used in the VAE loss?"
    assert novel_words("The closed-form KL divergence between two Gaussians is used in the VAE loss [3].",
                       question) == set()
    assert novel_words("It is log(s2/s1) + (s1^2 + (m1-m2)^2)/(2 s2^2) - 1/2 [1].", question)


def test_markers_standing_in_for_content_are_placeholders() -> None:
    assert placeholder_markers("The learning rate is given by the formula: [3]") == 1
    assert placeholder_markers("The derivative, denoted as [1], is given by [2].") == 2
    assert placeholder_markers("It can be calculated using the formula: [n]") == 1
    assert placeholder_markers("A layer has [1] parameters.") == 1
    assert placeholder_markers("L1 drives some weights to zero [1]. L2 shrinks them [2][3].") == 0
    assert placeholder_markers("Dropout is a regularizer [1], as is weight decay [2].") == 0


@pytest.mark.parametrize(("text", "fixed"), [
    ("Use np [1].argsort() to sort.", "Use np.argsort() to sort [1]."),
    ("Then call `smote.fit_resample(X, y) [2]` on the training set.", "Then call `smote.fit_resample(X, y)` on the training set [2]."),
    ("Load it with joblib [1].load(path).", "Load it with joblib.load(path) [1]."),
    ("Save it:\n```\nimport joblib [1]\n```\nDone.", "Save it:\n```\nimport joblib\n```\n[1]\nDone."),
    ("L1 adds sparsity [1]. L2 shrinks weights [2].", "L1 adds sparsity [1]. L2 shrinks weights [2]."),
    ("Both shrink weights [1][2].", "Both shrink weights [1][2]."),
])
def test_markers_never_stay_inside_code_or_identifiers(text: str, fixed: str) -> None:
    assert place_outside_code(text) == fixed
    assert markers_in_code(fixed) == 0
    assert markers_in_code(text) == (0 if text == fixed else 1)
