"""Issue 14, point 6: one source of truth for status.

Every model with a status field and a link to a Job (found by introspecting apps.get_models(), so a
model added later is checked too) must be registered with medstudio.jobs.mirrors, and must never
show an active status (queued, running, building...) once its Job failed or was cancelled, whichever
way that happened: a handler's JobFailed, a crash, a cancel while queued, a cancel while running.
"""
from __future__ import annotations

import itertools
import uuid

import pytest
from django.apps import apps
from django.db import models

from medstudio.jobs.mirrors import status_mirrors
from medstudio.jobs.models import Job, JobStatus
from medstudio.jobs.registry import job_handler
from medstudio.jobs.services import job_cancel, job_create, job_execute

ACTIVE = ("queued", "running", "building", "planned", "training", "pending", "started")
PROBE = "tests.status_probe"
_seq = itertools.count(1)


def _status_field(model) -> models.Field | None:
    for f in model._meta.concrete_fields:
        if isinstance(f, models.CharField) and (f.name == "status" or f.name.endswith("_status")):
            return f
    return None


def _job_links(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.is_relation and f.related_model is Job]


def job_status_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if m is not Job and _status_field(m) is not None and _job_links(m)]


def _value(f: models.Field):
    if f.choices:
        return f.choices[0][0]
    if isinstance(f, (models.CharField, models.TextField, models.SlugField)):
        v = f"t{next(_seq)}-{uuid.uuid4().hex[:8]}"
        return v[: f.max_length] if f.max_length else v
    if isinstance(f, models.BooleanField):
        return False
    if isinstance(f, (models.IntegerField, models.BigIntegerField, models.PositiveIntegerField, models.FloatField)):
        return next(_seq)
    if isinstance(f, models.JSONField):
        return {}
    if isinstance(f, models.DateTimeField):
        from django.utils import timezone

        return timezone.now()
    raise NotImplementedError(f"no test value for {f!r}")


def build(model, **given):
    """A saved row of `model` with every required field filled (required foreign keys built too)."""
    kwargs = dict(given)
    for f in model._meta.concrete_fields:
        if f.name in kwargs or f.attname in kwargs or f.primary_key or f.null or f.has_default():
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            continue
        if f.is_relation:
            if f.related_model is model:
                continue
            kwargs[f.name] = build(f.related_model)
        else:
            kwargs[f.name] = _value(f)
    return model._default_manager.create(**kwargs)


def _active_words(f: models.CharField) -> list[str]:
    allowed = {c[0] for c in f.choices} if f.choices else None
    return [w for w in ACTIVE if len(w) <= f.max_length and (allowed is None or w in allowed)]


@job_handler(PROBE)
def _probe(ctx):
    mode = ctx.params["mode"]
    if mode == "fail":
        from medstudio.jobs.context import JobFailed

        raise JobFailed("probe failed")
    if mode == "crash":
        raise RuntimeError("probe crashed")
    if mode == "cancel_running":
        job_cancel(job=ctx.job, user=None)
        ctx.progress(done=1)  # raises JobCancelled
    return {}


def _linked_rows(model, job, word):
    f = _status_field(model)
    rows = []
    for link in _job_links(model):
        row = build(model, **{link.name: job})
        model._default_manager.filter(pk=row.pk).update(**{f.name: word})
        rows.append(row)
    return rows


SCENARIOS = {
    "fail": (lambda job: job_execute(job_id=job.pk), JobStatus.FAILED),
    "crash": (lambda job: job_execute(job_id=job.pk), JobStatus.FAILED),
    "cancel_queued": (lambda job: job_cancel(job=job, user=None), JobStatus.CANCELLED),
    "cancel_running": (lambda job: job_execute(job_id=job.pk), JobStatus.CANCELLED),
    "cancel_before_claim": (lambda job: (Job.objects.filter(pk=job.pk).update(cancel_requested=True),
                                         job_execute(job_id=job.pk)), JobStatus.CANCELLED),
}


def test_discovery_finds_the_known_models():
    names = {m._meta.label for m in job_status_models()}
    # a floor, not the list: the test below covers whatever introspection finds
    assert {"training.TrainingRun", "evaluation.EvalRun", "handoffs.ScorerRun", "handoffs.Selection",
            "handoffs.Mixture", "preferences.BuildRun", "preferences.VoteRun"} <= names


@pytest.mark.parametrize("model", job_status_models(), ids=lambda m: m._meta.label)
def test_model_is_registered(model):
    assert model in status_mirrors(), (
        f"{model._meta.label} has a status and a Job link: register it with "
        f"medstudio.jobs.mirrors.register_status_mirror in its app's ready()")


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("model", job_status_models(), ids=lambda m: m._meta.label)
def test_no_active_status_for_a_failed_or_cancelled_job(model, scenario):
    f = _status_field(model)
    words = _active_words(f)
    assert words, f"{model._meta.label}.{f.name} allows none of {ACTIVE}"
    act, expected = SCENARIOS[scenario]
    for word in words:
        job = job_create(kind=PROBE, params={"mode": scenario}, enqueue=False)
        rows = _linked_rows(model, job, word)
        act(job)
        job.refresh_from_db()
        assert job.status == expected
        for row in rows:
            row.refresh_from_db()
            shown = getattr(row, f.name)
            assert shown not in ACTIVE, f"{model._meta.label} #{row.pk} shows {shown!r} for a {job.status} job (was {word!r})"
            if f.choices:
                assert shown in {c[0] for c in f.choices}
            assert len(shown) <= f.max_length


