"""The sentence-transformers embedder, loaded once from a local directory (never from a hub)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rag.models import embedder_path
from rag.settings import Settings, apply_offline_env


class TextEmbedder(Protocol):
    """What retrieval, grounding, quizzes and the index need of an embedder: unit-length vectors."""

    @property
    def name(self) -> str:
        """Identifies the vector space (a changed name re-embeds the index)."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class Embedder:
    """Normalised MiniLM embeddings (cosine similarity = dot product), sentence-transformers from a local
    directory."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(embedder_path(settings), settings.embed.device, settings.embed.batch_size)

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    apply_offline_env()
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        return self._model

    @property
    def name(self) -> str:
        return self.path.name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
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
            _shared[key] = Embedder(path, settings.embed.device, settings.embed.batch_size)
        return _shared[key]
