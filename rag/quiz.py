"""Quiz questions on demand: generate, validate, grade and export.

One item is generated from one passage (the passage the item cites, chosen here - never taken from the
model), as a JSON object constrained by a JSON schema (``llm.complete(..., json_schema=...)``), so the reply
always parses. Every item is validated before it is shown:

* its answer is supported by its cited passage (:func:`support_scores`: embedding similarity of
  question + answer to the passage, or key-term overlap of the answer with the passage);
* MCQ: exactly 4 options, distinct after normalisation, the answer among them (options are built here
  from the answer and three distractors, then shuffled);
* no near-duplicate of an earlier question of the same :class:`QuizSession` (cosine > 0.9).

A failing item is regenerated from another passage (bounded: :data:`MAX_ATTEMPTS_PER_ITEM`) and counted
in ``QuizResult.dropped``. Short answers are graded by embedding similarity plus key-term recall against
the reference (:func:`grade_answer`), which is fast and deterministic; the feedback quotes the passage.

The thresholds below were measured on the bundled corpus with ``bench/quiz.py`` (see the README).
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rag import prompts
from rag.errors import QueryError
from rag.retrieval import tokenize
from rag.types import Chunk, Passage

QuizType = Literal["mcq", "short", "flashcard"]
QUIZ_TYPES: tuple[str, ...] = ("mcq", "short", "flashcard")
MAX_ITEMS = 20

# --- measured thresholds ---------------------------------------------------------------------------
# Best dense similarity of a topic below this = the handbooks do not cover it. Measured: 25 on-corpus
# topics scored 0.32-0.68, 15 off-corpus ones ("medieval French poetry", "cooking pasta", ...) 0.11-0.23.
TOPIC_MIN_SIMILARITY = 0.28
# A passage is used for a topic quiz only when its dense similarity to the topic is at least this.
PASSAGE_MIN_SIMILARITY = 0.28
# Support of an item by its passage (see support_scores / bench/quiz.py --dump).
SUPPORT_MIN_SIMILARITY = 0.45
SUPPORT_MIN_OVERLAP = 0.6
DUPLICATE_SIMILARITY = 0.9
# Grading of free-text answers: score = 0.6 x cosine(answer, reference) + 0.4 x key-term recall.
GRADE_CORRECT = 0.50
GRADE_PARTIAL = 0.33

MAX_ATTEMPTS_PER_ITEM = 2
MAX_PASSAGE_CHARS = 1200
MIN_PASSAGE_CHARS = 150
# Sections that are reading lists, link collections or chatty endings: nothing to quiz on.
_SKIP_SECTION = re.compile(
    r"recommended books|additional resources|next steps|table of contents|further reading|references\b",
    re.I,
)

_TOKENS = {"mcq": 300, "short": 220, "flashcard": 170}


class QuizError(QueryError):
    """A quiz cannot be made (unknown topic, bad request); ``str(err)`` is one sentence for the user."""


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def citation_of(chunk: Chunk) -> dict[str, Any]:
    return {
        "chunk_id": chunk.id,
        "source": chunk.source,
        "title": chunk.title,
        "section": chunk.section,
        "page": chunk.page,
        "text": chunk.text,
    }


@dataclass
class QuizItem:
    type: str
    question: str
    answer: str
    explanation: str
    options: list[str]
    citation: dict[str, Any]
    support: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "explanation": self.explanation,
            "citation": dict(self.citation),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuizItem:
        return cls(
            type=str(data.get("type", "short")),
            question=str(data["question"]),
            answer=str(data["answer"]),
            explanation=str(data.get("explanation", "")),
            options=[str(o) for o in data.get("options") or []],
            citation=dict(data.get("citation") or {}),
        )

    @property
    def answer_index(self) -> int | None:
        try:
            return self.options.index(self.answer)
        except ValueError:
            return None


@dataclass
class QuizResult:
    topic: str | None
    type: str
    items: list[QuizItem]
    dropped: int = 0
    generated: int = 0  # model calls (valid + dropped)
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)  # why each dropped item was dropped
    coverage: tuple[int, int] = (0, 0)  # (sections quizzed in the session so far, quizzable sections)

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "type": self.type,
            "items": [i.to_json() for i in self.items],
            "dropped": self.dropped,
        }


@dataclass
class GradeResult:
    verdict: str  # "correct" | "partial" | "incorrect" | "revealed" (flashcard turned over, no answer)
    correct: bool
    score: float
    feedback: str
    quote: str
    reference: str
    citation: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "correct": self.correct,
            "score": round(self.score, 3),
            "feedback": self.feedback,
            "quote": self.quote,
            "reference": self.reference,
            "citation": self.citation,
        }


def section_key(chunk: Chunk) -> str:
    """The coverage unit: a document's top-level section ("file::Section 8 — Ensemble Methods")."""
    top = chunk.section.split(" > ")[0].strip() if chunk.section else "(start)"
    return f"{chunk.source}::{top}"


