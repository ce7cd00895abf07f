"""Reads of hand-off entities, for the platform and every stage."""
from __future__ import annotations

from django.db.models import QuerySet

from .models import Selection, SelectionRecord


def selection_records(selection: Selection | int) -> QuerySet:
    """The records a selection froze, in id order (stable: the order its hash was taken in)."""
    from medstudio.datasets.models import Record

    sel_id = selection.pk if isinstance(selection, Selection) else int(selection)
    return Record.objects.filter(pk__in=SelectionRecord.objects.filter(selection_id=sel_id).values("record_id")).order_by("id")


def selection_kinds(selection: Selection) -> set[str]:
    """Record kinds of the datasets a selection draws from (prefetched `datasets` are used as they are)."""
    return {d.kind for d in selection.datasets.all()}
