"""Lineage nodes of trained raters (DataRater, domain classifier): scorer run -> model -> labels."""
from __future__ import annotations

import re

from medstudio.handoffs.lineage import node_id, register_model_ref, register_node

from .models import TrainedModel

_REF = re.compile(r"^(?P<kind>[a-z_]+):v(?P<version>\d+)$")


def _model_ref(ref: str) -> str | None:
    m = _REF.match(ref or "")
    if not m:
        return None
    pk = TrainedModel.objects.filter(kind=m["kind"], version=int(m["version"])).values_list("pk", flat=True).first()
    return node_id("rater", pk) if pk else None


def _rater(pk: int):
    from django.urls import reverse

    model = TrainedModel.objects.filter(pk=pk).first()
    if model is None:
        return None
    source = (model.params or {}).get("source") or {}
    ups = []
    if source.get("queue_id"):
        ups.append(node_id("queue", source["queue_id"]))  # consensus labels of this queue
    if source.get("dataset_id"):
        ups.append(node_id("dataset", source["dataset_id"]))  # label columns of a dataset
    return {"type": "model", "name": f"{model.get_kind_display()} v{model.version}", "url": reverse("modelscorers:detail", args=[pk]),
            "labels": {"labelled": model.n_labelled, "agreed (trained on)": model.n_agreed}, "metrics": model.metrics}, ups


register_model_ref(_model_ref)
register_node("rater", _rater)