class QuizSession:
    """What one user has been quizzed on: used sections (coverage) and chunks, earlier questions (so
    "more questions" does not repeat one), and the random generator for passage and option order."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.used_sections: dict[str, int] = {}
        self.used_chunks: set[str] = set()
        self.last_section: str | None = None
        self.questions: list[str] = []
        self.question_vectors: list[list[float]] = []
        self.items: list[QuizItem] = []

    def record(self, item: QuizItem, chunk: Chunk, vector: list[float]) -> None:
        key = section_key(chunk)
        self.used_sections[key] = self.used_sections.get(key, 0) + 1
        self.used_chunks.add(chunk.id)
        self.last_section = key
        self.questions.append(item.question)
        self.question_vectors.append(vector)
        self.items.append(item)

    def coverage(self, chunks: dict[str, Chunk]) -> tuple[int, int]:
        """(sections quizzed so far, quizzable sections in the index)."""
        keys = {section_key(c) for c in chunks.values() if quizzable(c)}
        return len(keys & set(self.used_sections)), len(keys)


def quizzable(chunk: Chunk) -> bool:
    return len(chunk.text.strip()) >= MIN_PASSAGE_CHARS and not _SKIP_SECTION.search(chunk.section or "")


# ----------------------------------------------------------------------------------------------------
# text helpers
# ----------------------------------------------------------------------------------------------------
_NORM = re.compile(r"[^a-z0-9]+")
_ARTICLE = re.compile(r"^(?:the|a|an) ")


def normalize(text: str) -> str:
    """Lower case, punctuation and leading articles removed, spaces collapsed (for option comparison)."""
    out = _NORM.sub(" ", (text or "").lower()).strip()
    return _ARTICLE.sub("", out)


def key_terms(text: str) -> set[str]:
    """Stemmed content words (the retriever's tokenizer: stop words dropped, light stemming)."""
    return set(tokenize(text or ""))


def term_overlap(text: str, reference: str) -> float:
    """Share of the key terms of ``text`` that occur in ``reference`` (1.0 when ``text`` has none)."""
    terms = key_terms(text)
    if not terms:
        return 0.0
    return len(terms & key_terms(reference)) / len(terms)


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=False)))  # vectors are normalised


_SENT = re.compile(r"(?<=[.!?])\s+|\n+")
_PASSAGE_REF = re.compile(
    r"^(?:according to|based on|in|from) (?:the|this) (?:passage|text|handbook)s?,?\s*", re.I
)


def clean_field(text: Any) -> str:
    out = re.sub(r"\s+", " ", str(text or "")).strip()
    out = _PASSAGE_REF.sub("", out)
    return out[:1].upper() + out[1:] if out else out


def whole_sentences(text: str) -> str:
    """Drop a trailing unfinished sentence (a reply cut off by the schema's maxLength)."""
    if not text or text[-1] in ".!?)\"'":
        return text
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    return text[: cut + 1] if cut > 0 else text


def best_quote(passage: str, answer: str, max_chars: int = 320) -> str:
    """The passage sentence that shares most key terms with the answer (the quote shown as feedback)."""
    sentences = [s.strip(" -*#|\t") for s in _SENT.split(passage or "") if len(s.strip()) > 20]
    if not sentences:
        return (passage or "").strip()[:max_chars]
    terms = key_terms(answer)
    best = max(sentences, key=lambda s: (len(terms & key_terms(s)), -abs(len(s) - 160)))
    return best if len(best) <= max_chars else best[: max_chars - 1].rstrip() + "…"


# ----------------------------------------------------------------------------------------------------
# schemas and prompts
# ----------------------------------------------------------------------------------------------------
def _s(min_len: int, max_len: int) -> dict[str, Any]:
    return {"type": "string", "minLength": min_len, "maxLength": max_len}


