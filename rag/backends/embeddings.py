"""The sentence-transformers embedder, loaded once from a local directory (never from a hub)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.backends.models import embedder_path
from rag.settings import EmbedSettings, Precision, Settings, apply_offline_env


class TextEmbedder(Protocol):
    """What retrieval, grounding, quizzes and the index need of an embedder: unit-length vectors."""

    @property
    def name(self) -> str:
        """Identifies the vector space (a changed name re-embeds the index)."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


# 0.99: bfloat16 and float32 vectors of the same texts agree to cosine 0.9995+ with MiniLM on a CPU with
# native bfloat16; below this the model runs in float32 (an emulated or broken bfloat16 path).
BF16_MIN_AGREEMENT = 0.99
_PROBE = ["Dropout randomly disables units during training.", "What is the bias-variance tradeoff?",
          "Bagging trains models on bootstrap samples in parallel and averages them to reduce variance."]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX; Linux's /proc/cpuinfo flags). Where it
    does not, torch emulates bfloat16 and it is slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


class Embedder:
    """Normalised MiniLM embeddings (cosine similarity = dot product), sentence-transformers from a local
    directory. ``precision="auto"`` runs the model in bfloat16 on a CPU that computes it natively (the
    handbooks' windows embed 1.7x faster, bench/ingest_variants.py) when its vectors agree with float32 ones
    (:data:`BF16_MIN_AGREEMENT`), else in float32."""

    def __init__(self, path: Path, settings: EmbedSettings) -> None:
        """``path``: the model's directory; ``settings``: the ``embed`` settings (device, batch size, precision)."""
        self.path = path
        self.device = settings.device
        self.batch_size = settings.batch_size
        self.precision: Precision = settings.precision
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(embedder_path(settings), settings.embed)

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    apply_offline_env()
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
                    self.precision = self._choose_precision(model)
                    self._model = model
        return self._model

    def _choose_precision(self, model: Any) -> Precision:
        """bfloat16 (the model converted) or float32, for ``precision="auto"`` by the CPU and a probe."""
        import torch

        if self.precision == "float32" or (self.precision == "auto" and (self.device != "cpu" or not native_bf16())):
            return "float32"
        reference = model.encode(_PROBE, normalize_embeddings=True, convert_to_numpy=True)
        model.to(torch.bfloat16)
        probe = model.encode(_PROBE, normalize_embeddings=True, convert_to_numpy=True)
        if self.precision == "auto" and float((reference * probe).sum(axis=1).min()) < BF16_MIN_AGREEMENT:
            model.to(torch.float32)
            return "float32"
        return "bfloat16"

    @property
    def name(self) -> str:
        return self.path.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        import numpy as np

        vectors = vectors.astype(np.float32)  # normalised once, here, at full precision (bfloat16 too)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return [v.tolist() for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


_shared: dict[tuple[str, str], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(settings: Settings) -> Embedder:
    """One embedder per (path, device) per process: the model is loaded once."""
    path = embedder_path(settings)
    key = (str(path), settings.embed.device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder.from_settings(settings)
        return _shared[key]
