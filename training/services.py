"""Write path for the model registry and training runs (audited, under transaction.atomic)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from medstudio.audit.services import audit_log
from medstudio.handoffs import sources as training_data
from training.models import Checkpoint, ModelRef, RunMetric, RunStatus, TrainingRun
from training.pipeline.preflight import CHAT_STAGES, check_model
from training.pipeline.specs import STAGE_DATA_KINDS, SpecError, TrainingSpec


def runs_root() -> Path:
    return Path(getattr(settings, "MEDSTUDIO_TRAINING_DIR", settings.VAR_DIR / "training"))


@transaction.atomic
def model_ref_create(*, actor, name: str, path: str, description: str = "", parent: ModelRef | None = None) -> ModelRef:
    """Register a base model (a local directory or a hub id)."""
    name, path = name.strip(), path.strip()
    if not name or not path:
        raise SpecError({"name" if not name else "path": "required"})
    if ModelRef.objects.filter(name=name).exists():
        raise SpecError({"name": gettext("a model named %(name)s already exists") % {"name": repr(name)}})
    ref = ModelRef.objects.create(name=name, path=path, description=description, parent=parent,
                                  created_by=actor if getattr(actor, "is_authenticated", False) else None)
    audit_log(actor=actor, action="training.model_register", target=ref, data={"path": path})
    return ref


def _unique_name(base: str) -> str:
    name, n = base[:190], 2
    while ModelRef.objects.filter(name=name).exists():
        name = f"{base[:185]}-{n}"
        n += 1
    return name


def preflight(*, spec: TrainingSpec, base_model: ModelRef | None, data_ref: dict, merge_base: ModelRef | None) -> dict:
    """Everything that would stop the run in its first seconds, as {field: what to change}.

    Checked before anything is stored: the base model's config and tokenizer load, a chat stage's
    tokenizer has a chat template, the data kind fits the stage, the data is not empty, and the
    online-merging base exists. `_info` carries the data description for the caller.
    """
    errors: dict = {}
    if base_model is None:
        errors["base_model"] = gettext("choose the model this run starts from (register one on the Models page first)")
    else:
        problems = check_model(base_model.path, chat=spec.stage in CHAT_STAGES, translate=gettext)
        if problems:
            errors["base_model"] = f"{base_model.name}: " + "; ".join(problems)
    kinds = STAGE_DATA_KINDS.get(spec.stage, ())
    try:
        info = training_data.describe(data_ref)
    except training_data.DataSourceError as exc:
        errors["data"] = str(exc)
        info = {}
    if info and info.get("kind") not in kinds:
        errors["data"] = gettext("%(stage)s trains on %(kinds)s records, and %(name)s holds %(kind)s records: "
                                 "choose data that fits the stage") % {
            "stage": spec.stage, "kinds": gettext(" or ").join(kinds), "name": repr(info.get("name")),
            "kind": info.get("kind")}
    elif info and not info.get("n_records"):
        errors["data"] = gettext("%(name)s is empty: there is nothing to train on") % {"name": repr(info.get("name"))}
    if spec.merging.enabled:
        if merge_base is None:
            errors["merging.base_model"] = gettext("online merging needs theta_base (the model before SFT) for its task "
                                                   "vector; choose it or turn merging off")
        else:
            problems = check_model(merge_base.path, translate=gettext)
            if problems:
                errors["merging.base_model"] = f"{merge_base.name}: " + "; ".join(problems)
    errors["_info"] = info
    return errors


@transaction.atomic
def training_run_start(*, actor, spec: TrainingSpec, base_model: ModelRef, data_ref: dict, name: str = "",
                       merge_base: ModelRef | None = None, enqueue: bool = True) -> TrainingRun:
    """Validate a run spec against its model and data, store the run and launch its job."""
    from medstudio.jobs.services import job_create

    errors = preflight(spec=spec, base_model=base_model, data_ref=data_ref, merge_base=merge_base)
    info = errors.pop("_info", {})
    spec = replace(spec, base_model=base_model.path, data_path="", output_dir="")
    if spec.merging.enabled and merge_base is not None:
        spec = replace(spec, merging=replace(spec.merging, base_model=merge_base.path))
    errors = {**spec.errors(translate=gettext), **errors}  # the pre-flight wording says what to change; it wins on the same field
    if errors:
        raise SpecError(errors)
    run = TrainingRun.objects.create(
        name=name or f"{spec.stage} from {base_model.name}", stage=spec.stage, spec=spec.to_dict(),
        spec_hash=spec.content_hash(), base_model=base_model, merge_base=merge_base if spec.merging.enabled else None,
        data_ref={**data_ref, **info}, max_steps=spec.max_steps if spec.max_steps > 0 else None,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    run.run_dir = str(runs_root() / f"run-{run.pk}")
    run.save(update_fields=["run_dir"])
    audit_log(actor=actor, action="training.run_start", target=run,
              data={"stage": spec.stage, "base_model": base_model.pk, "data": data_ref, "spec_hash": run.spec_hash})
    # With JOBS_EAGER (tests) the job runs inside job_create; it finds the run by id from params.
    job = job_create(kind="training.run", params={"run_id": run.pk}, user=actor, enqueue=enqueue)
    TrainingRun.objects.filter(pk=run.pk).update(job=job)
    run.refresh_from_db()
    return run


@transaction.atomic
def training_run_cancel(*, actor, run: TrainingRun) -> TrainingRun:
    """Ask the run's job to stop; the supervising worker kills the process group within seconds."""
    from medstudio.jobs.services import job_cancel

    if run.job is not None:
        job = job_cancel(job=run.job, user=actor)
        if job.status == "cancelled" and run.status == RunStatus.QUEUED:
            TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED, finished_at=timezone.now())
    audit_log(actor=actor, action="training.run_cancel", target=run)
    run.refresh_from_db()
    return run


