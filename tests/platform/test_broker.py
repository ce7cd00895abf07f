"""The embedded broker: a message file is never visible half-written, and queued jobs whose
message was lost are sent again (at most once per interval; a duplicate delivery is harmless)."""
import os
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection

from medstudio.jobs import broker, services
from medstudio.jobs.models import Job, JobLog, JobStatus


def _conn(tmp_path):
    q = tmp_path / "queue"
    q.mkdir()
    (tmp_path / "control").mkdir()
    opts = {"data_folder_in": str(q), "data_folder_out": str(q), "control_folder": str(tmp_path / "control"),
            "store_processed": False}
    return Connection("filesystem://", transport=broker.Transport, transport_options=opts), q


def test_message_file_appears_only_when_complete(tmp_path, monkeypatch):
    conn, q = _conn(tmp_path)
    seen_while_writing = []
    real_replace = os.replace

    def reader_looks(src, dst):  # what a polling worker finds once the payload is written, before it is published
        if not str(dst).endswith(".msg"):  # the exchange table's own atomic replace
            return real_replace(src, dst)
        seen_while_writing.append(sorted(os.listdir(q)))
        assert os.path.getsize(src) > 0
        return real_replace(src, dst)

    monkeypatch.setattr(broker.os, "replace", reader_looks)
    with conn:
        conn.SimpleQueue(f"jobs-{tmp_path.name}").put({"job": 1})
    assert seen_while_writing == [[]]  # nothing in the queue folder while writing
    assert len(os.listdir(q)) == 1


def test_concurrent_writer_and_reader_lose_nothing(tmp_path):
    conn, _ = _conn(tmp_path)
    n, got, errors = 300, [], []
    name = f"jobs-{tmp_path.name}"  # kombu keeps declared exchanges per process: a fresh name per test

    def write():
        try:
            with Connection("filesystem://", transport=broker.Transport, transport_options=conn.transport_options) as c:
                sq = c.SimpleQueue(name)
                for i in range(n):
                    sq.put({"job": i, "pad": "x" * 2000})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def read():
        with Connection("filesystem://", transport=broker.Transport, transport_options=conn.transport_options) as c:
            sq = c.SimpleQueue(name)
            while len(got) < n:
                try:
                    msg = sq.get(timeout=20)
                except Exception as exc:  # noqa: BLE001 - any decode error is the bug under test
                    errors.append(exc)
                    return
                got.append(msg.payload["job"])
                msg.ack()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and sorted(got) == list(range(n))


@pytest.mark.django_db
def test_queued_jobs_are_resent_once_per_interval(settings, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda job: sent.append(job.pk))
    settings.JOB_RESEND_SECONDS = 600
    old = Job.objects.create(kind="datasets.import", params={}, queue="cpu")
    fresh = Job.objects.create(kind="datasets.import", params={}, queue="cpu")
    cancelled = Job.objects.create(kind="datasets.import", params={}, queue="cpu", status=JobStatus.CANCELLED)
    Job.objects.filter(pk__in=[old.pk, cancelled.pk]).update(created_at=timezone.now() - timedelta(hours=1))
    assert services.jobs_recover() == [old.pk] and sent == [old.pk]
    assert services.jobs_recover() == [] and sent == [old.pk]  # not again within the interval
    JobLog.objects.filter(job=old, message=services.RESENT).update(at=timezone.now() - timedelta(hours=1))
    assert services.jobs_recover() == [old.pk] and sent == [old.pk, old.pk]
    assert fresh.pk not in sent


@pytest.mark.django_db
def test_a_duplicate_delivery_runs_the_job_once(settings):
    from medstudio.jobs.registry import job_handler

    calls = []

    @job_handler("tests.count_once", queue="default")
    def _count(ctx):
        calls.append(ctx.job.pk)
        return {"n": len(calls)}

    job = services.job_create(kind="tests.count_once", params={}, enqueue=False)
    services.job_execute(job_id=job.pk)
    services.job_execute(job_id=job.pk)  # the re-sent message arrives after the first finished
    assert calls == [job.pk] and Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