@pytest.mark.django_db
def test_a_handler_written_terminal_word_is_kept():
    """A cancelled preference build the handler marked paused (resumable) stays paused."""
    from preferences.models import BuildRun, RunStatus

    job = job_create(kind=PROBE, params={"mode": "cancel_queued"}, enqueue=False)
    run = build(BuildRun, job=job)
    BuildRun.objects.filter(pk=run.pk).update(status=RunStatus.DONE)
    job_cancel(job=job, user=None)
    run.refresh_from_db()
    assert run.status == RunStatus.DONE


@pytest.mark.django_db
def test_a_scorer_run_follows_every_shard_job():
    from medstudio.handoffs.models import ScorerRun

    run = build(ScorerRun)
    ScorerRun.objects.filter(pk=run.pk).update(status="running")
    first = job_create(kind=PROBE, params={"mode": "ok"}, enqueue=False)
    ScorerRun.objects.filter(pk=run.pk).update(job=first)
    # a second shard: linked by params.run_id only (kind curation.score), cancelled while queued
    shard = Job.objects.create(kind="curation.score", params={"run_id": run.pk, "shard": 1})
    job_cancel(job=shard, user=None)
    run.refresh_from_db()
    assert run.status == "cancelled"


# --------------------------------------------------------------------------- live statuses follow the Job too


def _live_models() -> list[type[models.Model]]:
    return [m for m in job_status_models() if status_mirrors()[m].live]


def test_models_a_handler_marks_running_have_live_words():
    """Every model a handler marks running names its live words (a floor: found by choices or registered)."""
    names = {m._meta.label for m in _live_models()}
    assert {"training.TrainingRun", "evaluation.EvalRun", "handoffs.ScorerRun", "preferences.BuildRun",
            "preferences.VoteRun", "preferences.DiversifyRun", "modelscorers.TrainedModel"} <= names


def _stale_running(model, settings):
    """A running job whose worker stopped heart-beating, and a linked row showing the model's running word."""
    from datetime import timedelta

    from django.utils import timezone

    settings.JOBS_EAGER = False  # recovery re-queues; no worker here to run it
    mirror = status_mirrors()[model]
    job = job_create(kind=PROBE, params={"mode": "ok"}, enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1,
                                         heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 60))
    rows = _linked_rows(model, job, mirror.live["running"])
    return mirror, job, rows


@pytest.mark.django_db
@pytest.mark.parametrize("model", _live_models(), ids=lambda m: m._meta.label)
def test_a_requeued_job_shows_queued_then_running_again(model, settings):
    from medstudio.jobs.services import _claim, jobs_recover

    mirror, job, rows = _stale_running(model, settings)
    assert job.pk in jobs_recover()
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    for row in rows:
        row.refresh_from_db()
        assert getattr(row, mirror.status_field) == mirror.live["queued"], f"{model._meta.label} still shows the dead attempt"
    assert _claim(job.pk) is not None  # a worker takes it again
    for row in rows:
        row.refresh_from_db()
        assert getattr(row, mirror.status_field) == mirror.live["running"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", [m for m in _live_models() if m._meta.label in ("training.TrainingRun", "preferences.BuildRun")],
                         ids=lambda m: m._meta.label)
def test_a_job_requeued_after_a_lost_connection_shows_queued(model, settings):
    from django.db import OperationalError

    from medstudio.jobs.services import _requeue_after_connection_loss

    mirror, job, rows = _stale_running(model, settings)
    _requeue_after_connection_loss(Job.objects.get(pk=job.pk), OperationalError("server closed the connection"))
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    for row in rows:
        row.refresh_from_db()
        assert getattr(row, mirror.status_field) == mirror.live["queued"]


@pytest.mark.django_db
def test_recovery_leaves_a_handler_word_alone():
    """A live mirror touches rows showing a live word only: a selection being built stays "building",
    a finished build stays done."""
    from datetime import timedelta

    from django.utils import timezone

    from medstudio.handoffs.models import Selection
    from medstudio.jobs.services import jobs_recover
    from preferences.models import BuildRun, RunStatus

    job = job_create(kind=PROBE, params={"mode": "ok"}, enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(days=1))
    sel = build(Selection, job=job)
    done = build(BuildRun, job=job)
    BuildRun.objects.filter(pk=done.pk).update(status=RunStatus.DONE)
    from django.test import override_settings

    with override_settings(JOBS_EAGER=False):
        assert job.pk in jobs_recover()
    sel.refresh_from_db()
    done.refresh_from_db()
    assert sel.status == Selection.Status.BUILDING and done.status == RunStatus.DONE


@pytest.mark.django_db
def test_a_requeued_shard_leaves_its_scorer_run_running_while_another_shard_runs(settings):
    from datetime import timedelta

    from django.utils import timezone

    from medstudio.handoffs.models import ScorerRun
    from medstudio.jobs.services import jobs_recover

    settings.JOBS_EAGER = False
    run = build(ScorerRun)
    lost = Job.objects.create(kind="curation.score", params={"run_id": run.pk, "shard": 0}, status=JobStatus.RUNNING,
                              heartbeat_at=timezone.now() - timedelta(days=1))
    Job.objects.create(kind="curation.score", params={"run_id": run.pk, "shard": 1}, status=JobStatus.RUNNING,
                       heartbeat_at=timezone.now())
    ScorerRun.objects.filter(pk=run.pk).update(job=lost, status="running")
    assert jobs_recover() == [lost.pk]
    run.refresh_from_db()
    assert run.status == "running"
