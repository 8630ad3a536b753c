"""All formatting of answers, citations and documents for the web UI.

Document text and model output are untrusted: everything that reaches the page goes through
:func:`esc` here. Citations stay plain data (dicts) until they are rendered by these functions.

A *source* below is a dict with the keys ``n`` (the citation number), ``title``, ``section``, ``page``,
``source`` (file), ``score`` (may be ``None``), ``text`` and ``cited`` (bool).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rag.citations import CITATION, numbers
from rag.quiz import GradeResult
from rag.types import Chunk, Citation, Passage

REFUSED_NOTE = "**Not answered:** the handbooks do not cover this question (no passage supports an answer)."
# What a student waits on at each stage of an answer (rag.events.Stage), said on screen.
STAGE_TEXT = {
    "retrieving": "Searching the handbooks…",
    "ranking": "Choosing the passages' sentences that answer it…",
    "explaining": "Writing a short explanation of the quotes…",
    "checking": "Checking the explanation against the quotes…",
}


def esc(value: Any) -> str:
    """HTML-escape any value (``None`` becomes an empty string)."""
    return html.escape("" if value is None else str(value), quote=True)


def _md_escape_brackets(text: str) -> str:
    """Backslash-escape square brackets so model output cannot build Markdown links or images."""
    return text.replace("[", "\\[").replace("]", "\\]")


def md_escape(text: str) -> str:
    """Untrusted text for a Markdown page that stays readable as a file: ``<`` escaped (no HTML tag can
    open, so nothing runs) and brackets neutralised (no links or images)."""
    return _md_escape_brackets(str(text).replace("<", "&lt;"))


# Code spans and fenced blocks: Markdown shows their content literally (and escapes it itself).
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)


def link_citations(text: str, valid: Iterable[int] | None = None, *, links: bool = True) -> str:
    """Markdown for an answer: HTML-escaped, brackets neutralised, and each ``[n]`` linked to ``#src-n``.

    ``valid``: the citation numbers that have a source; other numbers stay plain text. ``links=False``
    renders citations as plain ``[n]`` (for older turns whose sources are no longer on the page).
    """
    out: list[str] = []
    pos = 0
    text = text or ""
    for m in _CODE.finditer(text):
        out.append(_link_plain(text[pos : m.start()], valid, links))
        out.append(m.group(0))
        pos = m.end()
    out.append(_link_plain(text[pos:], valid, links))
    return "".join(out)


def _link_plain(text: str, valid: Iterable[int] | None, links: bool) -> str:
    allowed = None if valid is None else set(valid)
    out: list[str] = []
    pos = 0
    for m in CITATION.finditer(text):
        out.append(_md_escape_brackets(esc(text[pos : m.start()])))
        nums = numbers(m.group(1))
        parts = []
        for n in nums:
            if links and (allowed is None or n in allowed):
                parts.append(f'[\\[{n}\\]](#src-{n} "source {n}")')
            else:
                parts.append(f"\\[{n}\\]")
        out.append("".join(parts))
        pos = m.end()
    out.append(_md_escape_brackets(esc(text[pos:])))
    return "".join(out)


def answer_markdown(
    text: str,
    *,
    refused: bool = False,
    valid: Iterable[int] | None = None,
    links: bool = True,
    streaming: bool = False,
    stage: str | None = None,
    missing_terms: Iterable[str] = (),
) -> str:
    """The chat message for an answer's text (Markdown with escaped text) with its refused note; while
    ``streaming``, the stage the answer waits on."""
    body = link_citations(text.strip(), valid, links=links) if text and text.strip() else ""
    if streaming:
        waiting = f"_{STAGE_TEXT.get(stage or '', 'Thinking…')}_"
        return f"{body} ▌\n\n{waiting}" if body else waiting
    if refused:
        missing = [_md_escape_brackets(esc(t)) for t in missing_terms]
        if missing:
            body = f"{body}\n\n_No handbook mentions {', '.join(missing)}._"
        return f"{REFUSED_NOTE}\n\n{body}" if body else REFUSED_NOTE
    return body


def quotes_markdown(quotes: Sequence[Mapping[str, Any]], valid: Iterable[int] | None = None, *,
                    links: bool = True) -> str:
    """An answer's quotes (``Quote.to_json()``) as Markdown block quotes: the handbook's own words, escaped,
    each with its linked marker."""
    from rag.answer.select import marked

    blocks = []
    for q in quotes:
        body = link_citations(marked(str(q.get("text") or ""), int(q["citation"]["n"])), valid, links=links)
        blocks.append("\n".join("> " + ln if ln.strip() else ">" for ln in body.splitlines()))
    return "\n\n".join(blocks)


def error_markdown(message: str) -> str:
    return f"**Error:** {_md_escape_brackets(esc(message))}"


def source_line(cited: Citation | Passage | Chunk | Mapping[str, Any]) -> str:
    """``Title — Section > Sub (file.md, p. 3)``: where a passage is, as plain text (not escaped). The one
    formatter of a citation's place, for the CLI, the web UI, exports and Markdown downloads."""
    target: Any = cited.chunk if isinstance(cited, Passage) else cited
    get: Any = target.get if isinstance(target, Mapping) else (lambda key: getattr(target, key, None))
    page = f", p. {get('page')}" if get("page") else ""
    return f"{get('title') or get('source') or '(untitled)'} — {get('section') or '(start)'} ({get('source')}{page})"


