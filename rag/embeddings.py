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

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 16) -> None:
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

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
                         ) -> tuple[list[list[float]], list[list[list[float] | None]]]:
        """One model pass per text: its vector (the same mean pooling as :meth:`embed`) and, for each
        character span of it, the mean of the token vectors inside the span (normalised); None for a span
        past the model's length limit (the text was cut there). Spans are pooled from the whole text's
        context ("late chunking"), so their vectors cost no extra pass."""
        import numpy as np
        import torch

        model = self.model
        vectors: list[list[float]] = [[] for _ in texts]
        pooled: list[list[list[float] | None]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            enc = model.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=model.max_seq_length, return_offsets_mapping=True,
                                  return_tensors="pt")
            offsets = enc.pop("offset_mapping").numpy()
            with torch.inference_mode():
                out = model({k: v.to(model.device) for k, v in enc.items()})
            tokens = out["token_embeddings"].float().cpu().numpy()
            sentence = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=-1).cpu().numpy()
            mask = enc["attention_mask"].numpy().astype(bool)
            for row, i in enumerate(idx):
                vectors[i] = sentence[row].tolist()
                starts, ends = offsets[row, :, 0], offsets[row, :, 1]
                real = mask[row] & (ends > starts)  # special and padding tokens have empty offsets
                for a, z in spans[i]:
                    sel = real & (starts < z) & (ends > a)
                    if not sel.any() or (ends[real].max(initial=0) < z and sel.sum() < 3):
                        pooled[i].append(None)  # cut off by the length limit
                        continue
                    v = tokens[row][sel].mean(axis=0)
                    pooled[i].append((v / (np.linalg.norm(v) or 1.0)).tolist())
        return vectors, pooled


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
