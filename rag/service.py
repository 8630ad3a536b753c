"""The service layer: the one object the CLI and the UI talk to.

It owns the settings, the embedder, the index, the retriever and (lazily) the LLM. Nothing above it
touches Chroma or llama.cpp directly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import IndexStateError, StudybotError
from rag.settings import Settings, apply_offline_env, get_settings
from rag.types import Passage


@dataclass
class DocumentInfo:
    source: str
    title: str
    chunks: int
    ingested_at: float
    kind: str


class StudyService:
    def __init__(self, settings: Settings | None = None, llm: Any = None) -> None:
        apply_offline_env()
        self.settings = settings or get_settings()
        self._embedder: Any = None
        self._index: Any = None
        self._retriever: Any = None
        self._llm = llm
        self._lock = threading.RLock()

    # -- components (lazy) -----------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from rag.embeddings import shared_embedder

            self._embedder = shared_embedder(self.settings)
        return self._embedder

    @property
    def index(self) -> Any:
        if self._index is None:
            from ingest.store import Index

            self._index = Index(self.settings, self.embedder)
        return self._index

    @property
    def retriever(self) -> Any:
        if self._retriever is None:
            from rag.retrieval import HybridRetriever

            self._retriever = HybridRetriever.from_settings(self.index)
        return self._retriever

    @property
    def llm(self) -> Any:
        if self._llm is None:
            with self._lock:
                if self._llm is None:
                    from rag.llm import get_llm

                    self._llm = get_llm(self.settings)
        return self._llm

    @property
    def library(self) -> Any:
        """The document library (:class:`ingest.library.Library`): corpus folder + uploads, one index."""
        if getattr(self, "_library", None) is None:
            from ingest.library import Library

            self._library = Library(self.index)
        return self._library

    # -- ingest ----------------------------------------------------------------------------------
    def ingest(self, path: Path | None = None, *, rebuild: bool = False, show_progress: bool = False,
               progress: Any = None, on_plan: Any = None, max_file_mb: float | None = None) -> Any:
        """Sync the index with the library: the corpus folder (or ``path`` instead) and the uploads."""
        with self._lock:
            summary = self.library.sync(path, rebuild=rebuild, show_progress=show_progress, progress=progress,
                                        on_plan=on_plan, max_file_mb=max_file_mb)
            if summary.changed or rebuild:
                self._refresh_retriever()
            return summary

    def add_documents(self, paths: list[Path], *, names: list[str] | None = None, progress: Any = None,
                      on_plan: Any = None, max_file_mb: float | None = None) -> Any:
        """Add files to the library (checked, saved into the uploads folder, indexed incrementally)."""
        with self._lock:
            results = self.library.add(paths, names=names, progress=progress, on_plan=on_plan,
                                       max_file_mb=max_file_mb)
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

    def add_files(self, files: list[tuple[str, Path]], progress: Any = None) -> Any:
        """Index single files under the given source names without touching the rest of the index."""
        from ingest.pipeline import ingest_paths

        with self._lock:
            summary = ingest_paths(self.index, files, prune=False, progress=progress)
            if summary.changed:
                self._refresh_retriever()
            return summary

    def _refresh_retriever(self) -> None:
        if self._retriever is not None:
            self._retriever.refresh(force=True)

    def needs_ingest(self, path: Path | None = None) -> bool:
        """True when the index is missing or a library file changed (cheap: hashes only)."""
        from ingest.loaders import file_sha256
        from ingest.pipeline import chunk_params

        try:
            manifest = self.index.manifest()
        except IndexStateError:
            return True
        if not manifest.collection or manifest.params != chunk_params(self.index):
            return True
        files = dict(self.library.files(path).files)
        if set(files) != set(manifest.files):
            return True
        return any(file_sha256(p) != manifest.files[s].hash for s, p in files.items())

    def documents(self) -> list[DocumentInfo]:
        manifest = self.index.manifest()
        return [
            DocumentInfo(src, rec.title, rec.chunks, rec.ingested_at,
                         f"duplicate of {rec.duplicate_of}" if rec.duplicate_of else rec.kind)
            for src, rec in sorted(manifest.files.items())
        ]

    # -- retrieval -------------------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, mode: str = "hybrid") -> list[Passage]:
        return self.retriever.retrieve(question, k or self.settings.top_k, mode)

    # -- health ----------------------------------------------------------------------------------
    def doctor(self, runtime: bool = True) -> list[tuple[str, bool, str]]:
        """(check, ok, detail-or-fix) rows for `studybot doctor`. ``runtime``: load the model in a child process
        and run a real prefill (a fresh check; its passing verdict is cached for `serve`)."""
        from rag import models

        rows: list[tuple[str, bool, str]] = []
        s = self.settings
        rows.append(("home", True, str(s.home)))
        try:
            rows.append(("embedder", True, str(models.embedder_path(s))))
        except StudybotError as exc:
            rows.append(("embedder", False, str(exc)))
        try:
            import llama_cpp  # noqa: F401

            rows.append(("llama-cpp-python", True, getattr(llama_cpp, "__version__", "installed")))
        except ImportError:
            rows.append(("llama-cpp-python", False, "not installed: run `make run` (or pip install -e .)"))
        gguf: Path | None = None
        if s.llm_backend == "openai":
            rows.append(("llm", bool(s.llm_base_url), f"OpenAI-compatible server at {s.llm_base_url}"
                         if s.llm_base_url else "set STUDYBOT_LLM_BASE_URL"))
        elif s.llm_model:
            try:
                models.check_gguf_header(Path(s.llm_model).expanduser())
                gguf = Path(s.llm_model).expanduser()
                rows.append(("llm", True, f"{gguf} (GGUF header ok)"))
            except StudybotError as exc:
                rows.append(("llm", False, str(exc)))
        else:
            try:
                models.part_paths()
                parts_ok, parts_detail = True, f"{models.N_PARTS} parts installed"
            except StudybotError as exc:
                parts_ok, parts_detail = False, str(exc)
            rows.append(("model packages", parts_ok, parts_detail))
            st = models.default_gguf_status(s)
            rows.append(("default model", st.verified,
                         f"{st.path} ({st.detail})" + ("" if st.verified else "; run `studybot doctor --fix`")))
            gguf = st.path if st.verified else None
        if runtime and gguf is not None:
            from rag.runtime_check import check_runtime

            try:
                verdict = check_runtime(gguf, s.models_dir, n_threads=s.threads, n_gpu_layers=s.n_gpu_layers,
                                        force=True)
                rows.append(("llama.cpp runtime", verdict.ok, verdict.message))
            except StudybotError as exc:
                rows.append(("llama.cpp runtime", False, str(exc)))
        try:
            manifest = self.index.manifest()
            if manifest.collection:
                n = sum(r.chunks for r in manifest.files.values())
                rows.append(("index", True, f"{len(manifest.files)} documents, {n} chunks at {self.index.where}"))
            else:
                rows.append(("index", False, "empty: run `studybot ingest` (or `make run`)"))
        except StudybotError as exc:
            rows.append(("index", False, str(exc)))
        return rows

    def check_runtime(self) -> None:
        """Before serving: the llama.cpp runtime check for this build and model (cached after it passes once);
        :class:`rag.runtime_check.RuntimeCheckError` with the cause and the fix when it fails."""
        s = self.settings
        if s.llm_backend != "llama_cpp" or not s.runtime_check:
            return
        from rag.models import resolve_gguf
        from rag.runtime_check import ensure_runtime

        ensure_runtime(resolve_gguf(s, show_progress=True), s.models_dir, n_threads=s.threads,
                       n_gpu_layers=s.n_gpu_layers)

    # -- answers (issue 3) -----------------------------------------------------------------------------
    @property
    def answer_pipeline(self) -> Any:
        """The retrieve -> pack -> prompt -> model -> cite pipeline (the model loads on first real use)."""
        pipeline = getattr(self, "_answer_pipeline", None)
        if pipeline is None:
            from rag.answer import AnswerPipeline

            pipeline = AnswerPipeline(self.retriever, lambda: self.llm, self.settings)
            self._answer_pipeline = pipeline
        return pipeline

    def warm_up(self) -> None:
        """Load the model and evaluate the fixed part of the answer prompt (system message and examples), so
        the first question pays only for its own passages. Best effort: errors surface on the first question."""
        import contextlib

        from rag.answer import AnswerPipeline

        with contextlib.suppress(StudybotError):
            self.llm.complete(AnswerPipeline.messages("", "warm-up"), max_tokens=1, temperature=0.0)

    def ask(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Any:
        """A grounded, cited :class:`rag.answer.Answer` (or a refusal)."""
        return self.answer_pipeline.ask(question, k=k, max_tokens=max_tokens)

    def ask_stream(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Any:
        """Events ``("passages", [...])``, ``("delta", text)``..., ``("answer", Answer)``."""
        return self.answer_pipeline.stream(question, k=k, max_tokens=max_tokens)

    def chat_session(self) -> Any:
        """A new :class:`rag.chat.ChatSession` (history bounded by ``settings.history_turns``)."""
        from rag.chat import ChatSession

        return ChatSession(self.answer_pipeline)

    # -- quizzes ---------------------------------------------------------------------------------
    def quiz(self, topic: str | None = None, n: int = 5, qtype: str = "mcq", *, session: Any = None,
             progress: Any = None) -> Any:
        """Generate ``n`` validated quiz items (``rag.quiz.QuizResult``) on a topic, or spread across the
        handbooks' sections when ``topic`` is empty. ``session`` (``rag.quiz.QuizSession``) carries coverage
        and earlier questions between calls; ``QuizError`` when the topic is not in the handbooks."""
        from rag.quiz import QuizMaker

        maker = QuizMaker(self.llm, self.embedder, self.retriever)
        return maker.make(topic, n, qtype, session=session, progress=progress)

    def grade(self, item: Any, answer: str) -> Any:
        """Grade an answer to a quiz item (``rag.quiz.GradeResult``; feedback quotes the cited passage)."""
        from rag.quiz import QuizItem, grade_answer

        if isinstance(item, dict):
            item = QuizItem.from_json(item)
        return grade_answer(item, answer, self.embedder)
