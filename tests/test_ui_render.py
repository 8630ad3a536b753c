"""ui/render.py: escaping of untrusted text, citation links, quotes, refused rendering, export."""

from __future__ import annotations

from dataclasses import dataclass

from rag.citations import marker_numbers
from ui import render

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def _src(n: int, text: str = "passage text", cited: bool = False, **kw) -> dict:
    return {"n": n, "chunk_id": f"c{n}", "title": f"Title {n}", "section": "Sec > Sub", "page": None,
            "source": f"doc{n}.md", "score": 0.5 / n, "text": text, "cited": cited, **kw}


def test_esc_escapes_markup_and_quotes() -> None:
    assert render.esc('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"
    assert render.esc(None) == ""


def test_sources_html_escapes_every_field() -> None:
    src = _src(1, text=XSS, title="<i>t</i>", section="<b>s</b>", source="<x>.md", cited=True)
    out = render.sources_html([src])
    assert "<script>" not in out and "<img" not in out and "<i>t" not in out and "<b>s" not in out
    passage = out[out.index('<div class="sb-passage'):]  # the passage, rendered as Markdown, is text
    assert "&lt;script&gt;window." in passage and "&lt;/script&gt;&lt;img src=x onerror=&quot;window." in passage
    assert "&lt;i&gt;t&lt;/i&gt;" in out and "&lt;b&gt;s&lt;/b&gt;" in out and "&lt;x&gt;.md" in out


def test_sources_html_ids_and_folded_passages_without_scores() -> None:
    out = render.sources_html([_src(1, cited=True), _src(2, page=7)], status="2 passages")
    assert 'id="src-1"' in out and 'id="src-2"' in out
    assert "score" not in out and "0.5" not in out  # retrieval scores (0.11-0.18) read as failures: not shown
    assert "p. 7" in out and "Sec &gt; Sub" in out
    assert out.count("<details>") == 2  # folded until its [n] is clicked: nothing moves while the answer comes
    assert "sb-cited" in out and "2 passages" in out and ">cited<" in out


def test_each_turn_has_its_own_source_anchors() -> None:
    md = render.link_citations("See [1] and [2].", valid=[1, 2], turn=3)
    assert "(#src-3-1" in md and "(#src-3-2" in md and "(#src-1" not in md
    assert 'id="src-3-1"' in render.sources_html([_src(1)], turn=3)
    quotes = render.quotes_markdown([{"text": "A quote.", "citation": {"n": 2}}], valid=[2], turn=4)
    assert "(#src-4-2" in quotes


def test_the_conversation_panel_shows_one_turns_sources_and_keeps_the_others() -> None:
    sections = [{"turn": 1, "question": "What is <b>L1</b>?", "sources": [_src(1, cited=True)], "summary": "1 of 1"},
                {"turn": 2, "question": "And L2?", "sources": [], "empty": "No passage is close enough."}]
    out = render.conversation_sources_html(sections, current=2, status="Working", busy=True)
    assert 'data-busy="1"' in out and 'data-current="2"' in out
    assert '<section class="sb-turn-src" data-turn="1" hidden>' in out  # kept, shown when its [n] is clicked
    assert '<section class="sb-turn-src" data-turn="2">' in out
    assert 'id="src-1-1"' in out and "No passage is close enough." in out
    assert "What is &lt;b&gt;L1&lt;/b&gt;?" in out and "<b>L1" not in out
    assert render.EMPTY_SOURCES not in out  # never "sources appear here" beside an answered question
    assert render.EMPTY_SOURCES in render.conversation_sources_html([], current=0)


def test_a_passage_shows_its_markdown_rendered_never_raw() -> None:
    text = ("**Example:** $ k=5 $ folds and $\\lambda \\sum_i |w_i|$.\n\n**Key Concepts:**\n- one\n- two\n\n"
            "```python\nprint(a < b)  # **not bold**\n```\n" + XSS)
    out = render.sources_html([_src(1, text=text)])
    passage = out[out.index('<div class="sb-passage'):]
    assert "<strong>Example:</strong>" in passage and "<strong>Key Concepts:</strong>" in passage
    assert "k=5" in passage and "λ Σ" in passage and "$" not in passage and "\\lambda" not in passage
    assert "<li>one</li>" in passage
    assert '<pre class="sb-code"><code>print(a &lt; b)  # **not bold**</code></pre>' in passage  # code as code
    assert "```" not in passage
    assert "<script>" not in passage and "<img" not in passage and "&lt;script&gt;" in passage


def test_quotes_show_math_as_text_and_drop_the_handbooks_own_quote_markers() -> None:
    quotes = [{"text": "> - **Example:** $ k=5 $ and $\\theta_i$ cost $5 and $10", "citation": {"n": 1}},
              {"text": "> Fit it:\n> ```python\n> m.fit(X)\n> ```", "citation": {"n": 2}}]
    md = render.quotes_markdown(quotes, valid=[1, 2])
    assert md.startswith("> - **Example:** *k=5* and *θ\\_i* cost $5 and $10 [\\[1\\]](#src-1")
    assert "&gt;" not in md  # no literal ">" left from the handbook's own block quote
    assert "> ```python\n> m.fit(X)\n> ```" in md
    assert render.math_markdown("$<b>$ [x]") == "*&lt;b&gt;* \\[x\\]"
    # A quoted list's introduction joined to its item (one unit): the item back on a line of its own.
    joined = render.quotes_markdown([{"text": "> Regularization prevents overfitting: > - L1: sparse models",
                                      "citation": {"n": 4}}], valid=[4])
    assert joined.startswith("> Regularization prevents overfitting:\n> - L1: sparse models [\\[4\\]]")
    assert "a &gt; - b" in render.quotes_markdown([{"text": "a > - b", "citation": {"n": 1}}])  # not a quote


def test_sources_html_empty_has_hint() -> None:
    assert "Sources appear here" in render.sources_html([])


def test_citations_link_to_sources() -> None:
    md = render.link_citations("Use SMOTE [1] or class weights [2, 3].", valid=[1, 2, 3])
    assert "[\\[1\\]](#src-1" in md
    assert "(#src-2" in md and "(#src-3" in md


def test_citation_range_and_adjacent() -> None:
    assert marker_numbers("a [1-3] b [5][2]") == [1, 2, 3, 5]
    md = render.link_citations("x [1][2]", valid=[1, 2])
    assert md.count("#src-") == 2


def test_unknown_citations_and_old_turns_are_not_linked() -> None:
    md = render.link_citations("see [9]", valid=[1, 2])
    assert "#src-9" not in md and "\\[9\\]" in md
    md = render.link_citations("see [1]", valid=[1], links=False)
    assert "#src-1" not in md


def test_answer_text_is_escaped_and_cannot_build_links() -> None:
    md = render.answer_markdown(f"{XSS} and [click](javascript:alert(1)) ![i](http://x/y.png) [1]", valid=[1])
    assert "<script>" not in md and "<img" not in md
    assert "&lt;script&gt;" in md
    assert "[click](" not in md and "\\[click\\](javascript" in md  # escaped brackets: plain text
    assert "![i](" not in md
    assert "(#src-1" in md


def test_code_spans_are_left_to_markdown() -> None:
    md = render.link_citations("use `a < b` here [1]", valid=[1])
    assert "`a < b`" in md and "(#src-1" in md


def test_refused_note() -> None:
    refused = render.answer_markdown("I can't find that in the handbooks.", refused=True)
    assert refused == render.REFUSED_NOTE  # one sentence: the model's refusal is not said a second time
    assert render.answer_markdown("", refused=True) == render.REFUSED_NOTE
    normal = render.answer_markdown("Cited [1].", valid=[1])
    assert render.REFUSED_NOTE not in normal
    named = render.answer_markdown("I can't find that.", refused=True, missing_terms=["Mahalanobis", "<b>X"])
    assert "_No handbook mentions Mahalanobis, &lt;b&gt;X._" in named and "<b>" not in named


def test_streaming_says_what_the_answer_waits_on_on_its_last_line() -> None:
    assert render.answer_markdown("", streaming=True) == f"_{render.STAGE_TEXT['retrieving']}_"
    assert render.answer_markdown("", streaming=True, stage="ranking") == f"_{render.STAGE_TEXT['ranking']}_"
    partial = render.answer_markdown("partial [1]", streaming=True, stage="checking", valid=[1], turn=2)
    done = render.answer_markdown("partial [1]", valid=[1], turn=2)
    assert partial == f"{done}\n\n_{render.STAGE_TEXT['checking']}_"  # the text drawn stays; the stage line goes
    assert {"retrieving", "ranking", "explaining", "checking", "waiting", "queued", "reading"} <= set(render.STAGE_TEXT)


def test_quotes_are_escaped_block_quotes_with_linked_markers() -> None:
    quotes = [{"text": "**Bagging**: trains <b>in parallel</b>.", "citation": {"n": 2}},
              {"text": "Fit it:\n```python\nmodel.fit(X, y)\n```", "citation": {"n": 3}}]
    md = render.quotes_markdown(quotes, valid=[2, 3])
    assert md.startswith("> **Bagging**: trains &lt;b&gt;in parallel&lt;/b&gt;. [\\[2\\]](#src-2")
    assert "> ```python\n> model.fit(X, y)\n> ```\n>\n> [\\[3\\]](#src-3" in md  # marker after the code
    assert "<b>" not in md


def test_merge_citations_marks_cited_and_adds_missing() -> None:
    sources = [_src(1), _src(2)]
    merged = render.merge_citations(sources, [
        {"n": 2, "chunk_id": "c2", "title": "Title 2", "section": "", "page": None, "source": "doc2.md", "text": "t"},
        {"n": 3, "chunk_id": "c3", "title": "T3", "section": "", "page": 4, "source": "d3.pdf", "text": "x"},
    ])
    assert [s["n"] for s in merged] == [1, 2, 3]
    assert [s["cited"] for s in merged] == [False, True, True]
    assert merged[2]["score"] is None
    assert not sources[1]["cited"]  # inputs are not modified


@dataclass
class _P:
    d: dict

    def to_json(self) -> dict:
        return self.d


def test_passages_to_sources_numbers_from_one() -> None:
    out = render.passages_to_sources([_P({"id": "a", "text": "x", "source": "s", "title": "T", "section": "",
                                          "page": 3, "score": 0.1}), {"id": "b", "text": "y", "score": 0.05}])
    assert [s["n"] for s in out] == [1, 2]
    assert out[0]["chunk_id"] == "a" and out[0]["page"] == 3 and out[1]["chunk_id"] == "b"


def test_conversation_markdown_has_answers_and_cited_sources() -> None:
    turns = [
        {"question": "What is PCA?", "answer": "A projection [1].", "refused": False,
         "sources": [_src(1, text="PCA projects data.", cited=True), _src(2, text="unrelated")]},
        {"question": "Weather on Mars?", "answer": "", "refused": True, "sources": []},
    ]
    md = render.conversation_markdown(turns)
    assert "## 1. What is PCA?" in md and "A projection [1]." in md
    assert "- [1] Title 1 — Sec > Sub (doc1.md)" in md and "> PCA projects data." in md
    assert "unrelated" not in md
    assert "Not answered" in md


def test_documents_rows() -> None:
    @dataclass
    class D:
        source: str
        title: str
        chunks: int
        ingested_at: float
        kind: str

    rows = render.documents_rows([D("a.md", "A", 3, 0.0, "markdown")])
    assert rows == [["A", "a.md", "markdown", 3, ""]]


def test_progress_text_shows_the_time_left_from_the_rate_so_far() -> None:
    from ui.render import ProgressText, duration

    now = [100.0]
    text = ProgressText(clock=lambda: now[0])
    assert text("embedding", 0, 2000) == "embedding 0/2,000"  # no estimate before any work
    now[0] += 10.0
    assert text("embedding", 200, 2000) == "embedding 200/2,000 · about 1 min 30 s left"  # 20/s, 1800 left
    assert text("embedding", 2000, 2000) == "embedding 2,000/2,000"
    assert duration(45) == "45 s" and duration(3 * 3600 + 300) == "3 h 05 min"
