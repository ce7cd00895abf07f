"""Importing this module registers the model scorers and the training job (no heavy imports here)."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext_noop

from curation.scoring import record_view
from medstudio.datasets.models import Record
from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind

from . import scorers, services
from .models import RaterKind, TrainedModel
from .selectors import training_labels

scorers.register_all()


@job_handler(services.TRAIN_JOB, queue="cpu", description="Train a domain classifier or DataRater version.")
def train_job(ctx: JobContext) -> dict:
    model = TrainedModel.objects.filter(pk=ctx.params["model_id"]).first()
    if model is None:
        raise JobFailed("The model version was deleted.")
    if model.status == "ready":
        return {"model": model.ref, "metrics": model.metrics}  # duplicate delivery
    services.trained_model_mark_training(model=model)
    try:
        return _train(ctx, model)
    except JobFailed:
        raise
    except JobCancelled:
        services.trained_model_finish(model=model, status="cancelled", error="cancelled")
        raise
    except Exception as exc:
        # Anything unexpected still leaves the version visibly failed, not "training" forever.
        services.trained_model_finish(model=model, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise


def _train(ctx: JobContext, model: TrainedModel) -> dict:
    from curation.pipeline import rater
    from medstudio.inference.errors import ModelNotAvailable

    ctx.progress(done=0, total=3)
    labels, n_labelled = training_labels(model)
    ctx.log(f"{n_labelled} labelled items, {len(labels)} kept by the consensus rule")
    ids = [rid for rid, _ in labels]
    by_id = {}
    for start in range(0, len(ids), 1000):  # bounded IN lists (SQLite caps query parameters)
        by_id.update((r.pk, r) for r in Record.objects.filter(pk__in=ids[start:start + 1000]).select_related("dataset"))
    texts, values = [], []
    for rid, value in labels:
        rec = by_id.get(rid)
        if rec is not None:
            texts.append(rater.record_text(record_view(rec, rec.dataset.kind)))
            values.append(value)
    ctx.progress(done=1)
    task = rater.CLASSIFY if model.kind == RaterKind.DOMAIN else rater.REGRESS
    encoder = rater.EncoderSpec(kind=model.encoder,
                                model_ref=model.encoder_model or settings.MEDSTUDIO_EMBEDDING_MODEL,
                                base_url=settings.MEDSTUDIO_EMBEDDING_URL if not model.encoder_model else "")
    counts = {"n_labelled": n_labelled, "n_agreed": len(labels)}
    try:
        trained, result = rater.train_rater(texts, values, task=task, encoder=encoder,
                                            val_fraction=model.params.get("val_fraction", 0.1),
                                            seed=model.params.get("seed", 0))
    except (ValueError, ModelNotAvailable) as exc:
        services.trained_model_finish(model=model, status="failed", error=str(exc), counts=counts)
        raise JobFailed(f"Training {model.ref} failed: {exc}") from exc
    ctx.progress(done=2)
    path = Path(settings.MEDSTUDIO_MODEL_DIR) / "modelscorers" / model.kind / f"v{model.version}"
    trained.save(path)
    counts.update(n_train=result.n_train, n_val=result.n_val)
    metrics = dict(result.metrics, chosen_param=result.chosen_param)
    services.trained_model_finish(model=model, status="ready", metrics=metrics, path=os.fspath(path),
                                  classes=result.classes, counts=counts)
    ctx.progress(done=3)
    return {"model": model.ref, "metrics": metrics}


def _model_links(job):
    from django.urls import reverse
    m = (job.params or {}).get("model_id")
    return [(gettext_noop("Open the trained scorer"), reverse("modelscorers:detail", args=[m]))] if m else []


register_job_kind(services.TRAIN_JOB, label=gettext_noop("Scorer model training"), result_links=_model_links)
