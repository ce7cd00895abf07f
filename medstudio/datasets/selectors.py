from __future__ import annotations

from django.db.models import QuerySet

from .models import Dataset, Record


def records_filtered(*, dataset: Dataset, lang: str = "", q: str = "", subset: str = "", source: str = "") -> QuerySet[Record]:
    qs = Record.objects.filter(dataset=dataset)
    if lang:
        qs = qs.filter(lang=lang)
    if subset:
        qs = qs.filter(subset=subset)
    if source:
        qs = qs.filter(source=source)
    if q:
        # On Postgres the dataset's trigram GIN index (search_index.py), once built, serves this icontains.
        qs = qs.filter(text__icontains=q)
    return qs.order_by("id")


def records_page(*, dataset: Dataset, after: int | None = None, before: int | None = None, size: int = 50,
                 **filters) -> tuple[list[Record], bool]:
    """Keyset pagination by id: stable and fast at any depth (no OFFSET)."""
    qs = records_filtered(dataset=dataset, **filters).defer("text")
    if before:
        rows = list(qs.filter(id__lt=before).order_by("-id")[: size + 1])[::-1]
        has_more = len(rows) > size
        return rows[-size:], has_more
    if after:
        qs = qs.filter(id__gt=after)
    rows = list(qs[: size + 1])
    return rows[:size], len(rows) > size
