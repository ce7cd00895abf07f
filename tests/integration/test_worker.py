"""Jobs on a real Celery worker, including one killed mid-job and resumed by the next worker."""
import json
import time

import pytest
from django.db import connection, transaction

from medstudio.datasets.models import Dataset, Record
from medstudio.datasets.services import import_start
from medstudio.jobs.models import Job

from .conftest import wait_for

pytestmark = pytest.mark.integration


def _job(pk):
    return Job.objects.get(pk=pk)


def test_worker_runs_an_import(worker_factory, shared_data):
    worker_factory()
    with transaction.atomic():
        job = import_start(user=None, path=shared_data / "disc_med_sft_samples.jsonl", fmt="jsonl", kind="dialogue",
                           dataset="disc")
    wait_for(lambda: _job(job.pk).status in ("succeeded", "failed"), timeout=90)
    job = _job(job.pk)
    assert job.status == "succeeded", job.error
    n = sum(1 for _ in open(shared_data / "disc_med_sft_samples.jsonl", encoding="utf-8"))
    assert Dataset.objects.get(name="disc").n_records == n == job.result["inserted"]


def test_killed_worker_import_starts_over_and_stores_each_record_once(worker_factory, tmp_path):
    """A worker killed mid-import: on PostgreSQL nothing of the dead attempt was committed (one
    transaction); on SQLite its committed batches are named in the cursor and removed by the next
    attempt. Either way the next worker's attempt stores every record exactly once."""
    n = 20000
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"d{i}", "text": f"患者 {i} 主诉头痛三天，伴有恶心。Patient {i} reports headache."},
                                ensure_ascii=False) + "\n")
    env = {"MEDSTUDIO_IMPORT_BATCH_SIZE": 100, "MEDSTUDIO_JOB_STALE_SECONDS": 2}
    first = worker_factory(**env)
    with transaction.atomic():
        job = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="big")
    # Kill it while it is part-way through the batches (progress is visible meanwhile on both databases).
    wait_for(lambda: 0 < _job(job.pk).done < n * 0.6, timeout=120, interval=0.02)
    first.kill()
    killed = _job(job.pk)
    assert killed.status == "running" and 0 < killed.done < n
    stored_at_kill = Record.objects.filter(dataset__name="big").count()
    if connection.vendor == "postgresql":
        assert stored_at_kill == 0 and not Dataset.objects.filter(name="big").exists()
    else:
        assert stored_at_kill > 0 and killed.cursor["undo"]["created"] is True
    time.sleep(2.5)  # let its heartbeat go stale
    worker_factory(**env)  # a new worker recovers orphaned jobs when it starts
    wait_for(lambda: _job(job.pk).status in ("succeeded", "failed"), timeout=180)
    job = _job(job.pk)
    assert job.status == "succeeded", job.error
    assert job.attempts == 2
    assert Record.objects.filter(dataset__name="big").count() == n == Dataset.objects.get(name="big").n_records
    assert job.result["inserted"] == n and job.result["already_present"] == 0  # the retry started over, cleanly
    logs = list(job.logs.values_list("message", flat=True))
    assert any(m.startswith("Resumed (attempt 2)") for m in logs)
    assert any("earlier attempt" in m for m in logs) == (connection.vendor == "sqlite")


def test_worker_runs_jobs_below_the_web_servers_cpu_priority(worker_factory, shared_data):
    """MEDSTUDIO_JOB_NICE: the worker process (solo pool: jobs run in it) lowers its own priority."""
    import os

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    target = min(mine + 3, 19)
    w = worker_factory(MEDSTUDIO_JOB_NICE=target)
    with transaction.atomic():
        job = import_start(user=None, path=shared_data / "disc_med_sft_samples.jsonl", fmt="jsonl", kind="dialogue",
                           dataset="disc-nice")
    wait_for(lambda: _job(job.pk).status in ("succeeded", "failed"), timeout=90)
    assert _job(job.pk).status == "succeeded"
    assert os.getpriority(os.PRIO_PROCESS, w.proc.pid) == target != mine
