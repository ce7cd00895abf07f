"""Loaded by the test worker only (tests/integration/test_faults.py puts this folder first on its
PYTHONPATH): a deterministic "mid-job" point for fault injection, with no hook in the app.

With MEDSTUDIO_FAULT_DIR set, the first attempt of a job stops inside its Nth progress call
(MEDSTUDIO_FAULT_STALL_AT, default 2: after one batch is committed, inside the next batch's
transaction) and writes FAULT_DIR/stalled-<job id> (holding the database backend pid when it is
PostgreSQL), then waits for FAULT_DIR/release-<job id>; the test kills the worker (or cuts its
database connection) meanwhile.

A job kind with no progress call in its middle stalls in a function instead:
MEDSTUDIO_FAULT_STALL_IN="package.module:function" wraps that module attribute (looked up at call
time by the code under test), for the first attempt of jobs of kind MEDSTUDIO_FAULT_KIND only.
MEDSTUDIO_FAULT_STALL_WHEN says where:
- "inside" (default): the function runs inside a transaction, and the stall comes after it returns,
  before that transaction commits (a kill rolls its writes back; a cut connection fails the commit);
- "before": the stall comes before the call, outside any transaction. Stalling before
  `medstudio.jobs.services:_finish` is the "all the work is committed, the Job is not finished yet"
  point: the next attempt runs the whole handler again over its own committed results.
"""
import os

if os.environ.get("MEDSTUDIO_FAULT_DIR"):
    from celery.signals import task_prerun

    _patched = []
    _current: dict = {}

    def _stall(job_pk: int) -> None:
        import time
        from pathlib import Path

        from django.db import connection

        folder = Path(os.environ["MEDSTUDIO_FAULT_DIR"])
        pid = ""
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = str(cur.fetchone()[0])
        (folder / f"stalled-{job_pk}").write_text(pid)
        release = folder / f"release-{job_pk}"
        while not release.exists():
            time.sleep(0.05)

    def _patch_function(spec: str) -> None:
        import functools
        import importlib

        from django.db import transaction

        from medstudio.jobs.models import Job

        module_name, attr = spec.split(":")
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
        when = os.environ.get("MEDSTUDIO_FAULT_STALL_WHEN", "inside")
        kind = os.environ.get("MEDSTUDIO_FAULT_KIND", "")
        stalled: set = set()

        def first_attempt() -> int | None:
            pk = _current.get("job")
            if pk is None or pk in stalled:
                return None
            row = Job.objects.filter(pk=pk).values("kind", "attempts").first()
            if row is None or row["attempts"] != 1 or (kind and row["kind"] != kind):
                return None
            stalled.add(pk)
            return pk

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            if when == "before":
                pk = first_attempt()
                if pk is not None:
                    _stall(pk)
                return original(*args, **kwargs)
            with transaction.atomic():
                out = original(*args, **kwargs)
                pk = first_attempt()
                if pk is not None:
                    _stall(pk)
            return out

        setattr(module, attr, wrapped)

    @task_prerun.connect(weak=False)
    def _install(args=None, **_kw):
        if args:
            _current["job"] = args[0]
        if _patched:
            return
        from medstudio.jobs.context import JobContext

        _patched.append(True)
        if os.environ.get("MEDSTUDIO_FAULT_STALL_IN"):
            _patch_function(os.environ["MEDSTUDIO_FAULT_STALL_IN"])
            return
        original = JobContext.progress
        stall_at = int(os.environ.get("MEDSTUDIO_FAULT_STALL_AT", "2"))
        calls: dict[int, int] = {}

        def progress(self, **kw):
            original(self, **kw)
            if self.job.attempts != 1:
                return
            calls[self.job.pk] = calls.get(self.job.pk, 0) + 1
            if calls[self.job.pk] != stall_at:
                return
            _stall(self.job.pk)

        JobContext.progress = progress
