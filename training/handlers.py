"""The `training.run` job: export the data, start the training process, supervise it.

The worker never trains in its own process: it starts `accelerate launch` / the DeepSpeed
launcher in a new session and only streams metrics and checkpoints into the database.
Resume: after a worker crash the job is re-queued (jobs_recover) and this handler runs again:
it kills any process group the earlier attempt left behind, keeps the exported data, and the
training script resumes from the last checkpoint in the run's output directory.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from django.db import transaction
from django.utils.translation import gettext_noop

from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.errors import plain_cause
from medstudio.jobs.registry import job_handler, register_job_kind
from medstudio.jobs.errors import failure, known_failure

# Failures shown translated on the job page (medstudio/jobs/errors.py reads the params back).
RUN_GONE = known_failure(gettext_noop("The training run no longer exists."))

from medstudio.handoffs import sources as training_data
from training import services
from training.models import RunStatus, TrainingRun
from training.pipeline import launcher
from training.pipeline.callbacks import MetricsTail
from training.pipeline.specs import TrainingSpec

POLL_SECONDS = 1.0


@job_handler("training.run", queue="training", description="Run one CPT/SFT/DPO training stage in a supervised process.")
def training_run_job(ctx: JobContext) -> dict:
    run = TrainingRun.objects.filter(pk=ctx.params.get("run_id")).first()
    if run is None:
        raise JobFailed(failure(RUN_GONE))
    if run.is_finished:
        return {"run_id": run.pk, "status": run.status}
    cursor = dict(ctx.cursor or {})
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if launcher.kill_stale(run_dir):
        ctx.log("Killed the training processes left by an earlier attempt.", "warning")

    data_path = run_dir / "data.jsonl"
    if not cursor.get("data") or not data_path.exists():
        ctx.log(f"Exporting training data {run.data_ref.get('type')} {run.data_ref.get('name', run.data_ref.get('id'))}.")
        try:
            info = training_data.export(run.data_ref, data_path)
        except training_data.DataSourceError as exc:
            services.training_run_finish(run=run, status=RunStatus.FAILED, error=str(exc))
            raise JobFailed(str(exc)) from exc
        cursor = {"data": info, "metrics_offset": 0}
        with transaction.atomic():
            ctx.progress(done=0, cursor=cursor)
    info = cursor["data"]

    spec = TrainingSpec.from_dict(run.spec)
    spec = launcher.prepare_run_dir(replace(spec, data_path=str(data_path), output_dir=str(run_dir / "out")), run_dir)
    services.training_run_mark_started(run=run, data_info=info, max_steps=spec.max_steps if spec.max_steps > 0 else None)
    run.refresh_from_db()

    cmd = launcher.build_command(spec, run_dir)
    ctx.log("Starting: " + " ".join(cmd))
    proc = launcher.start(cmd, run_dir)
    tail = MetricsTail(run_dir / "metrics.jsonl", offset=cursor.get("metrics_offset", 0))
    last_beat = [0.0]

    def on_rows(rows: list[dict]) -> None:
        # Stored rows and the file offset commit together: a resumed job re-reads nothing twice.
        with transaction.atomic():
            step = services.run_events_record(run=run, rows=rows)
            ctx.progress(done=step, total=run.max_steps or None, cursor={**cursor, "metrics_offset": tail.offset})
        last_beat[0] = time.monotonic()
        for row in rows:
            if row.get("event") == "start" and row.get("resume_from"):
                ctx.log(f"Resuming from {row['resume_from']}.", "warning")
            elif row.get("event") == "checkpoint":
                ctx.log(f"Checkpoint at step {row['step']}.")

    def should_stop() -> bool:
        # Heartbeat + cancel check (progress() raises JobCancelled); throttled to every 2 s.
        if time.monotonic() - last_beat[0] >= 2.0:
            ctx.progress()
            last_beat[0] = time.monotonic()
        return False

    try:
        outcome = launcher.supervise(proc, run_dir, on_rows=on_rows, should_stop=should_stop, poll=POLL_SECONDS, tail=tail)
    except JobCancelled:
        services.training_run_finish(run=run, status=RunStatus.CANCELLED, log_tail=launcher.log_tail(run_dir / "train.log", 20))
        raise

    if outcome.status != "succeeded":
        cause = plain_cause(outcome.log_tail, first_line=False)
        msg = (f"{cause} (The training process exited with code {outcome.returncode}.)" if cause
               else f"The training process exited with code {outcome.returncode}.")
        services.training_run_finish(run=run, status=RunStatus.FAILED, error=msg, log_tail=outcome.log_tail)
        raise JobFailed(msg + "\n" + outcome.log_tail[-3000:])

    end = next(e for e in reversed(outcome.events) if e.get("event") == "end")
    ckpt = services.checkpoint_register(run=run, step=int(end.get("step") or 0), path=end["final"], is_final=True,
                                        info={k: end.get(k) for k in ("train_loss", "best_metric", "best_checkpoint", "tokens", "train_runtime")})
    result = {"run_id": run.pk, "final_model_id": ckpt.model_ref_id, "step": end.get("step"),
              "train_loss": end.get("train_loss"), "best_checkpoint": end.get("best_checkpoint")}
    services.training_run_finish(run=run, status=RunStatus.SUCCEEDED, result=result)
    return result


def _run_links(job):
    from django.urls import reverse
    links = []
    if run := (job.result or {}).get("run_id") or (job.params or {}).get("run_id"):
        links.append((gettext_noop("Open the training run"), reverse("training:run_detail", args=[run])))
    if model := (job.result or {}).get("final_model_id"):
        links.append((gettext_noop("Open the trained model"), reverse("training:model_detail", args=[model])))
    return links


register_job_kind("training.run", label=gettext_noop("Training run"), result_links=_run_links)
