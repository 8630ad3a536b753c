"""Study guides: a one-page guide to a topic or section (key terms with one-line definitions, a short summary,
three likely interview questions), every line cited to the passage that states it.

The passages are retrieved for the topic (the same topic check as quizzes: :class:`rag.quiz.QuizError` for a
topic the handbooks do not cover); the model writes the guide as JSON constrained by :func:`schema`, so the
reply always parses and every line carries a passage number. Then every line goes through the same
citation validation as answers (:class:`rag.answer.verify.Verifier`: the rules, then the model's yes/no against
the passage's closest sentences, re-citing a line to the passage that states it); a definition or summary
sentence that fails is dropped and counted. A question is not a claim: it is kept when its named terms are
in the passages, cited to the passage closest to it. Formatting (Markdown) is the UI's job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rag import prompts
from rag.answer.verify import Verifier
from rag.citations import CITATION
from rag.llm import LLM
from rag.quiz.generation import covered_passages
from rag.quiz.models import QuizError, string_schema
from rag.retrieval import Retriever
from rag.settings import QuizSettings
from rag.terms import missing_terms
from rag.text import clip
from rag.types import Citation, Passage

# Passages a guide is written from, each clipped to MAX_PASSAGE_CHARS. Both set by hand with the study guides
# (2026-12-02), not tuned: four passages of about 225 tokens keep the prompt near 1,100 tokens; the clip cuts 4 of
# the handbooks' 234 chunks (at ingest.chunk_size 900).
GUIDE_PASSAGES = 4
MAX_PASSAGE_CHARS = 900  # four passages of about 225 tokens: the prompt stays near 1,100 tokens
# The guide's reply cap: set by hand (2026-12-02), not measured, as room for five terms, four summary sentences and
# three questions of the schema's bounded lengths.
MAX_TOKENS = 520
LineKind = Literal["term", "summary", "question"]


@dataclass
class GuideLine:
    kind: LineKind
    text: str  # the definition, sentence or question (no marker)
    n: int  # its passage: 1-based into StudyGuide.citations
    term: str = ""  # for a key term

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "n": self.n}
        if self.kind == "term":
            out["term"] = self.term
        return out


@dataclass
class StudyGuide:
    topic: str
    terms: list[GuideLine]
    summary: list[GuideLine]
    questions: list[GuideLine]
    citations: list[Citation]  # the passages, numbered as the lines cite them
    dropped: int = 0  # lines that failed citation validation
    seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[GuideLine]:
        return [*self.terms, *self.summary, *self.questions]

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "terms": [t.to_json() for t in self.terms],
                "summary": [s.to_json() for s in self.summary],
                "questions": [q.to_json() for q in self.questions],
                "citations": [c.to_json() for c in self.citations], "dropped": self.dropped,
                "seconds": round(self.seconds, 2)}


def schema(n_passages: int) -> dict[str, Any]:
    """The JSON the model writes: bounded lists of bounded strings, each with a valid passage number."""
    number = {"type": "integer", "enum": list(range(1, n_passages + 1))}

    def entries(fields: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
        return {"type": "array", "minItems": lo, "maxItems": hi,
                "items": {"type": "object", "properties": {**fields, "passage": number},
                          "required": [*fields, "passage"]}}

    return {"type": "object",
            "properties": {"terms": entries({"term": string_schema(2, 50), "definition": string_schema(10, 160)}, 3, 5),
                           "summary": entries({"sentence": string_schema(20, 220)}, 2, 4),
                           "questions": entries({"question": string_schema(10, 160)}, 3, 3)},
            "required": ["terms", "summary", "questions"]}


def guide_messages(topic: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    blocks = []
    for i, p in enumerate(passages, start=1):
        text = clip(p.chunk.text.strip(), MAX_PASSAGE_CHARS)
        where = " — ".join(x for x in (p.chunk.title, p.chunk.section) if x)
        blocks.append(f'<passage n="{i}" from="{where}">\n{text}\n</passage>')
    user = prompts.render(prompts.load("guide"), passages="\n\n".join(blocks), topic=topic.strip()[:120])
    return [{"role": "system", "content": prompts.load("guide_system")}, {"role": "user", "content": user}]


def _clean(value: Any) -> str:
    return " ".join(CITATION.sub("", str(value or "")).split()).strip()


class GuideMaker:
    """Writes :class:`StudyGuide` objects; each line is checked by the answer path's verifier. ``temperature``:
    the model's sampling temperature for the guide (``settings.llm.temperature``)."""

    def __init__(self, llm: LLM, retriever: Retriever, verifier: Verifier, quiz_settings: QuizSettings,
                 temperature: float) -> None:
        self.llm = llm
        self.retriever = retriever
        self.verifier = verifier
        self.quiz_settings = quiz_settings
        self.temperature = temperature

    def passages(self, topic: str) -> list[Passage]:
        topic = (topic or "").strip()
        if not topic:
            raise QuizError("Name a topic or section for the study guide, e.g. regularization.")
        return covered_passages(self.retriever, topic, GUIDE_PASSAGES, self.quiz_settings, "study guide to write")

    def make(self, topic: str) -> StudyGuide:
        start = time.perf_counter()
        passages = self.passages(topic)
        raw = self.llm.complete(guide_messages(topic, passages), max_tokens=MAX_TOKENS,
                                temperature=self.temperature,
                                json_schema=schema(len(passages)))
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise QuizError("The model's study guide could not be read (it was cut off); try again, or a "
                            "narrower topic.") from exc
        guide = StudyGuide(topic.strip(), [], [], [], [Citation.of(i, p.chunk) for i, p in enumerate(passages, 1)])
        for key, kind, field_name in (("terms", "term", "definition"), ("summary", "summary", "sentence"),
                                      ("questions", "question", "question")):
            for entry in data.get(key) or []:
                if not isinstance(entry, dict):
                    continue
                line = self._line(kind, entry, field_name, passages, topic, guide)  # type: ignore[arg-type]
                if line is not None:
                    getattr(guide, "terms" if kind == "term" else key).append(line)
        if not guide.terms and not guide.summary:
            raise QuizError(f'No line of the study guide on "{topic.strip()[:80]}" was supported by its passages; '
                            "try a narrower topic or a section name.")
        guide.seconds = time.perf_counter() - start
        return guide

    def _line(self, kind: LineKind, entry: dict[str, Any], field_name: str, passages: Sequence[Passage],
              topic: str, guide: StudyGuide) -> GuideLine | None:
        text = _clean(entry.get(field_name))
        term = _clean(entry.get("term")) if kind == "term" else ""
        try:
            n = int(entry.get("passage") or 0)
        except (TypeError, ValueError):
            n = 0
        if not text or not 1 <= n <= len(passages) or (kind == "term" and not term):
            guide.dropped += 1
            guide.reasons.append(f"{kind}: empty or without a passage")
            return None
        if kind == "question":
            texts = [topic, *(f"{p.chunk.title}\n{p.chunk.section}\n{p.chunk.text}" for p in passages)]
            if missing_terms(text, texts):
                guide.dropped += 1
                guide.reasons.append(f"question: names a term no passage has ({text[:60]})")
                return None
            return GuideLine(kind, text, self.verifier.closest(text, passages)[1] or n)
        claim = f"{term}: {text}" if term else text
        check, source = self.verifier.check_passages(claim.rstrip(" .") + ".", passages, topic)
        if not check.supported:
            guide.dropped += 1
            guide.reasons.append(f"{kind}: not stated by its passage ({check.reason}): {claim[:60]}")
            return None
        return GuideLine(kind, text, source, term)
