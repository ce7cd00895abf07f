"""Reads for model scorers: trained versions and the agreed training labels."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from medstudio.annotation import agreement as ag
from medstudio.datasets.models import Record

from .models import RaterKind, TrainedModel

# What kind of annotation question feeds each model (medstudio/annotation/questions.py).
QUESTION_KIND_FOR = {RaterKind.DOMAIN: "label", RaterKind.DATARATER: "rating"}


def trained_models(kind: str | None = None) -> QuerySet[TrainedModel]:
    qs = TrainedModel.objects.select_related("job", "created_by")
    return qs.filter(kind=kind) if kind else qs


def ready_model(kind: str, version: Any = None) -> TrainedModel | None:
    """The chosen ready version, or the newest ready one when `version` is empty / "latest"."""
    qs = TrainedModel.objects.filter(kind=kind, status="ready")
    if version in (None, "", "latest"):
        return qs.order_by("-version").first()
    try:
        return qs.filter(version=int(version)).first()
    except (TypeError, ValueError):
        return None


def training_labels(model: TrainedModel) -> tuple[list[tuple[int, Any]], int]:
    """([(record_id, agreed value)], number of labelled items before the consensus rule).

    The rule is the annotation engine's (docs/METHODS.md 1.1 / 1.3): two ratings differing by the
    threshold (default 2) or more, or two different labels, drop the item.
    """
    src = model.params.get("source") or {}
    threshold = float(model.params.get("threshold", ag.DEFAULT_CONSENSUS_THRESHOLD))
    level = "nominal" if model.kind == RaterKind.DOMAIN else "ordinal"
    if src.get("queue_id"):
        from medstudio.annotation.models import Queue, QueueItem
        from medstudio.annotation.selectors import consensus_outcomes

        queue = Queue.objects.select_related("question").get(pk=src["queue_id"])
        outcomes = consensus_outcomes(queue, threshold=threshold)
        agreed = {i: o.value for i, o in outcomes.items() if o.status in (ag.AGREED, ag.ADJUDICATED)}
        rec: dict[int, int] = {}
        item_ids = list(agreed)
        for start in range(0, len(item_ids), 1000):  # bounded IN lists (SQLite caps query parameters)
            rec.update(QueueItem.objects.filter(pk__in=item_ids[start:start + 1000]).values_list("id", "record_id"))
        labelled = sum(1 for o in outcomes.values() if o.values)
        return sorted((rec[i], v) for i, v in agreed.items()), labelled
    fields = list(src.get("fields") or [])
    ratings: dict[int, dict[str, Any]] = {}
    for rid, content in Record.objects.filter(dataset_id=src["dataset_id"]).values_list("id", "content").iterator():
        meta = (content or {}).get("meta") or {}
        per = {}
        for f in fields:
            v = meta.get(f, (content or {}).get(f))
            if v is None or v == "":
                continue
            if level == "ordinal":
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    continue
            per[f] = v
        if per:
            ratings[rid] = per
    outcomes = ag.consensus(ratings, level=level, threshold=threshold, min_labels=min(2, len(fields)))
    agreed = sorted((rid, o.value) for rid, o in outcomes.items() if o.status == ag.AGREED)
    return agreed, len(ratings)
