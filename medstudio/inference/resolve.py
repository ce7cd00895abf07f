"""Turn a configured model reference into a local directory, never downloading anything."""
from __future__ import annotations

import os

from medstudio.inference.errors import ModelNotAvailable


def resolve_local_model(model_ref: str, setting: str) -> str:
    """A local directory for `model_ref` (a path, or a hub id already in the local HF cache).

    Raises ModelNotAvailable naming `setting` otherwise: run time has no network by design.
    """
    if not model_ref or not str(model_ref).strip():
        raise ModelNotAvailable(str(model_ref), setting, "no model configured")
    ref = os.path.expanduser(str(model_ref).strip())
    if os.path.isdir(ref):
        return ref
    looks_like_path = ref.startswith(("/", ".", "~")) or os.sep in ref and ref.count("/") != 1
    if looks_like_path or os.path.exists(ref):
        raise ModelNotAvailable(model_ref, setting, "no such directory")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(ref, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, offline errors...
        raise ModelNotAvailable(model_ref, setting, f"not in the local Hugging Face cache: {type(exc).__name__}") from None
