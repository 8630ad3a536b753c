"""The composition root: :class:`StudyService`, the one object the CLI and the web UI talk to.

It builds the parts from the settings (embedder -> index -> library, retriever -> answer pipeline, quiz maker,
LLM), each lazily on first use, and takes any of them ready-made instead: tests pass fakes through the
constructor (``StudyService(settings, embedder=HashEmbedder(), llm=ScriptedLLM([...]))``), never by setting
attributes. Nothing here touches Chroma or llama.cpp: those live behind :mod:`rag.backends.store` and
:mod:`rag.backends.llama_cpp`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.settings import Settings, apply_offline_env, get_settings

log = logging.getLogger(__name__)

# The search :meth:`StudyService.warm_up` runs to open the index: any question does; the passages are dropped.
WARM_UP_QUERY = "What is gradient descent?"

if TYPE_CHECKING:
    from ingest.library import AddResult, Library
    from ingest.pipeline import IngestSummary, PlanFn
    from rag.answer import Answer, AnswerPipeline
    from rag.answer.chat import ChatSession
    from rag.answer.events import AnswerEvent
    from rag.backends.embeddings import TextEmbedder
    from rag.backends.store import Index
    from rag.health import Check
    from rag.llm import LLM
    from rag.quiz import GradeResult, QuizItem, QuizResult, QuizSession
    from rag.quiz.bank import BankFiller, BankStats, BankWorker, FillReport, QuestionBank, QuizStream
    from rag.quiz.generation import QuizMaker
    from rag.quiz.glossary import Glossary
    from rag.retrieval import Mode, Retriever
    from rag.study.guide import StudyGuide
    from rag.study.store import CardInfo, StudyStore
    from rag.types import Chunk, Passage, Progress


@dataclass(frozen=True)
class DocumentInfo:
    source: str
    title: str
    chunks: int
    ingested_at: float
    kind: str


class StudyService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: TextEmbedder | None = None,
        index: Index | None = None,
        retriever: Retriever | None = None,
        llm: LLM | None = None,
    ) -> None:
        apply_offline_env()
        self.settings = settings or get_settings()
        self._embedder = embedder
        self._index = index
        self._retriever = retriever
        self._llm = llm
        self._library: Library | None = None
        self._answers: AnswerPipeline | None = None
        self._study: StudyStore | None = None
        self._glossary: Glossary | None = None
        self._lock = threading.RLock()
        self._model: LLM | None = None
        self._bank_worker: BankWorker | None = None
        from rag.quiz.gate import ModelGate

        self.gate: ModelGate = ModelGate(self.settings.quiz.bank_idle_s)

    # -- parts (built on first use unless given) ----------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            with self._lock:  # the first question and the page's first load may arrive together
                if self._embedder is None:
                    from rag.backends.embeddings import shared_embedder

                    self._embedder = shared_embedder(self.settings)
        return self._embedder

    @property
    def index(self) -> Index:
        if self._index is None:
            with self._lock:  # two threads opening one index at once failed with a KeyError inside Chroma
                if self._index is None:
                    from rag.backends.store import Index

                    self._index = Index(self.settings, self.embedder)
        return self._index

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            with self._lock:
                if self._retriever is None:
                    from rag.retrieval import HybridRetriever

                    self._retriever = HybridRetriever.from_settings(self.index)
        return self._retriever

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            with self._lock:
                if self._llm is None:
                    from rag.llm import get_llm

                    self._llm = get_llm(self.settings)
        return self._llm

    @property
    def model(self) -> LLM:
        """The model as a student's requests use it (answers, chats, quizzes, guides): every call holds
        :attr:`gate`, so the question bank's worker waits, and a generation of its own stops at its next token
        (:mod:`rag.quiz.gate`). :attr:`llm` is the model itself."""
        if self._model is None:
            from rag.quiz.gate import InteractiveLLM

            self._model = InteractiveLLM(self.llm, self.gate)
        return self._model

    @property
    def library(self) -> Library:
        """The document library: corpus folder + uploads, one index."""
        if self._library is None:
            with self._lock:
                if self._library is None:
                    from ingest.library import Library

                    self._library = Library(self.index)
        return self._library

    @property
    def answers(self) -> AnswerPipeline:
        """The retrieve -> pack -> prompt -> model -> cite pipeline (the model loads on first real use)."""
        if self._answers is None:
            from rag.answer import AnswerPipeline

            self._answers = AnswerPipeline(self.retriever, lambda: self.model, self.settings, embedder=self.embedder)
        return self._answers

    @property
    def study(self) -> StudyStore:
        """The study database (``<home>/study.sqlite3``): quiz items, reviews, FSRS cards, conversations; backed
        up into ``backups/`` beside it (:mod:`rag.study.backup`)."""
        if self._study is None:
            from rag.study.backup import BackupPolicy
            from rag.study.store import StudyStore

            storage = self.settings.storage
            self._study = StudyStore(storage.study_path, BackupPolicy(storage.backups_dir, storage.study_backups),
                                     study=self.settings.study)
        return self._study

    @property
    def glossary(self) -> Glossary:
        """The passages' glossaries the MCQs are built from, kept between quizzes (one model call per passage)."""
        if self._glossary is None:
            from rag.quiz.glossary import Glossary

            self._glossary = Glossary(self.model, self.embedder, self.retriever.idf)
        return self._glossary

    def record_quiz(self, user: str, items: list[QuizItem]) -> list[int]:
        """Make ``items`` study cards for ``user`` (due at once), remembering the text of the chunk each cites."""
        chunks = self.retriever.chunks
        hashes = {i.citation.chunk_id: chunks[i.citation.chunk_id].content_hash
                  for i in items if i.citation.chunk_id in chunks}
        return self.study.add_items(user, items, content_hashes=hashes)

    # -- the review schedule and card control (rag.study.store; the Review and Progress tabs) ----------
    def schedule(self, user: str) -> dict[str, Any]:
        """``user``'s desired retention, FSRS parameters, last optimisation and what optimising needs
        (:meth:`StudyStore.schedule`)."""
        return self.study.schedule(user)

    def set_retention(self, user: str, retention: float) -> dict[str, Any]:
        """Set ``user``'s desired retention (0.70-0.99); the schedule, with a ``warning`` sentence above 0.97."""
        return self.study.set_retention(user, retention)

    def optimize_schedule(self, user: str) -> dict[str, Any]:
        """"Optimise my schedule": FSRS parameters fitted on ``user``'s reviews (seconds to a minute), used from
        then on when they fit better; the schedule with ``optimization`` (log-loss before/after). A
        :class:`StudyStoreError` sentence below the minimum of reviews."""
        return self.study.optimize(user)

    def cards(self, user: str, which: str = "all") -> list[CardInfo]:
        """``user``'s cards (``all``, ``suspended`` or ``buried``), by due time."""
        return self.study.cards(user, which)

    def edit_card(self, user: str, item_id: int, question: str | None = None, answer: str | None = None
                  ) -> CardInfo:
        """A card's new question and/or answer (its schedule and history kept)."""
        return self.study.edit_card(user, item_id, question, answer)

    def suspend_card(self, user: str, item_id: int, suspended: bool = True) -> CardInfo:
        """Suspend (never due) or, with ``suspended=False``, unsuspend a card."""
        return self.study.suspend(user, item_id, suspended)

    def bury_card(self, user: str, item_id: int, tz: tzinfo | None = None) -> CardInfo:
        """Bury a card until the student's next local midnight (``tz``; None: this machine's time zone)."""
        return self.study.bury(user, item_id, tz=tz)

    def unbury_card(self, user: str, item_id: int) -> CardInfo:
        return self.study.unbury(user, item_id)

    def delete_card(self, user: str, item_id: int) -> CardInfo:
        """Delete a card and its history (a quiz never asks its question again); returns it as it was."""
        return self.study.delete_card(user, item_id)

    def review_calendar(self, user: str, months: int = 12, tz: tzinfo | None = None) -> dict[str, Any]:
        """Reviews per local day over the last ``months`` months, with streaks (a heatmap's data)."""
        return self.study.review_calendar(user, months, tz=tz)

    def true_retention(self, user: str, days: int | None = None) -> dict[str, Any]:
        """The share of review-state reviews passed: ``young``, ``mature`` (an interval of ``study.mature_days`` or
        more), ``total``."""
        return self.study.true_retention(user, days)

    def due_forecast(self, user: str, days: int = 30, tz: tzinfo | None = None) -> list[dict[str, Any]]:
        """Cards due per local day over the next ``days`` days (overdue ones today)."""
        return self.study.due_forecast(user, days, tz=tz)

    # -- the library ---------------------------------------------------------------------------------
    def ingest(self, path: Path | None = None, *, rebuild: bool = False, progress: Progress | None = None,
               on_plan: PlanFn | None = None, max_file_mb: float | None = None) -> IngestSummary:
        """Sync the index with the library: the corpus folder (or ``path`` instead) and the uploads."""
        with self._lock:
            summary = self.library.sync(path, rebuild=rebuild, progress=progress, on_plan=on_plan,
                                        max_file_mb=max_file_mb)
            if summary.changed or rebuild:
                self._refresh_retriever()
                self.mark_stale_cards()
            return summary

    def mark_stale_cards(self) -> int:
        """Study cards whose chunk a re-ingest changed or removed are marked stale (kept, shown as such)."""
        if self._study is None and not self.settings.storage.study_path.exists():
            return 0
        return self.study.mark_stale({c.id: c.content_hash for c in self.retriever.chunks.values()})

    def add_documents(self, paths: Sequence[Path], *, progress: Progress | None = None,
                      on_plan: PlanFn | None = None, max_file_mb: float | None = None) -> list[AddResult]:
        """Add files to the library (checked, saved into the uploads folder, indexed incrementally)."""
        with self._lock:
            results = self.library.add(list(paths), progress=progress, on_plan=on_plan, max_file_mb=max_file_mb)
            if any(r.ok for r in results):
                self._refresh_retriever()
            return results

    def remove_document(self, name: str) -> str:
        """Remove a document from the library; returns one sentence for the user."""
        with self._lock:
            summary, message = self.library.remove(name)
            if summary.removed:
                self._refresh_retriever()
            return message

    def _refresh_retriever(self) -> None:
        if self._retriever is not None:
            self._retriever.refresh(force=True)
        self._bank_changed()

    def documents(self) -> list[DocumentInfo]:
        manifest = self.index.manifest()
        return [
            DocumentInfo(src, rec.title, rec.chunks, rec.ingested_at,
                         f"duplicate of {rec.duplicate_of}" if rec.duplicate_of else rec.kind)
            for src, rec in sorted(manifest.files.items())
        ]

    def preview(self, name: str, n: int = 3) -> list[Chunk]:
        """The first ``n`` passages of a document in the library, in document order (a file indexed as a
        duplicate shows those of the file it duplicates); :class:`IngestError` when it is not in the library."""
        with self._lock:
            source = self.library.resolve(name)
            record = self.index.manifest().files[source]
            where = {"source": record.duplicate_of or source}
            chunks = [c for c, _ in self.index.iter_records(self.index.current(), where)]
        return sorted(chunks, key=lambda c: c.ordinal)[: max(0, n)]

    # -- retrieval and answers -----------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, mode: Mode = "hybrid") -> list[Passage]:
        return self.retriever.retrieve(question, k or self.settings.retrieval.top_k, mode)

    def ask(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Answer:
        """A grounded, cited answer (or a refusal)."""
        with self.gate.interactive():
            return self.answers.ask(question, k=k, max_tokens=max_tokens)

    def ask_stream(self, question: str, k: int | None = None, max_tokens: int | None = None
                   ) -> Iterator[AnswerEvent]:
        """Typed events (:mod:`rag.answer.events`): the passages, text deltas, then the final answer."""
        events: Iterator[AnswerEvent] = self.gate.guard(self.answers.stream(question, k=k, max_tokens=max_tokens))
        return events

    def chat_session(self) -> ChatSession:
        """A new conversation (history bounded by ``settings.answer.history_turns``)."""
        from rag.answer.chat import ChatSession

        return ChatSession(self.answers)

    def warm_up(self, search: bool = False) -> None:
        """Load the model and keep the answer path's fixed prompt prefix evaluated (or loaded from the state the
        last process saved), so the first question pays only for its own tokens. ``search``: then run one search
        too, which loads the embedder and opens the index and its keyword index - what the web app wants, since
        nothing else opens them before the first question (a fresh process's first search took 6.0-8.5 s, the
        next 0.03 s; the first answer 15.0 s without it, 9.6 s with it; 2026-12-06, this repo's machine). Without
        it only the model is touched: the CLI runs this in a thread while its main thread opens the rest. Best
        effort: errors surface on the first question."""
        from rag.answer.pipeline import warm_up

        with contextlib.suppress(StudybotError):
            warm_up(self.model)
        if search:
            with contextlib.suppress(StudybotError):
                self.retrieve(WARM_UP_QUERY)

    # -- quizzes -------------------------------------------------------------------------------------
    def quiz(self, topic: str | None = None, n: int = 5, qtype: str = "mcq", *, session: QuizSession | None = None,
             progress: Progress | None = None, user: str | None = None) -> QuizResult:
        """``n`` validated quiz items on a topic, or spread across the handbooks' sections when ``topic`` is
        empty: from the question bank first, the rest made now (:meth:`quiz_stream`, iterated to the end).
        ``session`` carries coverage and earlier questions between calls; ``user``: never one of their cards'
        questions from the bank; ``QuizError`` when the topic is not in the handbooks."""
        stream = self.quiz_stream(topic, n, qtype, session=session, progress=progress, user=user, threaded=False)
        for _ in stream:
            pass
        return stream.result()

    def quiz_stream(self, topic: str | None = None, n: int = 5, qtype: str = "mcq", *,
                    session: QuizSession | None = None, progress: Progress | None = None, user: str | None = None,
                    threaded: bool = True, fast_start: bool = False, where: Callable[[Chunk], bool] | None = None,
                    ) -> QuizStream:
        """A quiz whose items come as they are ready (:class:`rag.quiz.bank.QuizStream`; ``for item in stream``,
        then ``stream.result()``): the question bank's items on the topic's passages (the same retrieval as a
        quiz) at once, never a question ``user`` already has as a card nor one ``session`` asked; then the
        missing ones, made by the model - with ``threaded``, in a thread that starts now, so the next is written
        while the student answers. ``fast_start``: when the bank has no MCQ for an MCQ quiz, the first item is
        a flashcard (the bank's, or made: seconds instead of half a minute). ``where``: only passages it accepts
        (a quiz without a topic). The request and the topic are checked now: ``QuizError`` from this call."""
        from rag.quiz import QUIZ_TYPES, QuizSession, quizzable
        from rag.quiz.bank import FAST_FIRST, BankError, QuizStream, draw
        from rag.quiz.generation import check_request

        check_request(n, qtype)
        topic = (topic or "").strip() or None
        session = session if session is not None else QuizSession()
        maker = self.quiz_maker()
        first: str | None = None
        with self.gate.interactive():
            if topic:
                pool = maker.topic_chunks(topic, n)
            else:
                pool = [c for c in self.retriever.chunks.values() if quizzable(c) and (where is None or where(c))]
            exclude = self.study.questions(user) if user else []
            banked: list[QuizItem] = []
            try:
                banked = draw(self.bank, pool, qtype, n, session, self.embedder, self.settings.quiz,
                              exclude=exclude, spread=topic is None)
                if fast_start and not banked and qtype in FAST_FIRST:
                    banked = draw(self.bank, pool, [t for t in QUIZ_TYPES if t != qtype], 1, session, self.embedder,
                                  self.settings.quiz, exclude=exclude, spread=topic is None)
                    first = None if banked else FAST_FIRST[qtype]
            except StudybotError as exc:  # a damaged bank: the quiz is made as without one
                if not isinstance(exc, BankError):
                    raise
                log.warning("quiz without the question bank: %s", exc)
        run = None
        if len(banked) < n:
            run = maker.run(topic, n, qtype, session=session, progress=progress, where=where,
                            pool=pool if topic else None, have=len(banked), first_type=first)
        return QuizStream(topic, qtype, n, session, banked, run, threaded=threaded, progress=progress,
                          chunks=lambda: self.retriever.chunks)

    def quiz_maker(self) -> QuizMaker:
        """A quiz maker on the model as a student's requests use it, with the service's glossaries."""
        from rag.quiz import QuizMaker

        return QuizMaker(self.model, self.embedder, self.retriever, self.settings.quiz, glossary=self.glossary)

    def weak_quiz(self, user: str, n: int = 5, qtype: str = "mcq", *, session: QuizSession | None = None,
                  progress: Progress | None = None) -> tuple[QuizResult, list[dict[str, Any]]]:
        """New questions from the sections ``user`` does worst on (:meth:`StudyStore.weak_sections`), never one
        they already have (the bank's first); returns the quiz and the weak sections it drew on. ``QuizError``
        when there is no weak spot yet."""
        stream, weak = self.weak_quiz_stream(user, n, qtype, session=session, progress=progress, threaded=False)
        for _ in stream:
            pass
        return stream.result(), weak

    def weak_quiz_stream(self, user: str, n: int = 5, qtype: str = "mcq", *, session: QuizSession | None = None,
                         progress: Progress | None = None, threaded: bool = True, fast_start: bool = False
                         ) -> tuple[QuizStream, list[dict[str, Any]]]:
        """:meth:`weak_quiz` as a stream (:meth:`quiz_stream`: the items as they are ready) and the weak
        sections it draws on."""
        from rag.quiz import QuizError, QuizSession
        from rag.study.store import top_section

        weak = self.study.weak_sections(user)
        if not weak:
            raise QuizError(f"No weak spots for {user} yet: review some cards first (a weak spot is a section "
                            "whose cards you get wrong).")
        wanted = {(w["source"], w["section"]) for w in weak}
        session = session if session is not None else QuizSession()
        earlier = self.study.questions(user)
        session.avoid(earlier, self.embedder.embed(earlier) if earlier else [], self.study.chunk_ids(user))
        stream = self.quiz_stream(None, n, qtype, session=session, progress=progress, threaded=threaded,
                                  fast_start=fast_start,
                                  where=lambda c: (c.source, top_section(c.section, c.source)) in wanted)
        return stream, weak

    # -- the question bank ---------------------------------------------------------------------------------
    @property
    def bank(self) -> QuestionBank:
        """The question bank (``<home>/bank.sqlite3``, :mod:`rag.quiz.bank`): items made before they are asked for."""
        from rag.quiz.bank import QuestionBank

        return QuestionBank(self.settings.storage.bank_path)

    def bank_status(self) -> BankStats:
        """What the bank holds for the current index: items per type and section, passages covered."""
        return self.bank.stats(self.retriever.chunks.values(), self.settings.quiz.bank_attempts)

    def bank_filler(self, stop: threading.Event | None = None) -> BankFiller:
        """A filler on the bank's view of the model (it waits until the app is idle and stops for a student's
        request), sharing the service's glossaries."""
        from rag.quiz import QuizMaker
        from rag.quiz.bank import BankFiller
        from rag.quiz.gate import BackgroundLLM

        llm = BackgroundLLM(self.llm, self.gate, stop)
        maker = QuizMaker(llm, self.embedder, self.retriever, self.settings.quiz, glossary=self.glossary.using(llm))
        return BankFiller(self.bank, maker, self.settings.quiz.bank_attempts)

    def fill_bank(self, topic: str | None = None, types: Sequence[str] | None = None, *, limit: int | None = None,
                  progress: Progress | None = None, stop: threading.Event | None = None) -> FillReport:
        """Bank items for every passage (or those a 10-question quiz on ``topic`` would use), of ``types``
        (default flashcard, short, mcq: the quickest first) until ``limit`` are made; passages tried
        ``quiz.bank_attempts`` times are left. ``QuizError`` when the handbooks do not cover the topic."""
        from rag.quiz import QUIZ_TYPES, QuizError
        from rag.quiz.bank import BANK_TOPIC_ITEMS, BANK_TYPES

        kinds = list(types or BANK_TYPES)
        bad = [t for t in kinds if t not in QUIZ_TYPES]
        if bad:
            raise QuizError(f"Unknown quiz type {bad[0]!r}: use one of {', '.join(QUIZ_TYPES)}.")
        chunks = list(self.retriever.chunks.values())
        if not chunks:
            raise QuizError("The index has no passages to bank questions on: ingest some documents first.")
        bank = self.bank
        bank.sync({c.content_hash for c in chunks})
        filler = self.bank_filler(stop)
        topic = (topic or "").strip()
        pool = filler.maker.topic_chunks(topic, BANK_TOPIC_ITEMS, "question to bank") if topic else chunks
        return filler.fill(filler.todo(pool, kinds, spread=not topic), progress=progress, stop=stop, limit=limit)

    def start_bank_worker(self) -> BankWorker | None:
        """Fill the bank in a thread of this process while the app is idle (the web app calls it when it starts;
        an ingest makes it plan again). None when ``quiz.bank_background`` is off."""
        if not self.settings.quiz.bank_background:
            return None
        from rag.quiz.bank import BankWorker

        with self._lock:
            if self._bank_worker is None:
                self._bank_worker = BankWorker(self.bank_filler, lambda: list(self.retriever.chunks.values()))
            self._bank_worker.start()
            return self._bank_worker

    def stop_bank_worker(self) -> None:
        if self._bank_worker is not None:
            self._bank_worker.stop()

    @property
    def bank_worker(self) -> BankWorker | None:
        """The bank's worker when one was started (its ``status()``: running, state, made, tried, left, error)."""
        return self._bank_worker

    def _bank_changed(self) -> None:
        """After the index changed: the bank drops the items of chunks that changed or went, its worker plans
        again."""
        bank = self.bank
        if bank.exists():
            try:
                bank.sync({c.content_hash for c in self.retriever.chunks.values()})
            except StudybotError as exc:
                log.warning("question bank not updated: %s", exc)
        if self._bank_worker is not None:
            self._bank_worker.wake()

    def guide(self, topic: str) -> StudyGuide:
        """A one-page study guide on a topic or section, every line cited and validated like an answer."""
        from rag.study.guide import GuideMaker

        maker = GuideMaker(self.model, self.retriever, self.answers.verifier, self.settings.quiz,
                           self.settings.llm.temperature)
        return maker.make(topic)

    def grade(self, item: QuizItem, answer: str) -> GradeResult:
        """Grade an answer to a quiz item (the feedback quotes the cited passage)."""
        from rag.quiz import grade_answer

        return grade_answer(item, answer, self.embedder, self.settings.quiz)

    # -- health --------------------------------------------------------------------------------------
    def doctor(self, runtime: bool = True) -> list[Check]:
        """What is installed, verified and indexed (:func:`rag.health.doctor`), then the study database and the
        question bank."""
        from rag.health import Check, doctor
        from rag.quiz.bank import bank_check
        from rag.study.backup import study_check

        s = self.settings
        return [*doctor(s, self.index, runtime=runtime),
                Check("study database", *study_check(s.storage.study_path, s.storage.backups_dir)),
                Check("question bank", *bank_check(s, self.index))]

    def check_runtime(self) -> None:
        """Before serving: what the configured backend checks first (:func:`rag.health.ensure_runtime_for`; llama.cpp:
        the runtime check for this build and model, cached after it passes once;
        :class:`rag.backends.runtime_check.RuntimeCheckError` with the cause and the fix when it fails)."""
        from rag.health import ensure_runtime_for

        ensure_runtime_for(self.settings)