SCHEMAS: dict[str, dict[str, Any]] = {
    "mcq": {
        "type": "object",
        "properties": {
            "question": _s(10, 180),
            "answer": _s(1, 90),
            # Four asked, three used: a small model often repeats the answer or itself in one of them.
            "distractors": {"type": "array", "items": _s(1, 90), "minItems": 3, "maxItems": 4},
            "explanation": _s(10, 220),
        },
        "required": ["question", "answer", "distractors", "explanation"],
    },
    "short": {
        "type": "object",
        "properties": {"question": _s(10, 180), "answer": _s(2, 200), "explanation": _s(10, 220)},
        "required": ["question", "answer", "explanation"],
    },
    "flashcard": {
        "type": "object",
        "properties": {"question": _s(2, 120), "answer": _s(2, 240)},
        "required": ["question", "answer"],
    },
}


def quiz_messages(qtype: str, chunk: Chunk, topic: str | None, avoid: Sequence[str] = ()) -> list[dict[str, str]]:
    text = chunk.text.strip()
    if len(text) > MAX_PASSAGE_CHARS:
        text = text[:MAX_PASSAGE_CHARS].rsplit(" ", 1)[0] + " …"
    focus = f', about "{topic.strip()[:80]}"' if topic else ""
    avoid_txt = ""
    if avoid:
        avoid_txt = "\nDo not repeat these questions; ask about something else:\n" + "\n".join(
            f"- {q}" for q in avoid[-3:]
        )
    user = prompts.render(
        prompts.load(f"quiz_{qtype}"),
        title=chunk.title,
        section=chunk.section or "(start)",
        text=text,
        focus=focus,
        avoid=avoid_txt,
    )
    return [{"role": "system", "content": prompts.load("quiz_system")}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------
def support_scores(item: QuizItem, embedder: Any, passage: str) -> dict[str, float]:
    """How well the cited passage supports the item: embedding similarities and key-term overlap."""
    qa = f"{item.question} {item.answer}"
    vecs = embedder.embed([qa, item.answer, passage, item.question])
    return {
        "sim_qa": round(_cos(vecs[0], vecs[2]), 4),
        "sim_answer": round(_cos(vecs[1], vecs[2]), 4),
        "overlap": round(term_overlap(item.answer, passage), 4),
        "sim_q_answer": round(_cos(vecs[3], vecs[1]), 4),
    }


def is_supported(scores: dict[str, float]) -> bool:
    return scores["sim_qa"] >= SUPPORT_MIN_SIMILARITY or scores["overlap"] >= SUPPORT_MIN_OVERLAP


_BAD_OPTION = re.compile(r"^(?:all|none|both|neither) of (?:the )?(?:above|these|them)$")


def check_options(item: QuizItem) -> str | None:
    """Why the MCQ options are unusable (None when they are fine)."""
    if len(item.options) != 4:
        return f"MCQ needs exactly 4 distinct options, got {len(item.options)}"
    norm = [normalize(o) for o in item.options]
    if any(not n for n in norm):
        return "an option is empty"
    if len(set(norm)) != 4:
        return "options are not distinct"
    if item.answer not in item.options:
        return "the answer is not among the options"
    if any(_BAD_OPTION.match(n) for n in norm):
        return 'an option is "all/none of the above"'
    return None


def check_item(item: QuizItem) -> str | None:
    """Shape checks that need no embedder (None when the item is fine)."""
    if len(item.question) < 8 or not re.search(r"[A-Za-z]", item.question):
        return "the question is empty or too short"
    if not normalize(item.answer):
        return "the answer is empty"
    if item.type == "mcq":
        return check_options(item)
    if item.type in ("short", "flashcard") and normalize(item.answer) == normalize(item.question):
        return "the answer repeats the question"
    return None


def parse_item(raw: str, qtype: str, chunk: Chunk, rng: random.Random) -> QuizItem:
    """Turn the model's JSON into an item (options shuffled here); ValueError if it is not usable JSON."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    question = clean_field(data.get("question"))
    answer = clean_field(data.get("answer"))
    options: list[str] = []
    if qtype == "mcq":
        distractors = data.get("distractors")
        if not isinstance(distractors, list):
            raise ValueError("no distractors list")
        options = [answer]
        for d in distractors:  # the first three that differ from the answer and from each other
            text = clean_field(d)
            if len(options) < 4 and normalize(text) not in {normalize(o) for o in options}:
                options.append(text)
        rng.shuffle(options)
    return QuizItem(
        type=qtype,
        question=question,
        answer=answer,
        explanation=whole_sentences(clean_field(data.get("explanation"))),
        options=options,
        citation=citation_of(chunk),
    )


# ----------------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------------
Progress = Callable[[int, int, str], None]


@dataclass
class Attempt:
    """One model call while making a quiz (kept for bench/quiz.py and debugging)."""

    chunk_id: str
    raw: str
    item: QuizItem | None
    ok: bool
    reason: str
    seconds: float


class QuizMaker:
    def __init__(self, llm: Any, embedder: Any, retriever: Any, *, temperature: float = 0.3) -> None:
        self.llm = llm
        self.embedder = embedder
        self.retriever = retriever
        self.temperature = temperature
        self.attempts: list[Attempt] = []

    # -- passages --------------------------------------------------------------------------------
    def topic_chunks(self, topic: str, n: int) -> list[Chunk]:
        """Passages about the topic, best first; :class:`QuizError` when the handbooks do not cover it."""
        try:
            passages: list[Passage] = self.retriever.retrieve(topic, k=max(8, 2 * n + 4))
        except QueryError as exc:
            raise QuizError(str(exc).replace("question", "topic")) from exc
        sims = [float(p.extra.get("similarity", 0.0)) for p in passages]
        if not passages or max(sims) < TOPIC_MIN_SIMILARITY:
            raise QuizError(
                f'The handbooks have nothing on "{topic.strip()[:80]}", so there is no quiz to make: '
                "try a machine-learning topic such as regularization, gradient descent or random forests."
            )
        good = [p.chunk for p, s in zip(passages, sims, strict=True) if s >= PASSAGE_MIN_SIMILARITY]
        return [c for c in good if quizzable(c)] or good

    def spread_chunks(self, session: QuizSession) -> Callable[[], Chunk | None]:
        """A picker of passages across the corpus: an unused top-level section first, never the section of
        the previous question, and a fresh cycle once every section has been used."""
        by_section: dict[str, list[Chunk]] = {}
        for c in self.retriever.chunks.values():
            if quizzable(c):
                by_section.setdefault(section_key(c), []).append(c)
        if not by_section:
            raise QuizError("The index has no passages to quiz on: ingest some documents first.")
        tried: set[str] = set()

        def pick() -> Chunk | None:
            keys = [k for k in by_section if k != session.last_section and k not in tried] or [
                k for k in by_section if k not in tried
            ]
            if not keys:
                return None
            low = min(session.used_sections.get(k, 0) for k in keys)
            fresh = sorted(k for k in keys if session.used_sections.get(k, 0) == low)
            key = session.rng.choice(fresh)
            chunks = by_section[key]
            unused = [c for c in chunks if c.id not in session.used_chunks] or chunks
            tried.add(key)
            return session.rng.choice(unused)

        return pick

    # -- one item ----------------------------------------------------------------------------------
    def generate(self, qtype: str, chunk: Chunk, topic: str | None, session: QuizSession) -> Attempt:
        start = time.perf_counter()
        avoid = [i.question for i in session.items if i.citation.get("chunk_id") == chunk.id]
        messages = quiz_messages(qtype, chunk, topic, avoid)
        temperature = self.temperature if not avoid else max(self.temperature, 0.7)
        raw = self.llm.complete(
            messages, max_tokens=_TOKENS[qtype], temperature=temperature, json_schema=SCHEMAS[qtype]
        )
        try:
            item = parse_item(raw, qtype, chunk, session.rng)
        except (ValueError, TypeError) as exc:
            return Attempt(chunk.id, raw, None, False, f"unparseable reply ({exc})", time.perf_counter() - start)
        reason, vector = self.validate(item, chunk, session)
        attempt = Attempt(chunk.id, raw, item, reason is None, reason or "", time.perf_counter() - start)
        if reason is None:
            session.record(item, chunk, vector)
        return attempt

    def validate(self, item: QuizItem, chunk: Chunk, session: QuizSession) -> tuple[str | None, list[float]]:
        """(why the item is rejected or None, the question's embedding)."""
        reason = check_item(item)
        if reason:
            return reason, []
        item.support = support_scores(item, self.embedder, chunk.text)
        if not is_supported(item.support):
            return (
                f"answer not supported by its passage (similarity {item.support['sim_qa']:.2f}, "
                f"term overlap {item.support['overlap']:.2f})",
                [],
            )
        vector = self.embedder.embed_query(item.question)
        for earlier, vec in zip(session.questions, session.question_vectors, strict=True):
            sim = _cos(vector, vec)
            if sim > DUPLICATE_SIMILARITY:
                return f"near-duplicate of an earlier question ({sim:.2f}): {earlier[:60]}", []
        return None, vector

    # -- a quiz --------------------------------------------------------------------------------------
    def make(
        self,
        topic: str | None,
        n: int = 5,
        qtype: str = "mcq",
        *,
        session: QuizSession | None = None,
        progress: Progress | None = None,
    ) -> QuizResult:
        if qtype not in QUIZ_TYPES:
            raise QuizError(f"Unknown quiz type {qtype!r}: use one of {', '.join(QUIZ_TYPES)}.")
        if not 1 <= n <= MAX_ITEMS:
            raise QuizError(f"Ask for between 1 and {MAX_ITEMS} questions (got {n}).")
        topic = (topic or "").strip() or None
        session = session if session is not None else QuizSession()
        start = time.perf_counter()
        if topic:
            pool = self.topic_chunks(topic, n)
            # Unused passages first (best retrieval rank first), then the used ones again.
            order = [c for c in pool if c.id not in session.used_chunks] + [
                c for c in pool if c.id in session.used_chunks
            ]
            queue = list(order)

            def next_chunk() -> Chunk | None:
                if not queue:
                    queue.extend(order)  # every passage had its turn: go round again
                return queue.pop(0) if queue else None
        else:
            next_chunk = self.spread_chunks(session)

        items: list[QuizItem] = []
        dropped = 0
        generated = 0
        reasons: list[str] = []
        budget = n * MAX_ATTEMPTS_PER_ITEM
        while len(items) < n and generated < budget:
            chunk = next_chunk()
            if chunk is None:
                break
            if progress:
                progress(len(items), n, f"writing question {len(items) + 1} of {n}")
            attempt = self.generate(qtype, chunk, topic, session)
            self.attempts.append(attempt)
            generated += 1
            if attempt.ok and attempt.item is not None:
                items.append(attempt.item)
            else:
                dropped += 1
                reasons.append(attempt.reason)
        if progress:
            progress(len(items), n, "done")
        if not items:
            raise QuizError(
                f"No usable question came out of {generated} tries (each failed validation): try another "
                "topic or question type."
            )
        return QuizResult(topic, qtype, items, dropped, generated, time.perf_counter() - start, reasons,
                          session.coverage(self.retriever.chunks))


# ----------------------------------------------------------------------------------------------------
# grading
# ----------------------------------------------------------------------------------------------------
_LETTER = re.compile(r"^\s*\(?([a-dA-D1-4])[).:]?\s*$")


def mcq_choice(item: QuizItem, answer: str) -> str | None:
    """The option the user picked: the option text itself, or a letter A-D / number 1-4."""
    answer = (answer or "").strip()
    if answer in item.options:
        return answer
    m = _LETTER.match(answer)
    if m:
        ch = m.group(1).lower()
        idx = "abcd".index(ch) if ch in "abcd" else int(ch) - 1
        return item.options[idx] if idx < len(item.options) else None
    norm = normalize(answer)
    return next((o for o in item.options if normalize(o) == norm), None)


def free_text_score(answer: str, reference: str, embedder: Any) -> float:
    """0.6 x cosine(answer, reference) + 0.4 x share of the reference's key terms in the answer."""
    if not normalize(answer):
        return 0.0
    a, r = embedder.embed([answer, reference])
    recall = term_overlap(reference, answer)
    return max(0.0, 0.6 * _cos(a, r) + 0.4 * recall)


def _source_line(citation: dict[str, Any]) -> str:
    where = " — ".join(x for x in (citation.get("title"), citation.get("section")) if x)
    page = f", p. {citation['page']}" if citation.get("page") else ""
    return f"{where}{page} ({citation.get('source', '')})"


def grade_answer(item: QuizItem, answer: str, embedder: Any) -> GradeResult:
    """Grade one answer; the feedback names the right answer and quotes the cited passage."""
    passage = str(item.citation.get("text") or "")
    quote = best_quote(passage, f"{item.answer} {item.explanation}")
    if item.type == "mcq":
        picked = mcq_choice(item, answer)
        correct = picked == item.answer
        score = 1.0 if correct else 0.0
        verdict = "correct" if correct else "incorrect"
    elif item.type == "flashcard" and not normalize(answer):
        score, verdict, correct = 0.0, "revealed", False
    else:
        score = free_text_score(answer, item.answer, embedder)
        verdict = "correct" if score >= GRADE_CORRECT else "partial" if score >= GRADE_PARTIAL else "incorrect"
        correct = verdict == "correct"
    opening = {
        "correct": "Correct.",
        "partial": "Partly right.",
        "incorrect": "Not quite." if normalize(answer) else "No answer given.",
        "revealed": "Here is the back of the card.",
    }[verdict]
    parts = [opening]
    if verdict != "correct" or item.type != "mcq":
        parts.append(f"Answer: {item.answer}")
    if item.explanation:
        parts.append(item.explanation)
    parts.append(f'The handbook says: "{quote}" — {_source_line(item.citation)}')
    return GradeResult(verdict, correct, score, "\n".join(parts), quote, item.answer, dict(item.citation))


# ----------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------
CSV_COLUMNS = ["question", "options", "answer", "explanation", "source", "section"]
OPTION_SEPARATOR = " | "


def export_csv(items: Sequence[QuizItem], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for it in items:
            writer.writerow([
                it.question,
                OPTION_SEPARATOR.join(it.options),
                it.answer,
                it.explanation,
                it.citation.get("source", ""),
                it.citation.get("section", ""),
            ])


def anki_fields(item: QuizItem) -> tuple[str, str]:
    """(front, back) as HTML without tabs or newlines (all text escaped)."""

    def esc(s: Any) -> str:
        return html.escape(re.sub(r"\s+", " ", str(s or "")).strip(), quote=True)

    front = esc(item.question)
    if item.options:
        front += "<br>" + "<br>".join(f"{'ABCD'[i]}) {esc(o)}" for i, o in enumerate(item.options))
    idx = item.answer_index
    back = (f"{'ABCD'[idx]}) " if idx is not None and idx < 4 else "") + f"<b>{esc(item.answer)}</b>"
    if item.explanation:
        back += f"<br>{esc(item.explanation)}"
    back += f"<br><small>{esc(_source_line(item.citation))}</small>"
    return front, back


def export_anki_txt(items: Sequence[QuizItem], path: Path) -> None:
    """Anki's "Import File" text format: tab-separated Front/Back, HTML enabled."""
    lines = ["#separator:tab", "#html:true", "#columns:Front\tBack"]
    lines += ["\t".join(anki_fields(it)) for it in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def export_apkg(items: Sequence[QuizItem], path: Path, deck_name: str) -> None:
    import genanki

    def stable_id(text: str) -> int:
        return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) | (1 << 30)

    model = genanki.Model(
        stable_id("studybot-basic-model"),
        "studybot basic",
        fields=[{"name": "Front"}, {"name": "Back"}],
        templates=[{
            "name": "Card 1",
            "qfmt": "{{Front}}",
            "afmt": '{{FrontSide}}<hr id="answer">{{Back}}',
        }],
    )
    deck = genanki.Deck(stable_id(deck_name), deck_name)
    for it in items:
        front, back = anki_fields(it)
        deck.add_note(genanki.Note(model=model, fields=[front, back], guid=genanki.guid_for(it.question, it.answer)))
    genanki.Package(deck).write_to_file(str(path))


EXPORT_SUFFIXES = (".csv", ".txt", ".tsv", ".apkg", ".json")


def export_items(items: Sequence[QuizItem], path: Path | str, *, topic: str | None = None,
                 qtype: str = "mcq") -> Path:
    """Write the items in the format the file name asks for: .csv, .apkg, .json, or Anki .txt/.tsv."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise QuizError(f"Cannot export to {path.name}: use a file name ending in {', '.join(EXPORT_SUFFIXES)}.")
    if not items:
        raise QuizError("There are no questions to export yet: make a quiz first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        export_csv(items, path)
    elif suffix == ".apkg":
        export_apkg(items, path, f"studybot::{topic or 'handbooks'}")
    elif suffix == ".json":
        data = {"topic": topic, "type": qtype, "items": [i.to_json() for i in items]}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        export_anki_txt(items, path)
    return path
