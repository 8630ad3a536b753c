"""Writing quiz items from the handbooks' passages (chosen here, never by the model).

What an item of each type is made from is its :class:`rag.quiz.types.QuizType`: most types (short answers,
flashcards) are one item from one passage, as JSON constrained by the type's schema
(``llm.complete(..., json_schema=...)``), so the reply always parses; a type may write its items itself
(multiple choice: the passage's glossary (:mod:`rag.quiz.glossary`) gives the key, related passages' glossaries
the distractors (:mod:`rag.quiz.mcq`)).
Each item is validated (:mod:`rag.quiz.validation`); a failing one is rewritten from another passage (bounded
by :data:`MAX_ATTEMPTS_PER_ITEM`) and counted in ``QuizResult.dropped``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rag import prompts
from rag.backends.embeddings import TextEmbedder
from rag.errors import QueryError
from rag.llm import LLM
from rag.quiz.glossary import Glossary, GlossaryEntry
from rag.quiz.mcq import (
    DISTRACTORS,
    already_asked,
    asked_terms,
    assemble,
    choose_distractors,
    matching_rejection,
)
from rag.quiz.models import (
    MAX_ITEMS,
    QuizError,
    QuizItem,
    QuizResult,
    QuizSession,
    quizzable,
    section_key,
)
from rag.quiz.text import clean_field, whole_sentences
from rag.quiz.types import DEFAULT_TYPE, QuizType, quiz_type, type_of
from rag.quiz.validation import rejection
from rag.retrieval import Retriever
from rag.settings import QuizSettings
from rag.text import clip
from rag.types import Chunk, Citation, Passage, Progress

# 3: tries per item asked. Short answers: 53% of generated items passed validation (an earlier bench/quiz.py).
# Glossary MCQs: 29-35% of the passages tried give a valid item, and the 7-topic blind run (n = 4 each) still
# made 23 of the 28 items asked within this budget (bench/quiz.py, 2026-12-04).
MAX_ATTEMPTS_PER_ITEM = 3
# A passage is clipped to this many characters in a quiz prompt: a cap on the prompt's length, set by hand with
# the first quiz code (2026-11-25), not tuned. It cuts none of the handbooks' 234 chunks (the longest has 955
# characters at ingest.chunk_size 900), only a document chunked larger.
MAX_PASSAGE_CHARS = 1200
# Passages related to an MCQ's key term whose glossaries are read for distractors, at most, per key term
# (each is one model call unless cached).
RELATED_PASSAGES = 6
# The model calls one MCQ may spend writing related passages' glossaries before its key term is given up for
# want of distractors: set by hand with the glossary MCQs (2026-12-04), not tuned (the 7-topic blind run made
# 72 glossary calls for 23 items: bench/quiz.py, README).
MAX_GLOSSARY_CALLS_PER_KEY = 3


def _passage_text(chunk: Chunk) -> str:
    return clip(chunk.text.strip(), MAX_PASSAGE_CHARS)


def covered_passages(retriever: Retriever, topic: str, k: int, settings: QuizSettings, what: str) -> list[Passage]:
    """The ``k`` passages retrieved for a topic, best first; :class:`QuizError` naming ``what`` cannot be
    made ("quiz to make") when the best dense similarity says the handbooks do not cover the topic."""
    try:
        passages: list[Passage] = retriever.retrieve(topic, k=k)
    except QueryError as exc:
        raise QuizError(str(exc).replace("question", "topic")) from exc
    sims = [float(p.extra.get("similarity", 0.0)) for p in passages]
    if not passages or max(sims) < settings.topic_min_similarity:
        raise QuizError(
            f'The handbooks have nothing on "{topic.strip()[:80]}", so there is no {what}: '
            "try a machine-learning topic such as regularization, gradient descent or random forests."
        )
    return passages


def quiz_messages(qtype: str, chunk: Chunk, topic: str | None, avoid: Sequence[str] = ()
                  ) -> list[dict[str, str]]:
    """The prompt for one item of ``qtype`` from ``chunk``: the shared system prompt and the type's template."""
    text = _passage_text(chunk)
    focus = f', about "{topic.strip()[:80]}"' if topic else ""
    avoid_txt = ""
    if avoid:
        avoid_txt = "\nDo not repeat these questions; ask about something else:\n" + "\n".join(
            f"- {q}" for q in avoid[-3:]
        )
    user = prompts.render(
        quiz_type(qtype).user_template(),
        title=chunk.title,
        section=chunk.section or "(start)",
        text=text,
        focus=focus,
        avoid=avoid_txt,
    )
    return [{"role": "system", "content": prompts.load("quiz_system")}, {"role": "user", "content": user}]


