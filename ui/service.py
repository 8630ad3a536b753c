"""The composition root: :class:`StudyService`, the one object the CLI and the web UI talk to.

It builds the parts from the settings (embedder -> index -> library, retriever -> answer pipeline, quiz maker,
LLM), each lazily on first use, and takes any of them ready-made instead: tests pass fakes through the
constructor (``StudyService(settings, embedder=HashEmbedder(), llm=ScriptedLLM([...]))``), never by setting
attributes. Nothing here touches Chroma or llama.cpp: those live behind :mod:`rag.store` and
:mod:`rag.llm_llama_cpp`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import StudybotError
from rag.settings import Settings, apply_offline_env, get_settings

if TYPE_CHECKING:
    from ingest.library import AddResult, Library
    from ingest.pipeline import IngestSummary, PlanFn
    from rag.answer import Answer, AnswerPipeline
    from rag.answer.chat import ChatSession
    from rag.embeddings import TextEmbedder
    from rag.events import AnswerEvent
    from rag.health import Check
    from rag.llm import LLM
    from rag.quiz import GradeResult, QuizItem, QuizResult, QuizSession
    from rag.quiz.glossary import Glossary
    from rag.retrieval import Mode, Retriever
    from rag.store import Index
    from rag.study.guide import StudyGuide
    from rag.study.store import StudyStore
    from rag.types import Passage, Progress


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

    # -- parts (built on first use unless given) ----------------------------------------------------
    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            from rag.embeddings import shared_embedder

            self._embedder = shared_embedder(self.settings)
        return self._embedder

    @property
    def index(self) -> Index:
        if self._index is None:
            from rag.store import Index

            self._index = Index(self.settings, self.embedder)
        return self._index

    @property
    def retriever(self) -> Retriever:
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
    def library(self) -> Library:
        """The document library: corpus folder + uploads, one index."""
        if self._library is None:
            from ingest.library import Library

            self._library = Library(self.index)
        return self._library

    @property
    def answers(self) -> AnswerPipeline:
        """The retrieve -> pack -> prompt -> model -> cite pipeline (the model loads on first real use)."""
        if self._answers is None:
            from rag.answer import AnswerPipeline

            self._answers = AnswerPipeline(self.retriever, lambda: self.llm, self.settings, embedder=self.embedder)
        return self._answers

    @property
    def study(self) -> StudyStore:
        """The study database (``<home>/study.sqlite3``): quiz items, reviews, FSRS cards, conversations; backed
        up into ``backups/`` beside it (:mod:`rag.study.backup`)."""
        if self._study is None:
            from rag.study.backup import BackupPolicy
            from rag.study.store import StudyStore

            storage = self.settings.storage
            self._study = StudyStore(storage.study_path, BackupPolicy(storage.backups_dir, storage.study_backups))
        return self._study

    @property
    def glossary(self) -> Glossary:
        """The passages' glossaries the MCQs are built from, kept between quizzes (one model call per passage)."""
        if self._glossary is None:
            from rag.quiz.glossary import Glossary

            self._glossary = Glossary(self.llm, self.embedder, self.retriever.idf)
        return self._glossary

    def record_quiz(self, user: str, items: list[QuizItem]) -> list[int]:
        """Make ``items`` study cards for ``user`` (due at once), remembering the text of the chunk each cites."""
        chunks = self.retriever.chunks
        hashes = {i.citation.chunk_id: chunks[i.citation.chunk_id].content_hash
                  for i in items if i.citation.chunk_id in chunks}
        return self.study.add_items(user, items, content_hashes=hashes)

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

    def documents(self) -> list[DocumentInfo]:
        manifest = self.index.manifest()
        return [
            DocumentInfo(src, rec.title, rec.chunks, rec.ingested_at,
                         f"duplicate of {rec.duplicate_of}" if rec.duplicate_of else rec.kind)
            for src, rec in sorted(manifest.files.items())
        ]

    # -- retrieval and answers -----------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, mode: Mode = "hybrid") -> list[Passage]:
        return self.retriever.retrieve(question, k or self.settings.retrieval.top_k, mode)

    def ask(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Answer:
        """A grounded, cited answer (or a refusal)."""
        return self.answers.ask(question, k=k, max_tokens=max_tokens)

    def ask_stream(self, question: str, k: int | None = None, max_tokens: int | None = None
                   ) -> Iterator[AnswerEvent]:
        """Typed events (:mod:`rag.events`): the passages, text deltas, then the final answer."""
        return self.answers.stream(question, k=k, max_tokens=max_tokens)

    def chat_session(self) -> ChatSession:
        """A new conversation (history bounded by ``settings.answer.history_turns``)."""
        from rag.answer.chat import ChatSession

        return ChatSession(self.answers)

    def warm_up(self) -> None:
        """Load the model and keep the answer path's fixed prompt prefix evaluated (or loaded from the state the
        last process saved), so the first question pays only for its own tokens. Touches only the model: the
        CLI runs it in a thread while the embedder and the index open. Best effort: errors surface on the
        first question."""
        from rag.answer.pipeline import warm_up

        with contextlib.suppress(StudybotError):
            warm_up(self.llm)

    # -- quizzes -------------------------------------------------------------------------------------
    def quiz(self, topic: str | None = None, n: int = 5, qtype: str = "mcq", *, session: QuizSession | None = None,
             progress: Progress | None = None) -> QuizResult:
        """``n`` validated quiz items on a topic, or spread across the handbooks' sections when ``topic`` is
        empty. ``session`` carries coverage and earlier questions between calls; ``QuizError`` when the topic
        is not in the handbooks."""
        from rag.quiz import QuizMaker

        maker = QuizMaker(self.llm, self.embedder, self.retriever, self.settings.quiz, glossary=self.glossary)
        return maker.make(topic, n, qtype, session=session, progress=progress)

    def weak_quiz(self, user: str, n: int = 5, qtype: str = "mcq", *, session: QuizSession | None = None,
                  progress: Progress | None = None) -> tuple[QuizResult, list[dict[str, Any]]]:
        """New questions from the sections ``user`` does worst on (:meth:`StudyStore.weak_sections`), never one
        they already have; returns the quiz and the weak sections it drew on. ``QuizError`` when there is
        no weak spot yet."""
        from rag.quiz import QuizError, QuizMaker, QuizSession
        from rag.study.store import top_section

        weak = self.study.weak_sections(user)
        if not weak:
            raise QuizError(f"No weak spots for {user} yet: review some cards first (a weak spot is a section "
                            "whose cards you get wrong).")
        wanted = {(w["source"], w["section"]) for w in weak}
        session = session if session is not None else QuizSession()
        earlier = self.study.questions(user)
        session.avoid(earlier, self.embedder.embed(earlier) if earlier else [], self.study.chunk_ids(user))
        maker = QuizMaker(self.llm, self.embedder, self.retriever, self.settings.quiz, glossary=self.glossary)
        result = maker.make(None, n, qtype, session=session, progress=progress,
                            where=lambda c: (c.source, top_section(c.section, c.source)) in wanted)
        return result, weak

    def guide(self, topic: str) -> StudyGuide:
        """A one-page study guide on a topic or section, every line cited and validated like an answer."""
        from rag.study.guide import GuideMaker

        maker = GuideMaker(self.llm, self.retriever, self.answers.verifier, self.settings.quiz)
        return maker.make(topic)

    def grade(self, item: QuizItem, answer: str) -> GradeResult:
        """Grade an answer to a quiz item (the feedback quotes the cited passage)."""
        from rag.quiz import grade_answer

        return grade_answer(item, answer, self.embedder, self.settings.quiz)

    # -- health --------------------------------------------------------------------------------------
    def doctor(self, runtime: bool = True) -> list[Check]:
        """What is installed, verified and indexed (:func:`rag.health.doctor`)."""
        from rag.health import doctor

        return doctor(self.settings, self.index, runtime=runtime)

    def check_runtime(self) -> None:
        """Before serving: the llama.cpp runtime check for this build and model (cached after it passes once);
        :class:`rag.runtime_check.RuntimeCheckError` with the cause and the fix when it fails."""
        from rag.health import ensure_runtime_for

        ensure_runtime_for(self.settings)
