"""The sentence-transformers embedder, loaded once from a local directory (never from a hub)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.models import embedder_path
from rag.settings import Settings, apply_offline_env


class Embedder:
    """Normalised MiniLM embeddings (cosine similarity = dot product)."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 64) -> None:
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(embedder_path(settings), settings.embed_device, settings.embed_batch_size)

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
    def dimension(self) -> int:
        dim = self.model.get_sentence_embedding_dimension()
        return int(dim) if dim else 384

    def embed(self, texts: Sequence[str], show_progress: bool = False) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=show_progress,
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
    key = (str(path), settings.embed_device)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(path, settings.embed_device, settings.embed_batch_size)
        return _shared[key]


class LangChainEmbeddings:
    """LangChain ``Embeddings`` over our embedder (used by Ragas and LangChain components)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)
