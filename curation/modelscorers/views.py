"""Model scorers pages: trained versions (train, metrics, score a dataset) and the LM scorers' settings."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from medstudio.accounts.permissions import Role, role_required
from medstudio.datasets.models import Dataset

from . import services
from .models import Encoder, RaterKind, TrainedModel
from .selectors import trained_models


def _backend_status() -> list[dict]:
    """Which model each LM scorer would load, and whether this machine has it (cheap: no torch)."""
    from medstudio.inference.errors import ModelNotAvailable
    from medstudio.inference.resolve import resolve_local_model

    rows = []
    for setting, used_by in [("MEDSTUDIO_SCORING_LM", "ConFilter"),
                             ("MEDSTUDIO_DEITA_COMPLEXITY_MODEL", "Deita complexity"),
                             ("MEDSTUDIO_DEITA_QUALITY_MODEL", "Deita quality"),
                             ("MEDSTUDIO_EMBEDDING_MODEL", "Embedding encoder")]:
        ref = str(getattr(settings, setting, ""))
        try:
            resolve_local_model(ref, setting)
            ok, note = True, "available"
        except ModelNotAvailable as exc:
            ok, note = False, str(exc)
        rows.append({"setting": setting, "used_by": used_by, "ref": ref, "ok": ok, "note": note})
    if getattr(settings, "MEDSTUDIO_EMBEDDING_URL", ""):
        rows[-1].update(ok=True, note=f"served by {settings.MEDSTUDIO_EMBEDDING_URL}")
    return rows


@role_required(Role.CURATOR)
def index(request):
    from medstudio.annotation.models import Queue

    return render(request, "modelscorers/index.html", {
        "models": trained_models(),
        "kinds": RaterKind.choices,
        "encoders": Encoder.choices,
        "queues": Queue.objects.select_related("question", "dataset").filter(question__kind__in=["label", "rating"]),
        "datasets": Dataset.objects.order_by("name"),
        "backends": _backend_status(),
    })


@role_required(Role.CURATOR)
@require_POST
def train(request):
    post = request.POST
    source: dict = {}
    if post.get("queue"):
        source = {"queue_id": int(post["queue"])} if post["queue"].isdigit() else {}
    elif post.get("dataset"):
        source = {"dataset_id": int(post["dataset"]) if post["dataset"].isdigit() else 0,
                  "fields": [f for f in post.get("fields", "").split(",")]}
    try:
        model = services.trained_model_create(
            user=request.user, kind=post.get("kind", ""), source=source, encoder=post.get("encoder", Encoder.HASHED),
            encoder_model=post.get("encoder_model", "").strip(), val_fraction=float(post.get("val_fraction") or 0.1),
            seed=int(post.get("seed") or 0), threshold=float(post.get("threshold") or 2.0))
    except ValueError as exc:
        messages.error(request, _("Cannot train: %(error)s") % {"error": exc})
        return redirect("modelscorers:index")
    messages.info(request, _("Training %(model)s started.") % {"model": model.ref})
    return redirect("jobs:detail", pk=model.job_id) if model.job_id else redirect("modelscorers:detail", pk=model.pk)


def _confusion(model: TrainedModel) -> list[dict]:
    m = model.metrics or {}
    labels, cm = m.get("labels") or [], m.get("confusion_matrix") or []
    return [{"label": lab, "cells": row} for lab, row in zip(labels, cm)]


@role_required(Role.CURATOR)
def detail(request, pk: int):
    model = get_object_or_404(TrainedModel.objects.select_related("job", "created_by"), pk=pk)
    from medstudio.handoffs.models import ScorerRun

    runs = ScorerRun.objects.filter(scorer=model.kind, params__model_version=model.version).select_related("dataset")[:20]
    return render(request, "modelscorers/detail.html", {
        "model": model, "confusion": _confusion(model), "datasets": Dataset.objects.order_by("name"), "runs": runs,
    })


@role_required(Role.CURATOR)
@require_POST
def score(request, pk: int):
    model = get_object_or_404(TrainedModel, pk=pk)
    dataset = Dataset.objects.filter(pk=request.POST.get("dataset") or 0).first()
    if dataset is None:
        messages.error(request, _("Choose a dataset to score."))
        return redirect("modelscorers:detail", pk=pk)
    try:
        run = services.model_score_start(user=request.user, model=model, dataset=dataset,
                                         target_label=request.POST.get("target_label", "").strip(),
                                         shards=int(request.POST.get("shards") or 1))
    except (ValueError, LookupError) as exc:
        messages.error(request, _("Cannot score: %(error)s") % {"error": exc})
        return redirect("modelscorers:detail", pk=pk)
    messages.info(request, _("Scoring %(dataset)s with %(model)s (run %(run)s).") % {"dataset": dataset.name, "model": model.ref, "run": run.pk})
    return redirect("jobs:detail", pk=run.job_id)
