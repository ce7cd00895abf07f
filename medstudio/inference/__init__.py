"""Inference backends (chat, embeddings, causal-LM scoring).

Importing this package is cheap: torch, transformers, sentence-transformers, vllm and openai are
imported inside the functions that need them, so the web process can import it freely.
"""
from medstudio.inference.errors import BackendUnavailable, ModelNotAvailable

__all__ = ["BackendUnavailable", "ModelNotAvailable"]
