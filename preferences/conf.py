"""Preference settings, read from Django settings / environment with the papers' defaults.

Every default here can be overridden in settings (MEDSTUDIO_PREF_*) or per job in the forms.
"""
from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings


def _get(name: str, default: Any) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, (dict, list)):
        return json.loads(raw)
    return raw


def chat_url() -> str:
    return _get("MEDSTUDIO_CHAT_URL", "")


def chat_model() -> str:
    return _get("MEDSTUDIO_CHAT_MODEL", "Qwen/Qwen2.5-7B-Instruct")


def pref_judge_url() -> str:
    """The preference-stage judge server, when one is set apart from MEDSTUDIO_CHAT_URL."""
    return _get("MEDSTUDIO_PREF_JUDGE_URL", "")


def judge_url() -> str:
    return pref_judge_url() or chat_url()


def judge_models() -> list[str]:
    """SF-Med voted with three open judge models; one default here, a list in settings."""
    return list(_get("MEDSTUDIO_PREF_JUDGE_MODELS", [chat_model()]))


def reward_base_model() -> str:
    return _get("MEDSTUDIO_PREF_REWARD_BASE", "Qwen/Qwen2.5-0.5B-Instruct")


def reward_k() -> int:
    return int(_get("MEDSTUDIO_PREF_REWARD_K", 10))  # SF-Med: 10 reward models


def prices() -> dict[str, tuple[float, float]]:
    """model -> (USD per 1M prompt tokens, USD per 1M completion tokens); "*" matches any model."""
    return {k: tuple(v) for k, v in dict(_get("MEDSTUDIO_PREF_PRICES", {})).items()}


def batch_size() -> int:
    return int(_get("MEDSTUDIO_PREF_BATCH_SIZE", 16))


def max_workers() -> int:
    return int(_get("MEDSTUDIO_PREF_MAX_WORKERS", 4))


def outage_retry_wait() -> float:
    return float(_get("MEDSTUDIO_PREF_OUTAGE_RETRY_WAIT", 5.0))


def chat_timeout() -> float:
    return float(_get("MEDSTUDIO_PREF_CHAT_TIMEOUT", 60.0))


def chat_max_retries() -> int:
    return int(_get("MEDSTUDIO_PREF_CHAT_MAX_RETRIES", 3))


def chat_overrides() -> dict[str, Any]:
    """Timeout / retries that MEDSTUDIO_PREF_CHAT_* set explicitly (settings or environment).

    A registry backend carries its own timeout and retries; an operator who tuned the preference
    jobs on purpose (long judge prompts, a flaky lab server) still gets those values, while an
    unset setting leaves the backend's own in force.
    """
    out: dict[str, Any] = {}
    if _is_set("MEDSTUDIO_PREF_CHAT_TIMEOUT"):
        out["timeout"] = chat_timeout()
    if _is_set("MEDSTUDIO_PREF_CHAT_MAX_RETRIES"):
        out["max_retries"] = chat_max_retries()
    return out


def _is_set(name: str) -> bool:
    return hasattr(settings, name) or name in os.environ


def work_dir():
    from pathlib import Path

    return Path(_get("MEDSTUDIO_PREF_DIR", Path(settings.MEDIA_ROOT) / "preferences"))
