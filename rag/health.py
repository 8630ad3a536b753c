"""`studybot doctor`'s checks: what is installed, verified and indexed, each with its fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag import models
from rag.errors import StudybotError
from rag.settings import Settings
from rag.store import Index
from rag.study.backup import backups, quick_check


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or the fix


def doctor(settings: Settings, index: Index, *, runtime: bool = True) -> list[Check]:
    """The checks in order. ``runtime``: load the model in a child process and run a real prefill (a fresh
    check; its passing verdict is cached for `serve`)."""
    from rag import llm_llama_cpp

    s = settings
    rows: list[Check] = [Check("home", True, str(s.storage.home))]
    try:
        rows.append(Check("embedder", True, str(models.embedder_path(s))))
    except StudybotError as exc:
        rows.append(Check("embedder", False, str(exc)))
    version = llm_llama_cpp.version()
    rows.append(Check("llama-cpp-python", version is not None,
                      version or "not installed: run `make run` (or `make install`)"))
    gguf: Path | None = None
    if s.llm.backend == "openai":
        rows.append(Check("llm", bool(s.llm.base_url), f"OpenAI-compatible server at {s.llm.base_url}"
                          if s.llm.base_url else "set STUDYBOT_LLM_BASE_URL"))
    elif s.llm.model:
        try:
            models.check_gguf_header(Path(s.llm.model).expanduser())
            gguf = Path(s.llm.model).expanduser()
            rows.append(Check("llm", True, f"{gguf} (GGUF header ok)"))
        except StudybotError as exc:
            rows.append(Check("llm", False, str(exc)))
    else:
        try:
            models.part_paths()
            rows.append(Check("model packages", True, f"{models.N_PARTS} parts installed"))
        except StudybotError as exc:
            rows.append(Check("model packages", False, str(exc)))
        st = models.default_gguf_status(s)
        rows.append(Check("default model", st.verified,
                          f"{st.path} ({st.detail})" + ("" if st.verified else "; run `studybot doctor --fix`")))
        gguf = st.path if st.verified else None
    if runtime and gguf is not None:
        from rag.runtime_check import check_runtime

        try:
            verdict = check_runtime(gguf, s.storage.models_dir, n_threads=s.llm.threads,
                                    n_gpu_layers=s.llm.n_gpu_layers, force=True)
            rows.append(Check("llama.cpp runtime", verdict.ok, verdict.message))
        except StudybotError as exc:
            rows.append(Check("llama.cpp runtime", False, str(exc)))
    try:
        manifest = index.manifest()
        if manifest.collection:
            n = sum(r.chunks for r in manifest.files.values())
            rows.append(Check("index", True, f"{len(manifest.files)} documents, {n} chunks at {index.where}"))
        else:
            rows.append(Check("index", False, "empty: run `studybot ingest` (or `make run`)"))
    except StudybotError as exc:
        rows.append(Check("index", False, str(exc)))
    rows.append(study_check(s))
    from rag.quiz.bank import bank_check

    rows.append(Check("question bank", *bank_check(s, index)))
    return rows


def study_check(settings: Settings) -> Check:
    """The study database passes ``PRAGMA quick_check``; how many backups there are and the newest one's time."""
    path, folder = settings.storage.study_path, settings.storage.backups_dir
    found = backups(folder, path.stem)
    kept = (f"{len(found)} backup{'s' if len(found) != 1 else ''} in {folder}, newest {found[-1].when}" if found
            else f"no backup in {folder} yet")
    if not path.exists():
        return Check("study database", True, f"none yet at {path} ({kept})")
    problem = quick_check(path)
    if problem is None:
        return Check("study database", True, f"{path} (quick_check ok; {kept})")
    fix = ("run `studybot doctor --fix` to restore the newest good backup" if found else
           "there is no backup to restore: move it aside to start afresh, or copy back a copy you keep")
    return Check("study database", False, f"{path} is damaged ({problem}; {kept}): {fix}")


def ensure_runtime_for(settings: Settings) -> None:
    """The llama.cpp runtime check for the configured model (cached after it passes once); raises
    :class:`rag.runtime_check.RuntimeCheckError` with the cause and the fix when it fails. A no-op for the
    OpenAI-compatible backend or with ``llm.runtime_check`` off."""
    s = settings
    if s.llm.backend != "llama_cpp" or not s.llm.runtime_check:
        return
    from rag.models import resolve_gguf
    from rag.runtime_check import ensure_runtime

    ensure_runtime(resolve_gguf(s, show_progress=True), s.storage.models_dir, n_threads=s.llm.threads,
                   n_gpu_layers=s.llm.n_gpu_layers)
