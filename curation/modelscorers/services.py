"""Writes for model scorers: create a trained-model version (and its training job), record its outcome,
start a scoring run with a chosen version."""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext

from medstudio.handoffs.models import ScorerRun
from curation.scoring import scorer_run_start
from medstudio.audit.services import audit_log
from medstudio.datasets.models import Dataset

from .models import Encoder, RaterKind, TrainedModel
from .selectors import QUESTION_KIND_FOR

TRAIN_JOB = "modelscorers.train"


def _validate_source(kind: str, source: dict[str, Any]) -> dict[str, Any]:
    if source.get("queue_id"):
        from medstudio.annotation.models import Queue

        queue = Queue.objects.select_related("question").filter(pk=source["queue_id"]).first()
        if queue is None:
            raise ValueError(gettext("No such annotation queue."))
        want = QUESTION_KIND_FOR[kind]
        if queue.question.kind != want:
            raise ValueError(f"A {kind} model trains on '{want}' questions; queue {queue.name!r} asks "
                             f"'{queue.question.kind}'.")
        return {"queue_id": queue.pk}
    if source.get("dataset_id"):
        if not Dataset.objects.filter(pk=source["dataset_id"]).exists():
            raise ValueError(gettext("No such dataset."))
        fields = [f.strip() for f in source.get("fields") or [] if f and f.strip()]
        if not fields:
            raise ValueError(gettext("Name the label column(s), e.g. rating_1,rating_2 (two raters) or domain."))
        return {"dataset_id": int(source["dataset_id"]), "fields": fields}
    raise ValueError(gettext("Choose where the labels come from: an annotation queue or a dataset's label columns."))


@transaction.atomic
def trained_model_create(*, user, kind: str, source: dict[str, Any], encoder: str = Encoder.HASHED,
                         encoder_model: str = "", val_fraction: float = 0.1, seed: int = 0,
                         threshold: float = 2.0, enqueue: bool = True) -> TrainedModel:
    """Reserve the next version of `kind` and launch its training job."""
    from medstudio.jobs.services import job_create

    if kind not in RaterKind.values:
        raise ValueError(gettext("Unknown model kind %(kind)s; choose %(items)s.") % {"kind": repr(kind), "items": ', '.join(RaterKind.values)})
    if encoder not in Encoder.values:
        raise ValueError(gettext("Unknown encoder %(encoder)s; choose %(items)s.") % {"encoder": repr(encoder), "items": ', '.join(Encoder.values)})
    if not 0.0 < float(val_fraction) < 0.9:
        raise ValueError(gettext("The validation fraction must lie between 0 and 0.9."))
    params = {"source": _validate_source(kind, source), "val_fraction": float(val_fraction), "seed": int(seed),
              "threshold": float(threshold)}
    creator = user if getattr(user, "is_authenticated", False) else None
    # Next version number: two curators training at once may pick the same one; the unique
    # (kind, version) constraint rejects the loser, who takes the next number (savepoint per try;
    # PostgreSQL allows no FOR UPDATE with an aggregate, so no lock is taken here).
    for attempt in range(5):
        last = TrainedModel.objects.filter(kind=kind).aggregate(v=Max("version"))["v"] or 0
        try:
            with transaction.atomic():
                model = TrainedModel.objects.create(kind=kind, version=last + 1, encoder=encoder,
                                                    encoder_model=encoder_model, params=params, created_by=creator)
            break
        except IntegrityError:
            if attempt == 4:
                raise
    audit_log(actor=user, action="modelscorers.trained_model_create", target=model,
              data={"kind": kind, "version": model.version, "encoder": encoder, "params": params})
    # Embedding encoders want the GPU workers; the hashed path is CPU work.
    job = job_create(kind=TRAIN_JOB, params={"model_id": model.pk}, user=user,
                     queue="gpu" if encoder == Encoder.EMBEDDING else "cpu", enqueue=enqueue)
    TrainedModel.objects.filter(pk=model.pk).update(job=job)
    model.refresh_from_db()  # an eager job (tests, JOBS_EAGER) has already trained it
    return model


@transaction.atomic
def trained_model_finish(*, model: TrainedModel, status: str, metrics: dict | None = None, path: str = "",
                         classes: list | None = None, counts: dict | None = None, error: str = "") -> TrainedModel:
    """Store a training outcome (called by the training job)."""
    model.status = status
    model.metrics = metrics or {}
    model.path = path
    model.classes = classes or []
    model.error = error
    for key, value in (counts or {}).items():
        setattr(model, key, value)
    model.finished_at = timezone.now()
    model.save()
    audit_log(actor=None, action="modelscorers.trained_model_finish", target=model,
              data={"status": status, "metrics": metrics or {}, "error": error})
    return model


def trained_model_mark_training(*, model: TrainedModel) -> None:
    TrainedModel.objects.filter(pk=model.pk).update(status="training")


def model_score_start(*, user, model: TrainedModel, dataset: Dataset, target_label: str = "",
                      shards: int = 1) -> ScorerRun:
    """Score a dataset with one trained version (a `curation.score` run of scorer `model.kind`)."""
    if model.status != "ready":
        raise ValueError(gettext("%(model)s is not ready (status %(status)s).") % {"model": model, "status": model.status})
    params: dict[str, Any] = {"model_version": model.version}
    if model.kind == RaterKind.DOMAIN and target_label:
        params["target_label"] = target_label
    return scorer_run_start(user=user, dataset=dataset, scorer=model.kind, params=params, shards=shards,
                            model_ref=model.ref)