def parse_item(raw: str, qtype: str, chunk: Chunk) -> QuizItem:
    """Turn the model's JSON into an item of ``qtype`` (its type's parser, or :func:`parse_fields`);
    ValueError if it is not usable JSON."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return (quiz_type(qtype).parse or parse_fields)(data, qtype, chunk)


def parse_fields(data: dict[str, Any], qtype: str, chunk: Chunk) -> QuizItem:
    """The usual item: the object's "question", "answer" and "explanation", cleaned, without options."""
    return QuizItem(
        type=qtype,
        question=clean_field(data.get("question")),
        answer=clean_field(data.get("answer")),
        explanation=whole_sentences(clean_field(data.get("explanation"))),
        options=[],
        citation=Citation.of(1, chunk),
    )


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
    def __init__(self, llm: LLM, embedder: TextEmbedder, retriever: Retriever, settings: QuizSettings, *,
                 temperature: float | None = None, glossary: Glossary | None = None) -> None:
        self.llm = llm
        self.embedder = embedder
        self.retriever = retriever
        self.settings = settings
        self.temperature = settings.temperature if temperature is None else temperature
        self.glossary = glossary if glossary is not None else Glossary(llm, embedder, retriever.idf)
        self.attempts: list[Attempt] = []

    # -- passages --------------------------------------------------------------------------------
    def topic_chunks(self, topic: str, n: int, what: str = "quiz to make") -> list[Chunk]:
        """Passages about the topic, best first; :class:`QuizError` (naming ``what`` there is not) when the
        handbooks do not cover it."""
        passages = covered_passages(self.retriever, topic, max(8, 2 * n + 4), self.settings, what)
        sims = [float(p.extra.get("similarity", 0.0)) for p in passages]
        good = [p.chunk for p, s in zip(passages, sims, strict=True) if s >= self.settings.passage_min_similarity]
        return [c for c in good if quizzable(c)] or good

    def spread_chunks(self, session: QuizSession, where: Callable[[Chunk], bool] | None = None
                      ) -> Callable[[], Chunk | None]:
        """A picker of passages across the corpus (or those ``where`` accepts): an unused top-level section
        first, never the section of the previous question, and a fresh cycle once every section has been used."""
        by_section: dict[str, list[Chunk]] = {}
        for c in self.retriever.chunks.values():
            if quizzable(c) and (where is None or where(c)):
                by_section.setdefault(section_key(c), []).append(c)
        if not by_section:
            raise QuizError("The index has no passages to quiz on: ingest some documents first." if where is None
                            else "Those sections have no passages left to quiz on: re-ingest, or pick a topic.")
        tried: set[str] = set()
        attempted: set[str] = set()  # passages tried in this call (a failed one is not retried first)

        def pick() -> Chunk | None:
            if len(tried) == len(by_section):  # every section had its turn: another round (the caller's
                tried.clear()                   # attempt budget bounds the loop)
            keys = [k for k in by_section if k != session.last_section and k not in tried] or [
                k for k in by_section if k not in tried
            ]
            low = min(session.used_sections.get(k, 0) for k in keys)
            fresh = sorted(k for k in keys if session.used_sections.get(k, 0) == low)
            key = session.rng.choice(fresh)
            chunks = by_section[key]
            unused = [c for c in chunks if c.id not in session.used_chunks]
            untried = [c for c in unused if c.id not in attempted]
            tried.add(key)
            chunk = session.rng.choice(untried or unused or chunks)
            attempted.add(chunk.id)
            return chunk

        return pick

    # -- one item ----------------------------------------------------------------------------------
    def generate(self, qtype: str, chunk: Chunk, topic: str | None, session: QuizSession, limit: int = 3
                 ) -> list[Attempt]:
        """The items tried on one passage, the last one valid or every one dropped (one for a type written from
        its schema, as a short answer or flashcard; a type with its own maker may try several, at most ``limit``:
        an MCQ one per key term)."""
        kind = quiz_type(qtype)
        if kind.make is not None:
            return kind.make(self, chunk, topic, session, limit)
        return self.generate_from_schema(kind, chunk, topic, session)

    def generate_from_schema(self, kind: QuizType, chunk: Chunk, topic: str | None, session: QuizSession
                             ) -> list[Attempt]:
        """One item of ``kind`` from one passage: the model writes it as JSON in the type's schema."""
        qtype = kind.name
        start = time.perf_counter()
        avoid = [i.question for i in session.items if i.citation.chunk_id == chunk.id]
        messages = quiz_messages(qtype, chunk, topic, avoid)
        temperature = self.temperature if not avoid else max(self.temperature, 0.7)
        raw = self.llm.complete(
            messages, max_tokens=kind.max_tokens, temperature=temperature, json_schema=kind.schema
        )
        try:
            item = parse_item(raw, qtype, chunk)
        except (ValueError, TypeError) as exc:
            return [Attempt(chunk.id, raw, None, False, f"unparseable reply ({exc})", time.perf_counter() - start)]
        reason, vector = self.validate(item, chunk, session)
        attempt = Attempt(chunk.id, raw, item, reason is None, reason or "", time.perf_counter() - start)
        if reason is None:
            session.record(item, chunk, vector)
        return [attempt]

    def generate_mcq(self, chunk: Chunk, session: QuizSession, limit: int = 3) -> list[Attempt]:
        """MCQs on the terms the passage defines, one term after another (those not asked yet) until one makes
        a valid item, with distractors from related passages' glossaries."""
        start = time.perf_counter()
        entries, raw, dropped = self.glossary.entries(chunk, self.temperature)
        asked = asked_terms(session.questions)
        keys = [e for e in entries if not already_asked(e, asked)]
        if not keys:
            reason = "no term of the passage is left to ask about" if entries else (
                "the passage gave no usable term" + (f" ({'; '.join(dropped)[:200]})" if dropped else ""))
            return [Attempt(chunk.id, raw, None, False, reason, time.perf_counter() - start)]
        attempts = []
        for key in keys[:limit]:
            item, reason = self._mcq_for(key, entries, session)
            attempts.append(Attempt(chunk.id, raw, item, item is not None, reason, time.perf_counter() - start))
            if item is not None:
                break
            start = time.perf_counter()
        return attempts

    def _mcq_for(self, key: GlossaryEntry, siblings: list[GlossaryEntry], session: QuizSession
                 ) -> tuple[QuizItem | None, str]:
        """An item on ``key``: distractors from its passage's other entries and from related passages'
        (their stated entries first; the model writes the glossary of one more related passage at a time,
        at most :data:`MAX_GLOSSARY_CALLS_PER_KEY`, while fewer than three distractors pass)."""
        related = [p.chunk for p in self.retriever.retrieve(f"{key.term}: {key.definition}", k=RELATED_PASSAGES)
                   if p.chunk.id != key.chunk.id and quizzable(p.chunk)]
        calls = 0
        while True:
            pool = [e for e in siblings if e is not key] + self.glossary.stated(key.chunk) + self.glossary.known(related)
            picks, passed_over = choose_distractors(key, pool)
            unread = [c for c in related if self.glossary.written(c.id) is None]
            if len(picks) == DISTRACTORS or not unread or calls == MAX_GLOSSARY_CALLS_PER_KEY:
                break
            self.glossary.entries(unread[0], self.temperature)
            calls += 1
        if len(picks) < DISTRACTORS:
            why = f"; passed over: {'; '.join(passed_over)[:160]}" if passed_over else ""
            return None, f"only {len(picks)} distractors for {key.term!r}{why}"
        if self.settings.check_options_with_model:
            reason = matching_rejection(key, picks, self.llm)
            if reason is not None:
                return None, reason
        item = assemble(key, picks, session.rng)
        reason, vector = self.validate(item, key.chunk, session)
        if reason is not None:
            return None, reason
        session.record(item, key.chunk, vector)
        return item, ""

    def validate(self, item: QuizItem, chunk: Chunk, session: QuizSession) -> tuple[str | None, list[float]]:
        """(why the item is rejected or None, the question's embedding)."""
        # A glossary MCQ's question is a template around its term: its repeats are found by term (generate_mcq).
        earlier = (list(zip(session.questions, session.question_vectors, strict=True))
                   if type_of(item).dedupe_by_question else [])
        return rejection(item, chunk.text, earlier, self.embedder, self.settings)

    # -- a quiz --------------------------------------------------------------------------------------
    def make(
        self,
        topic: str | None,
        n: int = 5,
        qtype: str = DEFAULT_TYPE,
        *,
        session: QuizSession | None = None,
        progress: Progress | None = None,
        where: Callable[[Chunk], bool] | None = None,
    ) -> QuizResult:
        """``n`` validated items on ``topic`` (passages retrieved for it), or spread across the sections whose
        passages ``where`` accepts (all when None)."""
        run = self.run(topic, n, qtype, session=session, progress=progress, where=where)
        for _ in run:
            pass
        if not run.items:
            raise no_items(run.generated)
        return run.result()

    def run(
        self,
        topic: str | None,
        n: int = 5,
        qtype: str = DEFAULT_TYPE,
        *,
        session: QuizSession | None = None,
        progress: Progress | None = None,
        where: Callable[[Chunk], bool] | None = None,
        pool: Sequence[Chunk] | None = None,
        have: int = 0,
        first_type: str | None = None,
        stop: threading.Event | None = None,
    ) -> QuizRun:
        """A quiz being made (iterate it for each item as it passes validation): the request is checked and the
        topic's passages retrieved now (:class:`QuizError` at once for an unknown topic), the items made while
        it is iterated. ``pool``: the topic's passages, when already retrieved; ``have``: items the quiz
        already has (from the question bank), so ``n - have`` are made; ``first_type``: the type of the first
        item made (a flashcard is the quickest to write); ``stop``: set it to stop after the current item."""
        check_request(n, qtype)
        topic = (topic or "").strip() or None
        session = session if session is not None else QuizSession()
        start = time.perf_counter()
        if topic:
            chunks = list(pool) if pool is not None else self.topic_chunks(topic, n)
            # Unused passages first (best retrieval rank first), then the used ones again.
            order = [c for c in chunks if c.id not in session.used_chunks] + [
                c for c in chunks if c.id in session.used_chunks
            ]
            queue = list(order)

            def next_chunk() -> Chunk | None:
                if not queue:
                    queue.extend(order)  # every passage had its turn: go round again
                return queue.pop(0) if queue else None
        else:
            next_chunk = self.spread_chunks(session, where)
        return QuizRun(self, topic, n, qtype, session, next_chunk, progress=progress, have=have,
                       first_type=first_type, stop=stop, start=start)


