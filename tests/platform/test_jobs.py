"""Job lifecycle: claim, cancel, failure, resume from cursor, recovery of orphaned jobs."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from medstudio.datasets.models import Dataset, Record
from medstudio.jobs.models import Job, JobStatus
from medstudio.jobs.registry import job_handler
from medstudio.jobs.services import job_cancel, job_create, job_execute, jobs_recover

pytestmark = pytest.mark.django_db

CALLS: list = []


@job_handler("tests.count", queue="default")
def _count_job(ctx):
    start = (ctx.cursor or {}).get("i", 0)
    for i in range(start, ctx.params["n"]):
        CALLS.append(i)
        ctx.progress(done=i + 1, total=ctx.params["n"], cursor={"i": i + 1})
        if ctx.params.get("crash_at") == i + 1:
            raise SystemExit("simulated crash")  # not caught as a job failure: like a dying worker
    return {"counted": ctx.params["n"]}


@job_handler("tests.boom")
def _boom(ctx):
    raise ValueError("kaput")


def test_job_runs_and_records_result(settings):
    CALLS.clear()
    job = job_create(kind="tests.count", params={"n": 3})
    job.refresh_from_db()
    assert job.status == "succeeded" and job.result == {"counted": 3} and job.percent == 100
    assert CALLS == [0, 1, 2]
    job_execute(job_id=job.pk)  # a duplicate delivery of a finished job does nothing
    assert CALLS == [0, 1, 2]


def test_failure_is_shown_not_raised():
    job = job_create(kind="tests.boom", params={})
    job.refresh_from_db()
    assert job.status == "failed" and "ValueError: kaput" in job.error
    assert job.logs.filter(level="error").exists()


def test_cancel_queued_and_running(settings):
    settings.JOBS_EAGER = False
    job = job_create(kind="tests.count", params={"n": 5}, enqueue=False)
    job_cancel(job=job, user=None)
    job.refresh_from_db()
    assert job.status == "cancelled"
    running = job_create(kind="tests.count", params={"n": 5}, enqueue=False)
    Job.objects.filter(pk=running.pk).update(cancel_requested=True)
    job_execute(job_id=running.pk)
    running.refresh_from_db()
    assert running.status == "cancelled"


def test_orphaned_job_resumes_from_its_cursor(settings):
    CALLS.clear()
    job = job_create(kind="tests.count", params={"n": 6, "crash_at": 3}, enqueue=False)
    with pytest.raises(SystemExit):
        job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "running" and job.cursor == {"i": 3}
    assert jobs_recover() == []  # heartbeat still fresh: another worker might be alive
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS + 1),
                                         params={"n": 6})
    assert jobs_recover() == [job.pk]  # eager mode re-runs it at once
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    assert CALLS == [0, 1, 2, 3, 4, 5]  # nothing redone, nothing lost
    assert "Resumed (attempt 2) from cursor {'i': 3}" in " ".join(job.logs.values_list("message", flat=True))


def test_an_import_whose_worker_died_starts_over(tmp_path, settings):
    """An import is one transaction: a worker that died mid-import committed nothing, so the
    re-queued job reads the file from the start and imports every row once."""
    settings.IMPORT_BATCH_SIZE = 10
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"t{i}"}) + "\n" for i in range(35)))
    from medstudio.datasets.services import import_start

    job = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="r", enqueue=False)
    # Pretend a worker claimed it, reported two batches of progress and died (its transaction rolled back).
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1, done=20, total=35,
                                         heartbeat_at=timezone.now() - timedelta(days=1))
    assert not Dataset.objects.filter(name="r").exists()
    jobs_recover()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.attempts == 2 and job.result["inserted"] == 35 and job.done == 35
    ds = Dataset.objects.get(name="r")
    assert sorted(Record.objects.filter(dataset=ds).values_list("external_id", flat=True), key=int) == [str(i) for i in range(35)]
    assert ds.n_records == 35