def grade_feedback(grade: GradeResult) -> str:
    """The feedback on a graded answer: the verdict, the right answer, the explanation and the quote with its
    source (plain text, one part a line)."""
    opening = {"correct": "Correct.", "partial": "Partly right.",
               "incorrect": "Not quite." if grade.answered else "No answer given.",
               "revealed": "Here is the back of the card."}[grade.verdict]
    parts = [opening]
    if grade.verdict != "correct" or not grade.mcq:
        parts.append(f"Answer: {grade.reference}")
    if grade.explanation:
        parts.append(grade.explanation)
    parts.append(f'The handbook says: "{grade.quote}" — {source_line(grade.citation)}')
    return "\n".join(parts)


def sources_html(sources: list[Mapping[str, Any]], *, status: str = "") -> str:
    """The sources panel: one block per passage with id ``src-n``; cited ones are marked and open."""
    head = f'<div class="sb-sources-status">{esc(status)}</div>' if status else ""
    if not sources:
        return f'<div class="sb-sources">{head}<p class="sb-empty">Sources appear here when you ask a question.</p></div>'
    blocks = []
    for src in sources:
        n = int(src["n"])
        cited = bool(src.get("cited"))
        score = src.get("score")
        meta = [esc(src.get("source"))]
        if src.get("page"):
            meta.append(f"p. {esc(src['page'])}")
        if isinstance(score, int | float):
            meta.append(f"score {score:.4f}")
        badge = '<span class="sb-badge">cited</span>' if cited else ""
        section = f'<div class="sb-src-section">{esc(src["section"])}</div>' if src.get("section") else ""
        blocks.append(
            f'<div class="sb-src{" sb-cited" if cited else ""}" id="src-{n}" data-n="{n}">'
            f'<div class="sb-src-head"><span class="sb-n">[{n}]</span> '
            f'<span class="sb-src-title">{esc(src.get("title") or src.get("source"))}</span>{badge}</div>'
            f"{section}"
            f'<div class="sb-src-meta">{" · ".join(meta)}</div>'
            f'<details{" open" if cited else ""}><summary>passage</summary>'
            f'<div class="sb-passage">{esc(src.get("text"))}</div></details>'
            f"</div>"
        )
    return f'<div class="sb-sources">{head}{"".join(blocks)}</div>'


def passages_to_sources(passages: Iterable[Any], start: int = 1) -> list[dict[str, Any]]:
    """Turn retrieved :class:`rag.types.Passage` objects (or their ``to_json()`` dicts) into sources."""
    out = []
    for n, p in enumerate(passages, start=start):
        d = p.to_json() if hasattr(p, "to_json") else dict(p)
        out.append(
            {
                "n": n,
                "chunk_id": d.get("id") or d.get("chunk_id"),
                "title": d.get("title"),
                "section": d.get("section"),
                "page": d.get("page"),
                "source": d.get("source"),
                "score": d.get("score"),
                "text": d.get("text", ""),
                "cited": False,
            }
        )
    return out


