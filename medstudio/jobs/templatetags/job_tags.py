from django import template

from medstudio.jobs.registry import kind_label

register = template.Library()


@register.filter(name="job_kind")
def job_kind(kind: str) -> str:
    """A job kind in words: `studio.matrix_sync` → "Score matrix sync"."""
    return kind_label(kind or "")
