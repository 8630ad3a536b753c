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
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rag.citations import CITATION, numbers
from rag.quiz import GradeResult
from rag.types import Chunk, Citation, Passage

REFUSED_NOTE = "**Not answered:** the handbooks do not cover this question."
# What a student waits on, said on screen: the stages of an answer (rag.answer.events.Stage) and, before them, the
# Chat tab's own: a question waiting behind the student's previous one, the model not free yet, a follow-up
# being rewritten to stand alone. Shown as the last line of the answer's message, the one line that changes.
STAGE_TEXT = {
    "waiting": "Waiting: your previous question is answered first…",
    "queued": "Waiting for the model…",
    "reading": "Reading your follow-up against the conversation…",
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


def source_anchor(n: int, turn: int | None = None) -> str:
    """The id of source ``n`` in the sources panel: ``src-n``, or ``src-<turn>-<n>`` for a chat turn's own
    sources (each turn of a conversation keeps its own, so an older answer's ``[n]`` still opens its source)."""
    return f"src-{n}" if turn is None else f"src-{turn}-{n}"


def link_citations(text: str, valid: Iterable[int] | None = None, *, links: bool = True,
                   turn: int | None = None) -> str:
    """Markdown for an answer: HTML-escaped, brackets neutralised, ``$math$`` as text (:func:`math_markdown`)
    and each ``[n]`` linked to its source (:func:`source_anchor`: ``#src-n``, or ``#src-<turn>-<n>``).

    ``valid``: the citation numbers that have a source; other numbers stay plain text. ``links=False``
    renders citations as plain ``[n]``.
    """
    out: list[str] = []
    pos = 0
    text = text or ""
    for m in _CODE.finditer(text):
        out.append(_link_plain(text[pos : m.start()], valid, links, turn))
        out.append(m.group(0))
        pos = m.end()
    out.append(_link_plain(text[pos:], valid, links, turn))
    return "".join(out)


def _link_plain(text: str, valid: Iterable[int] | None, links: bool, turn: int | None = None) -> str:
    allowed = None if valid is None else set(valid)
    out: list[str] = []
    pos = 0
    for m in CITATION.finditer(text):
        out.append(math_markdown(text[pos : m.start()]))
        nums = numbers(m.group(1))
        parts = []
        for n in nums:
            if links and (allowed is None or n in allowed):
                parts.append(f'[\\[{n}\\]](#{source_anchor(n, turn)} "source {n}")')
            else:
                parts.append(f"\\[{n}\\]")
        out.append("".join(parts))
        pos = m.end()
    out.append(math_markdown(text[pos:]))
    return "".join(out)


def math_markdown(text: str) -> str:
    """Plain text (no code) for a Markdown message: HTML-escaped, brackets neutralised, and ``$...$`` math
    as its readable text in italics (``$ k=5 $`` -> *k=5*, ``$\\lambda$`` -> *λ*), never half-raw LaTeX."""
    out: list[str] = []
    pos = 0
    for m in _MATH.finditer(text):
        out.append(_md_escape_brackets(esc(text[pos : m.start()])))
        shown = re.sub(r"([\\`*_{}\[\]#|~])", r"\\\1", _tex(m.group(1)))
        out.append(f"*{esc(shown)}*" if shown.strip() else "")
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
    turn: int | None = None,
) -> str:
    """The chat message for an answer's text (Markdown with escaped text). While ``streaming``, the text so
    far and, on a line of its own after it, the stage the answer waits on (:func:`stage_line`): the text
    only grows, the stage line is the one line that changes. A refused answer is one sentence, the note
    (the model's own refusal sentence is not repeated under it), and the question's terms no handbook
    mentions."""
    body = link_citations(text.strip(), valid, links=links, turn=turn) if text and text.strip() else ""
    if streaming:
        waiting = stage_line(stage)
        return f"{body}\n\n{waiting}" if body else waiting
    if refused:
        missing = [_md_escape_brackets(esc(t)) for t in missing_terms]
        return REFUSED_NOTE + (f"\n\n_No handbook mentions {', '.join(missing)}._" if missing else "")
    return body


def stage_line(stage: str | None) -> str:
    """The line that says what an unfinished answer waits on (italic Markdown)."""
    return f"_{STAGE_TEXT.get(stage or '', STAGE_TEXT['retrieving'])}_"


