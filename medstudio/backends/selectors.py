"""Reads of the model-backend registry for forms and pages."""
from __future__ import annotations

from .models import ModelBackend


def backend_choices(*, blank: str = "") -> list[tuple[str, str]]:
    """(name, label) pairs of the enabled backends for a <select>, the default marked."""
    rows = ModelBackend.objects.filter(enabled=True).order_by("-is_default", "name").values_list("name", "model", "is_default")
    choices = [(name, f"{name} ({model}){' · default' if default else ''}") for name, model, default in rows]
    return ([("", blank)] if blank else []) + choices
