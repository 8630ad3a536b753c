"""`studybot doctor`'s checks of the core: what is installed, verified and indexed, each with its fix. The
configured LLM backend adds its own lines through the registry (:meth:`rag.llm.Backend.check`); the study
database's and the question bank's lines come from their packages (``ui/service.py`` puts them after these)."""

from __future__ import annotations

from dataclasses import dataclass

from rag.backends import models
from rag.backends.store import Index
from rag.errors import StudybotError
from rag.llm import backend_for
from rag.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or the fix


def doctor(settings: Settings, index: Index, *, runtime: bool = True) -> list[Check]:
    """The checks in order. ``runtime``: load the model in a child process and run a real prefill (a fresh
    check; its passing verdict is cached for `serve`)."""
    from rag.backends import llama_cpp

    s = settings
    rows: list[Check] = [Check("home", True, str(s.storage.home))]
    try:
        rows.append(Check("embedder", True, str(models.embedder_path(s))))
    except StudybotError as exc:
        rows.append(Check("embedder", False, str(exc)))
    version = llama_cpp.version()
    rows.append(Check("llama-cpp-python", version is not None,
                      version or "not installed: run `make run` (or `make install`)"))
    rows += [Check(*line) for line in backend_for(s.llm.backend).check(s, runtime=runtime)]
    try:
        manifest = index.manifest()
        if manifest.collection:
            n = sum(r.chunks for r in manifest.files.values())
            rows.append(Check("index", True, f"{len(manifest.files)} documents, {n} chunks at {index.where}"))
        else:
            rows.append(Check("index", False, "empty: run `studybot ingest` (or `make run`)"))
    except StudybotError as exc:
        rows.append(Check("index", False, str(exc)))
    return rows


def ensure_runtime_for(settings: Settings) -> None:
    """Before serving: what the configured backend checks before its first call (:meth:`rag.llm.Backend.prepare`;
    llama.cpp: the runtime check for the configured model, cached after it passes once, raising
    :class:`rag.backends.runtime_check.RuntimeCheckError` with the cause and the fix when it fails; nothing for
    the OpenAI-compatible backend or with ``llm.runtime_check`` off)."""
    backend_for(settings.llm.backend).prepare(settings)