@transaction.atomic
def training_run_mark_started(*, run: TrainingRun, data_info: dict, max_steps: int | None = None) -> None:
    fields: dict[str, Any] = {"status": RunStatus.RUNNING, "data_ref": {**run.data_ref, **data_info}, "error": "", "log_tail": ""}
    if run.started_at is None:
        fields["started_at"] = timezone.now()
    if max_steps:
        fields["max_steps"] = max_steps
    TrainingRun.objects.filter(pk=run.pk).update(**fields)
    audit_log(actor=None, action="training.run_running", target=run, data={"data": data_info})


def run_events_record(*, run: TrainingRun, rows: list[dict]) -> int:
    """Store streamed metric rows and checkpoint events; returns the latest step seen.

    Metrics are machine writes at every logging step, so they are not audited one by one;
    checkpoints (which become registry entries) are.
    """
    metrics: list[RunMetric] = []
    step = run.step
    max_steps = None
    for row in rows:
        event = row.get("event")
        if event == "log":
            step = max(step, int(row.get("step") or 0))
            max_steps = row.get("max_steps") or max_steps
            for name, value in (row.get("metrics") or {}).items():
                metrics.append(RunMetric(run=run, step=int(row.get("step") or 0), name=name, value=float(value)))
        elif event == "begin":
            max_steps = row.get("max_steps") or max_steps
        elif event == "checkpoint":
            checkpoint_register(run=run, step=int(row["step"]), path=row["path"], is_final=False)
    if metrics:
        # A resumed run re-logs the steps after its last checkpoint: the newer value wins.
        RunMetric.objects.bulk_create(metrics, update_conflicts=True, unique_fields=["run", "name", "step"],
                                      update_fields=["value"])
    fields: dict[str, Any] = {"step": step}
    if max_steps:
        fields["max_steps"] = max_steps
    TrainingRun.objects.filter(pk=run.pk).update(**fields)
    run.step = step
    return step


@transaction.atomic
def checkpoint_register(*, run: TrainingRun, step: int, path: str, is_final: bool, info: dict | None = None) -> Checkpoint:
    """Record a checkpoint and make it a model registry entry linked to run, spec, data and parent."""
    ckpt, created = Checkpoint.objects.get_or_create(run=run, path=path, defaults={"step": step, "is_final": is_final, "info": info or {}})
    if not created:
        if info:
            ckpt.info = {**ckpt.info, **info}
            ckpt.save(update_fields=["info"])
        return ckpt
    label = "final" if is_final else f"step{step}"
    ref = ModelRef.objects.create(
        name=_unique_name(f"{run.stage}-run{run.pk}-{label}"), path=path,
        kind=ModelRef.Kind.FINAL if is_final else ModelRef.Kind.CHECKPOINT, stage=run.stage,
        parent=run.base_model, run=run, step=step, spec_hash=run.spec_hash, data_ref=run.data_ref,
        created_by=run.created_by,
    )
    ckpt.model_ref = ref
    ckpt.save(update_fields=["model_ref"])
    audit_log(actor=None, action="training.checkpoint_register", target=ref, data={"run": run.pk, "step": step, "path": path})
    return ckpt


@transaction.atomic
def training_run_finish(*, run: TrainingRun, status: str, error: str = "", log_tail: str = "", result: dict | None = None) -> TrainingRun:
    TrainingRun.objects.filter(pk=run.pk).update(status=status, error=error[:5000], log_tail=log_tail,
                                                 result=result or {}, finished_at=timezone.now())
    audit_log(actor=None, action=f"training.run_{status}", target=run, data={"error": error[:500]} if error else {})
    run.refresh_from_db()
    return run