_QUOTE_MARK = re.compile(r"^[ \t]{0,3}>[ \t]?")


def _unquoted(text: str) -> str:
    """A handbook's own ``>`` block-quote markers taken off the lines of a quote: the quote is shown as a
    block quote already, so they would show as a literal ``>``. Lines of a code block keep theirs unless the
    whole block is quoted."""
    lines = text.split("\n")
    fence: bool | None = None  # inside a code block: whether its opening fence was quoted
    for i, ln in enumerate(lines):
        quoted = bool(_QUOTE_MARK.match(ln))
        bare = _QUOTE_MARK.sub("", ln) if quoted else ln
        if re.match(r"^[ \t]{0,3}(```|~~~)", bare):
            fence = None if fence is not None else quoted
        elif fence is False:  # an unquoted code block: its lines as they are
            continue
        elif quoted and fence is None:  # a quoted list's introduction joined to its item: the item on its line
            bare = _JOINED_ITEM.sub("\n", bare)
        lines[i] = bare
    return "\n".join(lines)


_JOINED_ITEM = re.compile(r"[ \t]+>[ \t]?(?=(?:[-*+]|\d{1,3}[.)])[ \t])")


def quotes_markdown(quotes: Sequence[Mapping[str, Any]], valid: Iterable[int] | None = None, *,
                    links: bool = True, turn: int | None = None) -> str:
    """An answer's quotes (``Quote.to_json()``) as Markdown block quotes: the handbook's own words (its
    Markdown kept, its HTML escaped, its math as text, its own ``>`` markers dropped), each with its linked
    marker."""
    from rag.answer.select import marked

    blocks = []
    for q in quotes:
        text = _unquoted(str(q.get("text") or ""))
        body = link_citations(marked(text, int(q["citation"]["n"])), valid, links=links, turn=turn)
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


def grade_feedback(grade: GradeResult, options: Sequence[str] = ()) -> str:
    """The feedback on a graded answer: the verdict, the right answer (with its letter A-D when the item's
    ``options`` are given), the explanation (not when it is the quoted sentence itself) and the quote with
    its source (plain text, one part a line)."""
    opening = {"correct": "Correct.", "partial": "Partly right.",
               "incorrect": "Not quite." if grade.answered else "No answer given.",
               "revealed": "Here is the back of the card."}[grade.verdict]
    parts = [opening]
    if grade.verdict != "correct" or not grade.mcq:
        letter = f"{LETTERS[list(options).index(grade.reference)]}) " if grade.reference in options[:4] else ""
        parts.append(f"Answer: {letter}{grade.reference}")
    if grade.explanation and not same_text(grade.explanation, grade.quote):
        parts.append(grade.explanation)
    parts.append(f'The handbook says: "{grade.quote}" — {source_line(grade.citation)}')
    return "\n".join(parts)


EMPTY_SOURCES = "Sources appear here when you ask a question."


def source_blocks(sources: Sequence[Mapping[str, Any]], *, turn: int | None = None) -> str:
    """One block per passage (id :func:`source_anchor`), in retrieval order, closest first: where it is, a
    "cited" badge when the answer quotes it, and the passage (its Markdown rendered, :func:`markdown_html`)
    folded until its ``[n]`` is clicked, so nothing in the panel moves while the answer is written."""
    blocks = []
    for src in sources:
        n = int(src["n"])
        cited = bool(src.get("cited"))
        meta = [esc(src.get("source"))]
        if src.get("page"):
            meta.append(f"p. {esc(src['page'])}")
        badge = '<span class="sb-badge">cited</span>' if cited else ""
        section = f'<div class="sb-src-section">{esc(src["section"])}</div>' if src.get("section") else ""
        blocks.append(
            f'<div class="sb-src{" sb-cited" if cited else ""}" id="{source_anchor(n, turn)}" data-n="{n}">'
            f'<div class="sb-src-head"><span class="sb-n">[{n}]</span> '
            f'<span class="sb-src-title">{esc(src.get("title") or src.get("source"))}</span>{badge}</div>'
            f"{section}"
            f'<div class="sb-src-meta">{" · ".join(meta)}</div>'
            f"<details><summary>passage</summary>"
            f'<div class="sb-passage sb-md">{markdown_html(str(src.get("text") or ""))}</div></details>'
            f"</div>"
        )
    return "".join(blocks)


