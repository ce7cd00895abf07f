"""Writes to the model-backend registry; every change is audited."""
from __future__ import annotations

import os
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from medstudio.audit.services import audit_log

from .models import ModelBackend

FIELDS = ("name", "base_url", "model", "api_key_env", "timeout", "max_retries", "concurrency", "is_default", "enabled",
          "notes")


@transaction.atomic
def backend_save(*, actor, backend: ModelBackend | None = None, **values: Any) -> ModelBackend:
    """Create (backend=None) or update a backend; marking one default unmarks the previous one."""
    created = backend is None
    backend = backend or ModelBackend(created_by=actor if getattr(actor, "is_authenticated", False) else None)
    before = {f: getattr(backend, f) for f in FIELDS} if not created else {}
    for f in FIELDS:
        if f in values:
            setattr(backend, f, values[f])
    if backend.is_default:
        ModelBackend.objects.filter(is_default=True).exclude(pk=backend.pk).update(is_default=False)
    backend.full_clean()
    backend.save()
    after = {f: getattr(backend, f) for f in FIELDS}
    audit_log(actor=actor, action="backends.create" if created else "backends.update", target=backend,
              data={"after": after} if created else {"changed": {f: [before[f], after[f]] for f in FIELDS
                                                                 if before[f] != after[f]}})
    return backend


@transaction.atomic
def backend_delete(*, actor, backend: ModelBackend) -> None:
    audit_log(actor=actor, action="backends.delete", target=backend, data={"name": backend.name})
    backend.delete()


def backend_check(*, actor, backend: ModelBackend) -> ModelBackend:
    """Send one tiny chat request and record whether it answered, how fast, and what it said.

    No retries and a short timeout: this is a liveness probe an admin is waiting on.
    """
    from medstudio.inference.chat import ChatError

    from .resolve import chat_client

    params = {"base_url": backend.base_url, "model": backend.model, "api_key_env": backend.api_key_env}
    client = chat_client(params, timeout=min(float(backend.timeout), 15.0), max_retries=0)
    started = time.monotonic()
    try:
        reply = client.complete([{"role": "user", "content": "Reply with the word: ok"}], max_tokens=4, temperature=0)
        ok, detail = True, f"answered {reply.text[:80]!r}"
    except ChatError as exc:
        ok, detail = False, exc.reason
    ms = int((time.monotonic() - started) * 1000)
    if backend.api_key_env and not os.environ.get(backend.api_key_env):
        detail += f" (note: {backend.api_key_env} is not set in the web process; the workers need it too)"
    with transaction.atomic():
        ModelBackend.objects.filter(pk=backend.pk).update(last_checked_at=timezone.now(), last_check_ok=ok,
                                                          last_check_detail=detail[:2000], last_check_ms=ms)
        backend.refresh_from_db()
        audit_log(actor=actor, action="backends.check", target=backend, data={"ok": ok, "ms": ms})
    return backend
