"""The one write path for jobs: create, execute (claim + run a handler), cancel, recover."""
from __future__ import annotations

import logging
import socket
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from medstudio.audit.services import audit_log

from .context import JobCancelled, JobContext, JobFailed, connection_lost, JobPartial
from .mirrors import mirror_job_status
from .models import FINISHED, Job, JobLog, JobStatus
from .registry import get_handler

log = logging.getLogger("medstudio.jobs")


def _enqueue(job: Job) -> None:
    if settings.JOBS_EAGER:
        job_execute(job_id=job.pk)
        return
    from .tasks import job_execute_task

    transaction.on_commit(lambda: job_execute_task.apply_async(args=[job.pk], queue=job.queue))


@transaction.atomic
def job_create(*, kind: str, params: dict, user=None, total: int | None = None, queue: str | None = None,
               enqueue: bool = True) -> Job:
    """Create a job for a registered handler and enqueue it after the transaction commits.

    enqueue=False leaves it queued for the caller to run in-process (management commands:
    `job_execute(job_id=job.pk)` after this returns).
    """
    spec = get_handler(kind)
    job = Job.objects.create(kind=kind, params=params, created_by=user if getattr(user, "is_authenticated", False) else None,
                             total=total, queue=queue or spec.queue)
    audit_log(actor=user, action="jobs.create", target=job, data={"kind": kind, "params": params})
    if enqueue:
        _enqueue(job)
    return job


def _claim(job_id: int) -> Job | None:
    """Mark the job running for this worker, unless it is finished or another live worker has it."""
    stale_before = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in FINISHED:
            return None
        if job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at > stale_before:
            return None  # a duplicate delivery while the first worker is still alive
        if job.cancel_requested:
            job.status = JobStatus.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at"])
            mirror_job_status(job)
            return None
        now = timezone.now()
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.worker = socket.gethostname()
        job.save(update_fields=["status", "attempts", "started_at", "heartbeat_at", "worker"])
        mirror_job_status(job)  # a run re-queued by recovery shows "running" again, not "queued"
    if job.attempts > 1:
        JobLog.objects.create(job=job, level="warning",
                              message=f"Resumed (attempt {job.attempts}) from cursor {job.cursor!r}.")
    return job


def _finish(job: Job, status: str, *, result: dict | None = None, error: str = "") -> None:
    fields = {"status": status, "finished_at": timezone.now(), "error": error}
    if result is not None:
        fields["result"] = result
    with transaction.atomic():  # the Job and the run/build rows that show its status change together
        Job.objects.filter(pk=job.pk).update(**fields)
        mirror_job_status(job, status)


def job_run_here(*, job_id: int) -> None:
    """Run a job in this process, as the management commands do (`manage.py import_records`,
    `train`, ...): at the workers' lower CPU priority (medstudio/jobs/priority.py), since a command
    on the app's host is batch work too. Never from a web request: the niceness stays with the process."""
    from .priority import lower_cpu_priority

    lower_cpu_priority()
    job_execute(job_id=job_id)


def job_execute(*, job_id: int) -> None:
    """Run a job's handler. Safe to call twice: a finished or live job is left alone."""
    job = _claim(job_id)
    if job is None:
        return
    ctx = JobContext(job)
    try:
        spec = get_handler(job.kind)
        result = spec.func(ctx)
    except JobCancelled:
        ctx.log("Cancelled.", "warning")
        _finish(job, JobStatus.CANCELLED)
    except JobPartial as exc:
        ctx.log(str(exc), "warning")
        job.refresh_from_db(fields=["result"])
        _finish(job, JobStatus.PARTIAL, error=str(exc), result={**(job.result or {}), **exc.result})
    except JobFailed as exc:
        ctx.log(str(exc), "error")
        _finish(job, JobStatus.FAILED, error=str(exc), result=getattr(exc, "result", None))
    except Exception as exc:  # the job fails, the worker lives on
        if connection_lost(exc) and job.attempts < MAX_ATTEMPTS_ON_CONNECTION_LOSS:
            _requeue_after_connection_loss(job, exc)
            return
        log.exception("job %s failed", job.pk)
        tail = traceback.format_exc(limit=8)
        ctx.log(tail, "error")
        _finish(job, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        job.refresh_from_db(fields=["result"])
        merged = {**(job.result or {}), **(result or {})}
        _finish(job, JobStatus.SUCCEEDED, result=merged)


MAX_ATTEMPTS_ON_CONNECTION_LOSS = 5


def _requeue_after_connection_loss(job: Job, exc: BaseException) -> None:
    """The database went away mid-job: what the batch wrote was rolled back with its cursor, so the
    job goes back to the queue and resumes from its last committed cursor on a fresh connection."""
    from django.db import connection

    log.warning("job %s: database connection lost (%s); re-queued", job.pk, exc)
    connection.close()
    with transaction.atomic():
        JobLog.objects.create(job=job, level="warning",
                              message=f"Database connection lost ({type(exc).__name__}); job re-queued.")
        if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED):
            job.status = JobStatus.QUEUED
            mirror_job_status(job)  # its run shows "queued", not "running" from the attempt that lost it
        _enqueue(job)


@transaction.atomic
def job_cancel(*, job: Job, user) -> Job:
    """Ask a job to stop. Queued jobs stop at once; running ones at their next progress call."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.is_finished:
        return job
    job.cancel_requested = True
    fields = ["cancel_requested"]
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        fields += ["status", "finished_at"]
    job.save(update_fields=fields)
    mirror_job_status(job)
    audit_log(actor=user, action="jobs.cancel", target=job)
    return job


RESENT = "Still queued; sent to the broker again."


def jobs_recover() -> list[int]:
    """Re-enqueue running jobs whose worker stopped heart-beating (killed, crashed machine), and
    re-send jobs queued for longer than JOB_RESEND_SECONDS (their message may be lost).

    Idempotent: a job that gets two messages is claimed once (`_claim`), and a queued job is
    re-sent at most once per JOB_RESEND_SECONDS, so a long backlog does not fill the broker.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    ids = []
    for job in list(stale):
        with transaction.atomic():  # the Job and the run/build rows that show its status change together
            if not stale.filter(pk=job.pk).update(status=JobStatus.QUEUED):
                continue  # a worker's heartbeat or finish came in meanwhile
            job.status = JobStatus.QUEUED
            mirror_job_status(job)  # its run shows "queued", not "running" from the dead attempt
            JobLog.objects.create(job=job, level="warning", message="Worker lost; job re-queued.")
        _enqueue(job)  # after the commit: an eager run must not run inside this transaction
        ids.append(job.pk)
    resend_before = now - timedelta(seconds=settings.JOB_RESEND_SECONDS)
    waiting = Job.objects.filter(status=JobStatus.QUEUED, cancel_requested=False, created_at__lt=resend_before).exclude(pk__in=ids)
    recently = set(JobLog.objects.filter(job__in=waiting, message=RESENT, at__gte=resend_before).values_list("job_id", flat=True))
    resent = []
    for job in waiting.exclude(pk__in=recently)[:1000]:
        JobLog.objects.create(job=job, level="warning", message=RESENT)
        _enqueue(job)
        resent.append(job.pk)
    return ids + resent