def sources_html(sources: Sequence[Mapping[str, Any]], *, status: str = "", turn: int | None = None,
                 empty: str = EMPTY_SOURCES) -> str:
    """The sources panel for one list of passages (:func:`source_blocks`); ``empty``: what it says when
    there is none."""
    head = f'<div class="sb-sources-status">{esc(status)}</div>' if status else ""
    body = source_blocks(sources, turn=turn) or f'<p class="sb-empty">{esc(empty)}</p>'
    return f'<div class="sb-sources">{head}{body}</div>'


def conversation_sources_html(sections: Sequence[Mapping[str, Any]], *, current: int, status: str = "",
                              busy: bool = False, conversation: str = "") -> str:
    """The sources panel of a conversation: each turn's own passages (``sections``: ``{turn, question,
    sources, summary, empty}``, anchors ``src-<turn>-<n>``), the ``current`` turn's shown and the others
    hidden until one of their ``[n]`` is clicked (the page's script shows that turn's). ``status``: the
    line about the answer under way or just given; ``busy``: whether one is under way (``data-busy``);
    ``conversation``: its id (``data-conv``: the page keeps the passages a student opened open, per
    conversation, when the panel is redrawn)."""
    head = f'<div class="sb-sources-status">{esc(status)}</div>' if status else ""
    parts = []
    for sec in sections:
        t = int(sec["turn"])
        title = ""
        if len(sections) > 1:
            summary = f" · {esc(sec['summary'])}" if sec.get("summary") else ""
            title = f'<div class="sb-turn-q">Question {t}: “{esc(sec.get("question"))}”{summary}</div>'
        empty = sec.get("empty", EMPTY_SOURCES)
        body = source_blocks(sec.get("sources") or [], turn=t) or (
            f'<p class="sb-empty">{esc(empty)}</p>' if empty else "")
        hidden = "" if t == current else " hidden"
        parts.append(f'<section class="sb-turn-src" data-turn="{t}"{hidden}>{title}{body}</section>')
    if not parts:
        parts.append(f'<p class="sb-empty">{esc(EMPTY_SOURCES)}</p>')
    return (f'<div class="sb-sources" data-busy="{int(busy)}" data-current="{int(current)}" '
            f'data-conv="{esc(conversation)}">{head}{"".join(parts)}</div>')


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


# --- quiz, review and progress ---------------------------------------------------------------------------
LETTERS = "ABCD"
# A few LaTeX commands as the characters they stand for (math in the handbooks is shown as text, not typeset).
_TEX = {"\\lambda": "λ", "\\alpha": "α", "\\beta": "β", "\\gamma": "γ", "\\delta": "δ", "\\epsilon": "ε",
        "\\theta": "θ", "\\mu": "μ", "\\sigma": "σ", "\\Sigma": "Σ", "\\sum": "Σ", "\\pi": "π", "\\eta": "η",
        "\\rho": "ρ", "\\tau": "τ", "\\phi": "φ", "\\omega": "ω", "\\nabla": "∇", "\\partial": "∂",
        "\\infty": "∞", "\\cdot": "·", "\\times": "×", "\\leq": "≤", "\\le": "≤", "\\geq": "≥", "\\ge": "≥",
        "\\neq": "≠", "\\approx": "≈", "\\in": "∈", "\\sqrt": "√", "\\to": "→", "\\rightarrow": "→",
        "\\log": "log", "\\exp": "exp", "\\max": "max", "\\min": "min", "\\mathbb{E}": "E", "\\,": " ",
        "\\;": " ", "\\ ": " ", "\\left": "", "\\right": "", "\\|": "‖"}
_TEX_CMD = re.compile("|".join(re.escape(k) + (r"(?![A-Za-z])" if k[-1].isalpha() else "")
                                for k in sorted(_TEX, key=len, reverse=True)))
# $...$ (or $$...$$) on one line; an amount of money followed by a space ("$5 and $10") is not math.
_MATH = re.compile(r"\$\$?(?!\d[\d.,]*\s)([^$\n]{1,200}?)\$\$?")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])|(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.S | re.M)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")


