"""Reads of the model-backend registry for forms and pages."""
from __future__ import annotations

from django.utils.translation import gettext

from .models import ModelBackend


def backend_choices(*, blank: str = "") -> list[tuple[str, str]]:
    """(name, label) pairs of the enabled backends for a <select>, the default marked."""
    rows = ModelBackend.objects.filter(enabled=True).order_by("-is_default", "name").values_list("name", "model", "is_default")
    mark = " · " + gettext("default")
    choices = [(name, f"{name} ({model}){mark if default else ''}") for name, model, default in rows]
    return ([("", blank)] if blank else []) + choices


def default_backend() -> ModelBackend | None:
    """The enabled backend marked default (one lookup for every stage that falls back to it)."""
    return ModelBackend.objects.filter(enabled=True, is_default=True).first()


def default_backend_name() -> str:
    return getattr(default_backend(), "name", "")


def default_label() -> str:
    """What a form that names no backend will use, in words (for the blank option of a <select>)."""
    from django.conf import settings

    name = default_backend_name()
    if name:
        return gettext("default backend: %(name)s") % {"name": name}
    url = getattr(settings, "MEDSTUDIO_CHAT_URL", "")
    return f"MEDSTUDIO_CHAT_URL: {url}" if url else gettext("no default: register a backend or give a URL")
