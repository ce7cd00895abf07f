"""SQLite (the embedded default) has one writer at a time, so an import commits batch by batch
there instead of holding the write lock for its whole run; what it committed is undone on failure,
and a re-queued attempt removes a dead attempt's batches first."""
import json
import sqlite3

import pytest
from django.db import connection

from medstudio.datasets import services
from medstudio.datasets.models import Dataset, Record
from medstudio.jobs.models import Job
from medstudio.jobs.services import job_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: on PostgreSQL the import is one transaction (tests/platform/test_row_path.py)")


def _file(tmp_path, n, bad_at=None):
    p = tmp_path / "in.jsonl"
    with p.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write("{not json\n" if i == bad_at else json.dumps({"id": f"d{i}", "text": f"Patient {i} has a cough."}) + "\n")
    return p


def _start(path, dataset="ds", **kw):
    return services.import_start(user=None, path=path, fmt="jsonl", kind="document", dataset=dataset, enqueue=False, **kw)


def test_another_writer_is_not_locked_out_between_batches(tmp_path, settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 10
    db_file = connection.settings_dict["NAME"]
    wrote = []
    real_next = services._Batch.next

    def next_then_write(self):
        if wrote == [] and Record.objects.exists():  # one batch committed, the next not begun
            other = sqlite3.connect(db_file, timeout=0.2)  # another process's writer, barely waiting
            try:
                other.execute("BEGIN IMMEDIATE")  # takes the write lock: fails if the import holds it
                other.execute("ROLLBACK")
                wrote.append(True)
            finally:
                other.close()
        return real_next(self)

    monkeypatch.setattr(services._Batch, "next", next_then_write)
    job = _start(_file(tmp_path, 35))
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert wrote == [True]
    assert Record.objects.filter(dataset__name="ds").count() == 35
    assert Job.objects.get(pk=job.pk).cursor is None


def test_a_bad_line_after_committed_batches_removes_them(tmp_path, settings):
    settings.IMPORT_BATCH_SIZE = 10
    Dataset.objects.create(name="old", kind="document")
    existing = _start(_file(tmp_path, 5), dataset="keep")
    job_execute(job_id=existing.pk)
    job = _start(_file(tmp_path, 40, bad_at=33), dataset="keep")  # 5 already there, 35 new until line 34
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "34" in job.error
    assert Record.objects.filter(dataset__name="keep").count() == 5
    assert Dataset.objects.get(name="keep").n_records == 5
    new = _start(_file(tmp_path, 40, bad_at=33), dataset="fresh")
    job_execute(job_id=new.pk)
    assert not Dataset.objects.filter(name="fresh").exists()
    assert Dataset.objects.filter(name="old").exists()


def test_a_dead_attempts_batches_are_removed_before_the_retry(tmp_path, settings, monkeypatch):
    """A worker that dies after two committed batches (a BaseException skips the handler's own
    undo, as a SIGKILL would) leaves its rows and its cursor; the retry removes them first."""
    settings.IMPORT_BATCH_SIZE = 10
    job = _start(_file(tmp_path, 30))
    real_insert, calls = services.records_insert, []

    def dies_on_the_third_batch(**kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("worker killed")
        return real_insert(**kw)

    monkeypatch.setattr(services, "records_insert", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        job_execute(job_id=job.pk)
    assert Record.objects.filter(dataset__name="ds").count() == 20
    assert Job.objects.get(pk=job.pk).cursor["undo"]["created"] is True
    monkeypatch.setattr(services, "records_insert", real_insert)
    Job.objects.filter(pk=job.pk).update(status="queued")  # what jobs_recover does for a lost worker
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.result["inserted"] == 30 and job.result["already_present"] == 0
    assert Record.objects.filter(dataset__name="ds").count() == 30
    assert "earlier attempt" in "\n".join(job.logs.values_list("message", flat=True))


def test_a_failed_append_keeps_another_imports_rows_in_the_same_dataset(tmp_path, settings, monkeypatch):
    """Another import's batch committed between two of ours (the same dataset) survives our undo."""
    settings.IMPORT_BATCH_SIZE = 10
    first = _start(_file(tmp_path, 5), dataset="shared")
    job_execute(job_id=first.pk)
    ds = Dataset.objects.get(name="shared")
    real_next, other = services._Batch.next, []

    def next_with_a_neighbour(self):
        if not other and Record.objects.filter(dataset=ds).count() > 5:  # our first batch committed
            Record.objects.create(dataset=ds, external_id="other-import", text="from another import", content={"text": "x"})
            other.append(True)
        return real_next(self)

    monkeypatch.setattr(services._Batch, "next", next_with_a_neighbour)
    job = _start(_file(tmp_path, 40, bad_at=33), dataset="shared")
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert other == [True] and job.status == "failed"
    assert set(Record.objects.filter(dataset=ds).values_list("external_id", flat=True)) == \
        {f"d{i}" for i in range(5)} | {"other-import"}
