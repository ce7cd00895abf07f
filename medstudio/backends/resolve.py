"""From "which chat model?" to job params, and from job params to a client.

`chat_params` runs where the job is launched (web or command): it turns a registry backend, an
explicit URL + model, or the defaults into a plain dict stored with the job. Storing the resolved
URL and model (never the key) keeps a job repeatable and its page truthful even if an admin later
edits the backend. `chat_client` runs in the worker and needs no database.
"""
from __future__ import annotations

import os
from typing import Any

DEFAULT_CONCURRENCY = 4  # requests in flight per job for an endpoint that is not in the registry


class BackendChoiceError(ValueError):
    """No usable chat endpoint could be named; the message says what to set."""


def _lookup(backend: Any):
    from .models import ModelBackend

    if isinstance(backend, ModelBackend):
        return backend
    qs = ModelBackend.objects.filter(enabled=True)
    found = qs.filter(pk=int(backend)).first() if str(backend).isdigit() else qs.filter(name=str(backend)).first()
    if found is None:
        raise BackendChoiceError(f"No enabled model backend named {backend!r}: an admin adds it under Backends.")
    return found


def chat_params(*, backend: Any = None, base_url: str = "", model: str = "") -> dict[str, Any]:
    """Job params for one chat endpoint.

    Order: the named registry backend (naming one and a URL is an error); else an explicit base URL (with `model`,
    or MEDSTUDIO_CHAT_MODEL); else the registry's default backend; else MEDSTUDIO_CHAT_URL.
    `model` given with a backend overrides the backend's model (one server, several models).
    """
    from django.conf import settings

    from .selectors import default_backend

    base_url, model = (base_url or "").strip(), (model or "").strip()
    if backend not in (None, "") and base_url:
        raise BackendChoiceError("Pick a registered backend or give a base URL, not both.")
    chosen = _lookup(backend) if backend not in (None, "") else None
    if chosen is None and not base_url:
        chosen = default_backend()
    if chosen is not None:
        return {"backend": chosen.name, "base_url": chosen.base_url, "model": model or chosen.model,
                "api_key_env": chosen.api_key_env, "timeout": chosen.timeout, "max_retries": chosen.max_retries,
                "concurrency": chosen.concurrency}
    base_url = base_url or getattr(settings, "MEDSTUDIO_CHAT_URL", "")
    model = model or getattr(settings, "MEDSTUDIO_CHAT_MODEL", "")
    if not base_url:
        raise BackendChoiceError("No chat model backend: pick one (an admin registers them under Backends), "
                                 "give a base URL, or set MEDSTUDIO_CHAT_URL.")
    if not model:
        raise BackendChoiceError("Name the model the server should run (or set MEDSTUDIO_CHAT_MODEL).")
    return {"backend": "", "base_url": base_url, "model": model, "api_key_env": "", "timeout": 60.0, "max_retries": 3,
            "concurrency": DEFAULT_CONCURRENCY}


def api_key_for(params: dict[str, Any]) -> str:
    """The key from the environment variable the backend names, else MEDSTUDIO_CHAT_API_KEY."""
    env = params.get("api_key_env") or ""
    if env:
        return os.environ.get(env, "") or "EMPTY"
    from django.conf import settings

    return getattr(settings, "MEDSTUDIO_CHAT_API_KEY", "") or "EMPTY"


def concurrency(params: dict[str, Any]) -> int:
    """Requests in flight at once for these params (jobs launched before the setting existed: 4)."""
    return max(1, int(params.get("concurrency") or DEFAULT_CONCURRENCY))


def chat_client(params: dict[str, Any], *, require_key: bool = False, **overrides: Any):
    """A ChatBackend for params made by `chat_params` (in the worker; no database access).

    require_key: a job about to make thousands of calls fails at once, naming the variable, when
    the backend's key variable is not set on this worker, rather than marking every item "HTTP 401".
    """
    from medstudio.inference.chat import ChatBackend

    env = params.get("api_key_env") or ""
    if require_key and env and not os.environ.get(env):
        name = f"model backend {params['backend']!r}" if params.get("backend") else "this endpoint"
        raise BackendChoiceError(f"{env} is not set on this worker: the {name} reads its API key from it.")

    kw = {"timeout": float(params.get("timeout") or 60.0), "max_retries": int(params.get("max_retries", 3))}
    kw.update(overrides)
    return ChatBackend(params["base_url"], params["model"], api_key=api_key_for(params), **kw)
