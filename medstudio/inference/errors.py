"""Errors shared by the inference backends (no heavy imports here)."""
from __future__ import annotations


class ModelNotAvailable(RuntimeError):
    """A configured model cannot be loaded; the message names the setting to change."""

    def __init__(self, model_ref: str, setting: str, detail: str = ""):
        self.model_ref = model_ref
        self.setting = setting
        self.detail = detail
        hint = (
            f"Model {model_ref!r} is not available"
            + (f" ({detail})" if detail else "")
            + f". Set {setting} to a local model directory, a hub id already in the local Hugging Face"
            " cache, or a reachable server (no model is downloaded at run time)."
        )
        super().__init__(hint)


class BackendUnavailable(RuntimeError):
    """An optional backend (vLLM, CUDA) is not installed or has no device on this worker."""