def check_request(n: int, qtype: str) -> None:
    """:class:`QuizError` for a quiz that cannot be asked for (an unknown type, a count out of range)."""
    quiz_type(qtype)  # QuizError for an unknown type, naming the registered ones
    if not 1 <= n <= MAX_ITEMS:
        raise QuizError(f"Ask for between 1 and {MAX_ITEMS} questions (got {n}).")


def no_items(generated: int) -> QuizError:
    return QuizError(
        f"No usable question came out of {generated} tries (each failed validation): try another "
        "topic or question type."
    )


class QuizRun:
    """The items of a quiz as they are made (:meth:`QuizMaker.run`); the counts for :class:`QuizResult`."""

    def __init__(self, maker: QuizMaker, topic: str | None, n: int, qtype: str, session: QuizSession,
                 next_chunk: Callable[[], Chunk | None], *, progress: Progress | None = None, have: int = 0,
                 first_type: str | None = None, stop: threading.Event | None = None,
                 start: float | None = None) -> None:
        self.maker = maker
        self.topic = topic
        self.n = n
        self.qtype = qtype
        self.session = session
        self.next_chunk = next_chunk
        self.progress = progress
        self.have = have
        self.first_type = first_type
        self.stop = stop
        self.start = time.perf_counter() if start is None else start
        self.items: list[QuizItem] = []
        self.dropped = 0
        self.generated = 0
        self.reasons: list[str] = []

    def __iter__(self) -> Iterator[QuizItem]:
        want = max(0, self.n - self.have)
        budget = want * MAX_ATTEMPTS_PER_ITEM
        progress = self.progress
        while len(self.items) < want and self.generated < budget:
            if self.stop is not None and self.stop.is_set():
                break
            chunk = self.next_chunk()
            if chunk is None:
                break
            done = self.have + len(self.items)
            if progress:
                progress(f"writing question {done + 1} of {self.n}", done, self.n)
            qtype = self.first_type if self.first_type and not self.items else self.qtype
            for attempt in self.maker.generate(qtype, chunk, self.topic, self.session, budget - self.generated):
                self.maker.attempts.append(attempt)
                self.generated += 1
                if attempt.ok and attempt.item is not None:
                    self.items.append(attempt.item)
                    yield attempt.item
                else:
                    self.dropped += 1
                    self.reasons.append(attempt.reason)
        if progress:
            progress("done", self.have + len(self.items), self.n)

    def result(self, before: Sequence[QuizItem] = ()) -> QuizResult:
        """The quiz so far: ``before`` (the bank's items) and the items made."""
        return QuizResult(self.topic, self.qtype, [*before, *self.items], self.dropped, self.generated,
                          time.perf_counter() - self.start, self.reasons,
                          self.session.coverage(self.maker.retriever.chunks), banked=len(before))