def merge_citations(sources: list[dict[str, Any]], citations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mark the cited sources (by citation number, else chunk id); add cited passages that are missing."""
    by_n = {s["n"]: s for s in sources}
    by_id = {s.get("chunk_id"): s for s in sources if s.get("chunk_id")}
    merged = [dict(s) for s in sources]
    index = {id(s): i for i, s in enumerate(sources)}
    for c in citations:
        target = by_n.get(c.get("n"))
        if target is not None and c.get("chunk_id") and target.get("chunk_id") not in (None, c.get("chunk_id")):
            target = by_id.get(c.get("chunk_id"))
        if target is None:
            merged.append({"score": None, **{k: c.get(k) for k in ("n", "chunk_id", "title", "section", "page",
                                                                   "source", "text")}, "cited": True})
            continue
        merged[index[id(target)]]["cited"] = True
    return sorted(merged, key=lambda s: int(s["n"]))


def answer_turn(question: str, answer: Mapping[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any]:
    """A finished chat turn, the one format the Chat tab shows and both the tab and ``studybot chat`` save:
    ``answer`` is :meth:`rag.answer.Answer.to_json`, ``sources`` the passages shown for it
    (:func:`passages_to_sources`), marked cited here."""
    return {"question": question, "standalone": answer.get("question") or question,
            "answer": answer.get("answer", ""), "quotes": answer.get("quotes", []),
            "explanation": answer.get("explanation", ""), "refused": bool(answer.get("refused")),
            "timings": answer.get("timings", {}), "missing_terms": answer.get("missing_terms", []),
            "sources": merge_citations(sources, answer.get("citations", []))}


def format_time(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def duration(seconds: float) -> str:
    """"45 s", "3 min 20 s", "2 h 05 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min {seconds % 60:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class ProgressText:
    """The line a progress bar shows: "embedding 1,200/20,000 · about 3 min 20 s left", the time left from
    the rate since the stage's first call (no estimate until some work is done)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._start: dict[str, tuple[float, int]] = {}

    def __call__(self, stage: str, done: int, total: int) -> str:
        now = self._clock()
        t0, d0 = self._start.setdefault(stage, (now, done))
        text = f"{stage} {done:,}/{total:,}"
        if total > done > d0 and now > t0:
            text += f" · about {duration((total - done) * (now - t0) / (done - d0))} left"
        return text


def documents_rows(docs: Iterable[Any]) -> list[list[Any]]:
    """Rows for the library table: title, file, kind, chunks, last ingested (plain values; the table escapes)."""
    return [[d.title, d.source, d.kind, d.chunks, format_time(d.ingested_at)] for d in docs]


def conversation_markdown(turns: Sequence[Mapping[str, Any]]) -> str:
    """The conversation as a Markdown document with each answer's sources (for the export download)."""
    lines = ["# studybot conversation", "", f"_Exported {time.strftime('%Y-%m-%d %H:%M')}_", ""]
    for i, t in enumerate(turns, start=1):
        lines += [f"## {i}. {t.get('question', '').strip()}", ""]
        if t.get("error"):
            lines += [f"**Error:** {t['error']}", ""]
            continue
        if t.get("refused"):
            lines += ["_Not answered: the handbooks do not cover this question._", ""]
        answer = (t.get("answer") or "").strip()
        if answer:
            lines += [answer, ""]
        cited = [s for s in t.get("sources", []) if s.get("cited")]
        if cited:
            lines += ["**Sources**", ""]
            for s in cited:
                lines.append(f"- [{s['n']}] {source_line(s)}")
                quoted = "\n".join("  > " + ln for ln in str(s.get("text", "")).strip().splitlines())
                lines += [quoted, ""]
    return "\n".join(lines).rstrip() + "\n"


def guide_markdown(guide: Mapping[str, Any]) -> str:
    """A study guide (``StudyGuide.to_json()``) as a Markdown page: key terms, summary, likely questions, each
    line ending in its ``[n]``, then the numbered sources. Document text is escaped for Markdown."""

    def line(entry: Mapping[str, Any]) -> str:
        return f"{md_escape(str(entry['text']))} [{int(entry['n'])}]"

    out = [f"# Study guide: {md_escape(str(guide.get('topic', '')))}", ""]
    if guide.get("terms"):
        out += ["## Key terms", ""] + [f"- **{md_escape(str(t['term']))}**: {line(t)}" for t in guide["terms"]] + [""]
    if guide.get("summary"):
        out += ["## Summary", ""] + [f"- {line(s)}" for s in guide["summary"]] + [""]
    if guide.get("questions"):
        out += ["## Likely interview questions", ""]
        out += [f"{i}. {line(q)}" for i, q in enumerate(guide["questions"], start=1)] + [""]
    cited = {int(e["n"]) for key in ("terms", "summary", "questions") for e in guide.get(key) or []}
    sources = [c for c in guide.get("citations") or [] if int(c.get("n", 0)) in cited]
    if sources:
        out += ["## Sources", ""] + [f"{int(c['n'])}. {md_escape(source_line(c))}" for c in sources] + [""]
    if guide.get("dropped"):
        out.append(f"_{int(guide['dropped'])} generated line(s) were dropped: their passage did not state them._")
    return "\n".join(out).rstrip() + "\n"
