"""Shared fixtures: all state in a temp dir, offline env, real embedder, a real ingested corpus."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rag.settings import Settings, apply_offline_env
from tests.helpers import MODELS_CACHE, served_app

ROOT = Path(__file__).resolve().parent.parent
apply_offline_env()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The llama.cpp runtime check before any test (cached per build and model after it passes once): a build
    that crashes on this CPU stops the run here with its one-sentence cause and fix, instead of killing pytest
    half-way through with "Fatal Python error: Illegal instruction"."""
    from rag.backends.models import ensure_default_gguf
    from rag.backends.runtime_check import check_runtime
    from rag.errors import StudybotError

    settings = Settings(storage={"models_cache": MODELS_CACHE}, llm={"model": None})
    try:
        gguf = ensure_default_gguf(settings, show_progress=False)
        verdict = check_runtime(gguf, settings.storage.models_dir, n_threads=settings.llm.threads)
    except StudybotError as exc:
        pytest.exit(str(exc), returncode=3)
    if not verdict.ok:
        pytest.exit(verdict.message, returncode=3)


@pytest.fixture(autouse=True)
def studybot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own STUDYBOT_HOME; no test reads or writes the user's real state."""
    home = tmp_path / "studybot-home"
    monkeypatch.setenv("STUDYBOT_HOME", str(home))
    monkeypatch.setenv("STUDYBOT_MODELS_CACHE", str(MODELS_CACHE))
    for var in ("STUDYBOT_LLM_MODEL", "STUDYBOT_LLM_BACKEND", "STUDYBOT_LLM_BASE_URL", "STUDYBOT_CHROMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return ROOT / "corpus"


@pytest.fixture(scope="session")
def embedder():
    from rag.backends.embeddings import Embedder

    return Embedder.from_settings(Settings())


@pytest.fixture(scope="session")
def corpus_home(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, embedder) -> Path:
    """A home with the real corpus ingested once per test session (tests must not modify it)."""
    from ingest.pipeline import ingest_corpus
    from rag.backends.store import Index

    home = tmp_path_factory.mktemp("corpus-home")
    settings = Settings(storage={"home": home, "models_cache": MODELS_CACHE})
    summary = ingest_corpus(Index(settings, embedder), corpus_dir)
    assert summary.ok and summary.chunks_total > 100
    return home


@pytest.fixture
def corpus_settings(corpus_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a private copy of the session's ingested corpus (safe to modify)."""
    home = tmp_path / "home-copy"
    shutil.copytree(corpus_home, home)
    monkeypatch.setenv("STUDYBOT_HOME", str(home))
    return Settings(storage={"home": home, "models_cache": MODELS_CACHE})


@pytest.fixture(scope="session")
def corpus_service(corpus_home: Path, embedder):
    """A read-only service over the session's ingested corpus (shared: do not ingest through it)."""
    from ui.service import StudyService

    svc = StudyService(Settings(storage={"home": corpus_home, "models_cache": MODELS_CACHE}), embedder=embedder)
    return svc


@pytest.fixture
def quiz_svc(corpus_service, tmp_path):  # type: ignore[no-untyped-def]
    """``quiz_svc(*replies)``: a service over the shared corpus (its index, retriever and embedder) with a
    :class:`tests.fakes.PassageLLM` holding the replies (strings, exceptions, or functions of the messages;
    ``glossary=``, ``match=``: how it writes glossaries and matches MCQ options to terms), and a study database of its own under ``tmp_path``."""
    from tests.fakes import PassageLLM
    from ui.service import StudyService

    settings = corpus_service.settings.updated(storage={"study_db": tmp_path / "study.sqlite3"})
    texts = [c.text for c in corpus_service.retriever.chunks.values()]

    def make(*replies, glossary=None, match=None):  # type: ignore[no-untyped-def]
        return StudyService(settings, embedder=corpus_service.embedder, index=corpus_service.index,
                            retriever=corpus_service.retriever,
                            llm=PassageLLM(list(replies), glossary=glossary, match=match, texts=texts))

    return make


# --- browser tests (Playwright + Debian's Chromium) ---------------------------------------------------------
CHROMIUM = Path(os.environ.get("STUDYBOT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the item, so fixtures can tell in teardown whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Debian's, launched by Playwright); skipped where it is not installed. Module scope:
    Playwright's sync API keeps an asyncio loop running in the main thread until it stops, and later tests
    (Ragas) need ``asyncio.run``."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make browsers` (apt-get install chromium) installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def real_app(tmp_path_factory: pytest.TempPathFactory, corpus_home: Path, embedder):
    """The whole app on a free loopback port around a real service: a private copy of the ingested corpus
    and the real default GGUF (short answers)."""
    from ui.service import StudyService

    home = tmp_path_factory.mktemp("browser") / "home"
    shutil.copytree(corpus_home, home)
    settings = Settings(storage={"home": home, "models_cache": MODELS_CACHE}, llm={"max_tokens": 72, "temperature": 0.0},
                        # The MCQ option check is left to test_quiz_e2e.py: here the quiz tab's wiring is
                        # under test, and a one-question quiz must not fail on the model's picks.
                        quiz={"temperature": 0.0, "check_options_with_model": False})
    svc = StudyService(settings, embedder=embedder)
    with served_app(svc) as served:
        yield served


@pytest.fixture
def page(chromium, real_app, request: pytest.FixtureRequest):
    """A fresh browser page on the app; a screenshot goes to test-artifacts/ when the test fails."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(real_app["url"])
    pg.locator("#sb-question").wait_for()
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"{request.node.name}.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()
