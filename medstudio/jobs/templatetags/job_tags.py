from django import template
from django.utils.translation import gettext, gettext_noop

from medstudio.jobs.registry import kind_label

register = template.Library()


@register.filter(name="job_kind")
def job_kind(kind: str) -> str:
    """A job kind in words: `studio.matrix_sync` → "Score matrix sync"."""
    return kind_label(kind or "")


# Status codes of jobs, runs, selections and mixtures, as words in the reader's language (the code
# itself stays in attributes and CSS classes; English pages show the code as before).
STATUS_WORDS = {gettext_noop("queued"), gettext_noop("running"), gettext_noop("succeeded"), gettext_noop("failed"),
                gettext_noop("cancelled"), gettext_noop("partial"), gettext_noop("ready"), gettext_noop("building"),
                gettext_noop("draft"), gettext_noop("done"), gettext_noop("paused"), gettext_noop("pending"),
                gettext_noop("training"), gettext_noop("exporting")}


@register.filter(name="status_word")
def status_word(code: str) -> str:
    """`{{ run.status|status_word }}`: a known status code translated, anything else unchanged."""
    return gettext(code) if code in STATUS_WORDS else code


@register.filter(name="choice_word")
def choice_word(label) -> str:
    """`{{ pair.get_verdict_display|choice_word }}`: a model choice label (kept plain in models.py, so
    no migration) in the reader's language; the app that owns the model marks its labels with
    gettext_noop so they are in the catalogue. A label without a translation shows as it is."""
    return gettext(str(label)) if label else ""