def _tex(text: str) -> str:
    """Math as readable text: the commands above as their characters, braces dropped."""
    text = _TEX_CMD.sub(lambda m: _TEX[m.group(0)], text)
    text = re.sub(r"\\(?:frac)\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\(?:text|mathrm|mathbf|operatorname|hat|bar|tilde)\{([^{}]*)\}", r"\1", text)
    return re.sub(r"[{}]", "", text).strip()


def inline_markdown_html(text: str) -> str:
    """One line of document or model Markdown as safe HTML: every character escaped, then only these
    markers turned into tags: ``**bold**``, ``*italic*``/``_italic_``, ```code```, ``$math$`` (as text with
    its symbols); links and images keep their text only; a stray ``**`` is dropped (never shown raw)."""
    out: list[str] = []
    pos = 0
    tokens = re.compile(f"{_CODE_SPAN.pattern}|{_MATH.pattern}")
    for m in tokens.finditer(text):
        out.append(_inline_plain(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{esc(m.group(1))}</code>")
        else:
            out.append(f'<span class="sb-math"><i>{esc(_tex(m.group(2)))}</i></span>')
        pos = m.end()
    out.append(_inline_plain(text[pos:]))
    return "".join(out)


def _inline_plain(text: str) -> str:
    text = esc(_LINK.sub(r"\1", text))
    text = _STRONG.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return text.replace("**", "").replace("__", "")


def markdown_html(text: str) -> str:
    """Document or model Markdown (a passage, a quote, an explanation) as safe HTML: fenced code as a code
    block (escaped, verbatim), headings in bold, bullet and numbered lists, ``>`` quotes, tables as tables,
    other lines as paragraphs; inline markers by :func:`inline_markdown_html`. Nothing of the text can open
    a tag: it is escaped before any tag is added."""
    text = str(text or "").replace("\r\n", "\n")
    out: list[str] = []
    pos = 0
    for m in _FENCE.finditer(text):
        out.append(_blocks(text[pos:m.start()]))
        out.append(f'<pre class="sb-code"><code>{esc(m.group(2).rstrip())}</code></pre>')
        pos = m.end()
    out.append(_blocks(text[pos:]))
    return "".join(out)


def _blocks(text: str) -> str:
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    quote: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{'<br>'.join(para)}</p>")
        if items:
            out.append(f"<ul>{''.join(f'<li>{i}</li>' for i in items)}</ul>")
        if quote:
            out.append(f"<blockquote>{'<br>'.join(quote)}</blockquote>")
        if table:
            out.append(_table(table))
        for part in (para, items, quote, table):
            part.clear()

    for ln in text.split("\n"):
        kind = ("blank" if not ln.strip() else "heading" if _HEADING.match(ln)
                else "rule" if re.fullmatch(r"\s*([-*_])(\s*\1){2,}\s*", ln)
                else "table" if ln.lstrip().startswith("|") else "item" if _BULLET.match(ln)
                else "quote" if ln.lstrip().startswith(">")
                else "more" if items and ln.startswith((" ", "\t")) else "text")
        current = {"text": para, "item": items, "quote": quote, "table": table, "more": items}.get(kind)
        if kind != "more" and not current:  # a new block starts: close the open one
            flush()
        if kind == "heading":
            out.append(f'<p class="sb-md-h"><strong>{inline_markdown_html(_HEADING.sub("", ln).strip(" #"))}'
                       "</strong></p>")
        elif kind == "rule":
            out.append("<hr>")
        elif kind == "table":
            table.append(ln)
        elif kind == "item":
            items.append(inline_markdown_html(_BULLET.sub("", ln)))
        elif kind == "quote":
            quote.append(inline_markdown_html(ln.lstrip()[1:].strip()))
        elif kind == "more":
            items[-1] += " " + inline_markdown_html(ln.strip())
        elif kind == "text":
            para.append(inline_markdown_html(ln.strip()))
    flush()
    return "".join(out)


def _table(lines: list[str]) -> str:
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
    if not rows:
        return ""
    head, body = rows[0], rows[1:]
    th = "".join(f"<th>{inline_markdown_html(c)}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{inline_markdown_html(c)}</td>" for c in r) + "</tr>" for r in body)
    return f'<table class="sb-md-table"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def markdown_plain(text: str) -> str:
    """Markdown as plain text, markers removed (for places that show text only, such as a radio's labels):
    ``**Bagging**: trains`` -> ``Bagging: trains``, ``$\\lambda$`` -> ``λ``; not escaped."""
    text = _CODE_SPAN.sub(r"\1", str(text or ""))
    text = _MATH.sub(lambda m: _tex(m.group(1)), text)
    text = _LINK.sub(r"\1", text)
    text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EM.sub(lambda m: m.group(1) or m.group(2), text)
    return " ".join(text.replace("**", "").replace("__", "").split())


def option_label(i: int, option: str) -> str:
    """An MCQ option as shown everywhere (quiz, review, feedback): ``A) its text`` (plain text)."""
    return f"{LETTERS[i] if 0 <= i < len(LETTERS) else i + 1}) {markdown_plain(option)}"


def same_text(a: str, b: str) -> bool:
    """Whether two snippets say the same (one contains the other once markers, case and spacing are gone):
    an explanation that is the quoted sentence is shown once."""
    x, y = (re.sub(r"\W+", " ", markdown_plain(s)).strip().lower() for s in (a, b))
    return bool(x and y) and (x in y or y in x)


def relative_time(when: datetime | None, now: datetime | None = None, tz: str | None = None) -> str:
    """When a card is due, as a student says it: "now", "in 10 minutes", "in 3 hours (at 16:25)",
    "tomorrow at 09:00", "on Friday at 09:00", "in 12 days (Mon 14 Dec)". Clock times and days are in the
    time zone ``tz`` (an IANA name, e.g. the browser's); without a valid one, relative wording only."""
    if when is None:
        return "never"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    zone = time_zone(tz)
    seconds = (when - now).total_seconds()
    if seconds <= 30:
        return "now"
    minutes = round(seconds / 60)
    if minutes < 60:
        return "in 1 minute" if minutes <= 1 else f"in {minutes} minutes"
    hours = seconds / 3600
    if zone is None:
        if hours < 36:
            return f"in {round(hours)} hour{'s' if round(hours) != 1 else ''}"
        days = round(hours / 24)
        return f"in {days} days"
    local, today = when.astimezone(zone), now.astimezone(zone).date()
    clock = f"{local:%H:%M}"
    days = (local.date() - today).days
    if days == 0:
        h = round(hours)
        return f"in {h} hour{'s' if h != 1 else ''} (today at {clock})"
    if days == 1:
        return f"tomorrow at {clock}"
    if days < 7:
        return f"on {local:%A} at {clock}"
    return f"in {days} days ({local:%a} {local.day} {local:%b})"


def time_zone(name: str | None) -> tzinfo | None:
    """The time zone of an IANA name (the browser's ``Intl`` time zone), or None for a missing or unknown one."""
    if not name or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def working_html(what: str, step: str, *, done: int = 0, total: int = 0, elapsed: float = 0.0,
                 note: str = "") -> str:
    """One progress display for a long job (a quiz, a study guide): what is being made, the step it is on
    ("Making question 2 of 5…"), a bar filled by ``done``/``total`` with a moving shimmer while the job
    works on the next step (so it never looks stuck at 0%), the seconds so far and, once a step is done,
    about how long is left."""
    pct = round(100 * min(done, total) / total) if total > 0 else 0
    bar = (f'<div class="sb-work-track" role="progressbar" aria-valuemin="0" aria-valuemax="{int(total)}" '
           f'aria-valuenow="{int(done)}" style="position:relative;height:10px;border-radius:5px;overflow:hidden;'
           'border:1px solid var(--border-color-primary);background:var(--background-fill-secondary)">'
           f'<div class="sb-work-fill" style="width:{pct}%;height:100%;background:var(--color-accent)"></div>'
           '<div class="sb-work-busy"></div></div>')
    timing = f"{duration(elapsed)} so far"
    if total > done > 0 and elapsed > 0:
        timing += f" · about {duration(elapsed / done * (total - done))} left"
    extra = f'<div class="sb-src-meta sb-work-note">{esc(note)}</div>' if note else ""
    return (f'<div class="sb-work" role="status" aria-live="polite" data-done="{int(done)}" data-total="{int(total)}">'
            f'<div class="sb-work-what" style="font-weight:600">{esc(what)}</div>'
            f'<div class="sb-work-step">{esc(step)}</div>{bar}'
            f'<div class="sb-src-meta sb-work-time">{esc(timing)}</div>{extra}</div>')
