"""Sentence embeddings: sentence-transformers in-process, or an OpenAI-compatible /v1/embeddings server.

    embedder = load_embedder("BAAI/bge-m3")                         # local dir or cached hub id
    embedder = load_embedder("bge-m3", base_url="http://gpu:8000/v1") # e.g. `vllm serve --task embed`
    vectors = embedder.encode(texts)                                 # float32 [n, dim], L2-normalised

Loaded models are cached per process (workers score many batches with one model).
"""
from __future__ import annotations

import functools
from typing import Any, Protocol, Sequence

from medstudio.inference.errors import ModelNotAvailable
from medstudio.inference.resolve import resolve_local_model

DEFAULT_EMBEDDING_MODEL = "BAAI/bge-m3"  # CareBot's encoder (docs/METHODS.md 1.1)
DEFAULT_SETTING = "MEDSTUDIO_EMBEDDING_MODEL"


class EmbeddingError(RuntimeError):
    """A batch could not be embedded (server error, malformed reply); `reason` is shown per item."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Embedder(Protocol):
    model_ref: str

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any: ...

    @property
    def dim(self) -> int: ...


class SentenceTransformerEmbedder:
    """sentence-transformers model from a local directory (or cached hub id)."""

    def __init__(self, model_ref: str, *, device: str | None = None, batch_size: int = 32,
                 max_seq_length: int | None = None, normalize: bool = True, setting: str = DEFAULT_SETTING):
        self.model_ref = model_ref
        self.batch_size = batch_size
        self.normalize = normalize
        path = resolve_local_model(model_ref, setting)
        try:
            from sentence_transformers import SentenceTransformer

            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self.model = SentenceTransformer(path, device=device, local_files_only=True)
        except ModelNotAvailable:
            raise
        except Exception as exc:
            raise ModelNotAvailable(model_ref, setting, f"failed to load: {type(exc).__name__}: {exc}") from None
        if max_seq_length:
            self.model.max_seq_length = max_seq_length

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None):
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=batch_size or self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


class OpenAIEmbedder:
    """Any OpenAI-compatible /v1/embeddings endpoint (OpenAI, vLLM, TEI's OpenAI route...)."""

    def __init__(self, model_ref: str, *, base_url: str, api_key: str = "EMPTY", timeout: float = 60,
                 max_retries: int = 3, batch_size: int = 64, normalize: bool = True):
        import openai

        self.model_ref = model_ref
        self.base_url = base_url
        self.batch_size = batch_size
        self.normalize = normalize
        self._dim: int | None = None
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout,
                                    max_retries=max_retries)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode(["dimension probe"]).shape[1])
        return self._dim

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None):
        import numpy as np
        import openai

        size = batch_size or self.batch_size
        rows: list[list[float]] = []
        for start in range(0, len(texts), size):
            batch = list(texts[start:start + size])
            try:
                resp = self.client.embeddings.create(model=self.model_ref, input=batch)
                data = sorted(resp.data, key=lambda d: d.index)
                vectors = [list(d.embedding) for d in data]
            except openai.APIStatusError as exc:
                raise EmbeddingError(f"HTTP {exc.status_code} from embeddings server") from None
            except openai.APIConnectionError as exc:
                raise EmbeddingError(f"cannot reach embeddings server {self.base_url}: {type(exc).__name__}") from None
            except Exception as exc:  # malformed bodies surface as validation/attribute errors
                raise EmbeddingError(f"malformed embeddings reply: {type(exc).__name__}") from None
            if len(vectors) != len(batch) or len({len(v) for v in vectors}) > 1:
                raise EmbeddingError(f"embeddings server returned {len(vectors)} vectors for {len(batch)} texts")
            rows.extend(vectors)
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        arr = np.asarray(rows, dtype=np.float32)
        if self.normalize:
            arr /= np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
        self._dim = arr.shape[1]
        return arr


@functools.lru_cache(maxsize=4)
def load_embedder(model_ref: str = DEFAULT_EMBEDDING_MODEL, *, base_url: str | None = None, api_key: str = "EMPTY",
                  device: str | None = None, batch_size: int = 32, max_seq_length: int | None = None,
                  setting: str = DEFAULT_SETTING) -> Embedder:
    """The embedder for a configuration, cached per process."""
    if base_url:
        return OpenAIEmbedder(model_ref, base_url=base_url, api_key=api_key, batch_size=batch_size)
    return SentenceTransformerEmbedder(model_ref, device=device, batch_size=batch_size,
                                       max_seq_length=max_seq_length, setting=setting)
