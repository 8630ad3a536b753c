"""Citation markers (parsing, mapping to passages, invalid numbers, streaming filter) and the grounding
checks (attribution, support, numbers, placeholders, restatement)."""

from __future__ import annotations

import pytest

from rag.citations import CitationFilter, clean, map_citations, numbers
from rag.grounding import attribute, novel_words, placeholder_markers, support, unsupported_numbers
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


def test_maps_single_grouped_and_adjacent_markers_to_passages() -> None:
    text = "L1 zeroes weights [1]. L2 shrinks them [2, 1]. Dropout too [3][2]."
    m = map_citations(text, PASSAGES)
    assert [c.n for c in m.citations] == [1, 2, 3]
    assert m.invalid == 0 and not m.uncited
    c2 = m.citations[1].to_json()
    assert c2 == {"n": 2, "chunk_id": "c1", "source": "doc.md", "title": "Title 1", "section": "Sec 1",
                  "page": 4, "text": PASSAGES[1].chunk.text}
    assert m.text == text


def test_passage_word_and_ranges_are_understood() -> None:
    m = map_citations("Both shrink weights [Passage 1] and [1-2].", PASSAGES)
    assert [c.n for c in m.citations] == [1, 2]


def test_invalid_numbers_are_removed_and_counted() -> None:
    m = map_citations("L1 zeroes weights [7]. L2 shrinks them [2, 9]. Nothing [0].", PASSAGES)
    assert m.text == "L1 zeroes weights. L2 shrinks them [2]. Nothing."
    assert m.invalid == 3
    assert [c.n for c in m.citations] == [2]


def test_no_valid_citation_is_uncited() -> None:
    m = map_citations("L1 zeroes weights [5].", PASSAGES)
    assert m.uncited and m.citations == [] and m.invalid == 1
    assert map_citations("No markers at all.", PASSAGES).uncited


def test_non_citation_brackets_are_kept() -> None:
    text, removed = clean("A list [a, b] and x[i] and [see above] stay [1].", 1)
    assert text == "A list [a, b] and x[i] and [see above] stay [1]." and removed == 0


def test_stream_filter_matches_clean_for_any_split() -> None:
    text = "L1 zeroes [1]. L2 [2, 9] shrinks [8]. Lists [a] stay [3][4]. Open [ bracket"
    expected, removed = clean(text, 3)
    for size in (1, 2, 3, 5, 8):
        f = CitationFilter(3)
        out = "".join(f.feed(text[i : i + size]) for i in range(0, len(text), size)) + f.flush()
        assert " ".join(out.split()).replace(" .", ".") == expected  # same text up to whitespace tidying
        assert f.invalid == removed == 3


def test_attribution_cites_sentences_taken_from_a_passage() -> None:
    text, added = attribute("L2 regularization adds the squared weights. The moon is made of cheese.", PASSAGES)
    assert added == 1
    assert text == "L2 regularization adds the squared weights [2]. The moon is made of cheese."


def test_support_is_low_for_answers_from_memory() -> None:
    q = "What are the default beta values of Adam?"
    assert support("Adam uses beta1 0.9 and beta2 0.999 by default.", PASSAGES, q) < 0.5
    assert support("L1 regularization can zero some weights.", PASSAGES, "What does L1 do?") == 1.0


def _passages_of(texts: list[str]) -> list[Passage]:
    return [passage(i, t) for i, t in enumerate(texts)]


def test_numbers_the_passages_do_not_state_are_found() -> None:
    ps = _passages_of(["Use momentum 0.90 and an 80/20 split. ResNet-50 trains on 1,000 images; 95% intervals."])
    assert unsupported_numbers("Momentum is usually around 0.9 [1].", ps) == []  # 0.9 == 0.90
    assert unsupported_numbers("Split 80% / 20% and report a 95% interval [1].", ps) == []
    assert unsupported_numbers("ResNet-50 needs 1000 images.", ps) == []
    assert unsupported_numbers("Run it for at least 7 full weeks [1].", ps) == ["7"]
    assert unsupported_numbers("Warm up for 10-20% of the steps; it is 2x faster.", ps) == ["10", "2"]
    assert unsupported_numbers("Set k to 5.", ps, question="Is k = 5 a good choice?") == []  # from the question


def test_names_with_digits_and_list_markers_are_not_claims() -> None:
    ps = _passages_of(["Regularization penalises large weights."])
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
