"""Reads of hand-off entities, for the platform and every stage."""
from __future__ import annotations

from django.db.models import QuerySet

from .models import Mixture, PreferenceSet, Score, ScorerRun, Selection, SelectionRecord


def selection_records(selection: Selection | int) -> QuerySet:
    """The records a selection froze, in id order (stable: the order its hash was taken in)."""
    from medstudio.datasets.models import Record

    sel_id = selection.pk if isinstance(selection, Selection) else int(selection)
    return Record.objects.filter(pk__in=SelectionRecord.objects.filter(selection_id=sel_id).values("record_id")).order_by("id")


def selection_kinds(selection: Selection) -> set[str]:
    return set(selection.datasets.values_list("kind", flat=True))


def selections_ready() -> QuerySet[Selection]:
    return Selection.objects.filter(status=Selection.Status.READY)


def mixtures_built() -> QuerySet[Mixture]:
    return Mixture.objects.filter(status="succeeded")


def preference_sets() -> QuerySet[PreferenceSet]:
    return PreferenceSet.objects.all()


def scores_for(run: ScorerRun) -> QuerySet[Score]:
    return Score.objects.filter(run=run)
