from __future__ import annotations

from typing import Any

from .models import AuditEvent


def audit_log(*, actor, action: str, target: Any = None, data: dict | None = None) -> AuditEvent:
    """Record one write. Call it inside the service's transaction so both commit or neither."""
    actor = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        actor=actor,
        action=action,
        target_type=f"{target._meta.app_label}.{target._meta.model_name}" if target is not None else "",
        target_id=str(getattr(target, "pk", "") or ""),
        target_repr=str(target)[:200] if target is not None else "",
        data=data or {},
    )
