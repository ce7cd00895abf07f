"""Lineage nodes of the model registry and training runs: model -> run -> its data, base and merge base."""
from __future__ import annotations

from django.urls import reverse

from medstudio.handoffs.lineage import node_id, register_node

from .models import ModelRef, TrainingRun


def _model(pk: int):
    ref = ModelRef.objects.filter(pk=pk).first()
    if ref is None:
        return None
    if ref.run_id:
        ups = [node_id("run", ref.run_id)]
    else:
        ups = [node_id("model", ref.parent_id)] if ref.parent_id else []
    return {"type": "model", "name": ref.name, "url": reverse("training:model_detail", args=[pk]), "kind": ref.kind,
            "stage": ref.stage, "path": ref.path}, ups


def _run(pk: int):
    run = TrainingRun.objects.filter(pk=pk).first()
    if run is None:
        return None
    ups = [node_id("model", run.base_model_id)]
    if run.merge_base_id:
        ups.append(node_id("model", run.merge_base_id))
    data = run.data_ref or {}
    if data.get("type") and data.get("id"):
        ups.append(node_id(data["type"], data["id"]))
    return {"type": "run", "name": run.name, "url": reverse("training:run_detail", args=[pk]), "stage": run.stage,
            "status": run.status, "data_sha256": data.get("sha256", ""), "spec_hash": run.spec_hash}, ups


register_node("model", _model)
register_node("run", _run)
