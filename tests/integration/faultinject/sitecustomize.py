"""Loaded by the test worker only (tests/integration/test_faults.py puts this folder first on its
PYTHONPATH): a deterministic "mid-job" point for fault injection, with no hook in the app.

With MEDSTUDIO_FAULT_DIR set, the first attempt of a job stops inside its Nth progress call
(MEDSTUDIO_FAULT_STALL_AT, default 2: after one batch is committed, inside the next batch's
transaction) and writes FAULT_DIR/stalled-<job id> (holding the database backend pid when it is
PostgreSQL), then waits for FAULT_DIR/release-<job id>; the test kills the worker (or cuts its
database connection) meanwhile.
"""
import os

if os.environ.get("MEDSTUDIO_FAULT_DIR"):
    from celery.signals import task_prerun

    _patched = []

    @task_prerun.connect(weak=False)
    def _install(**_kw):
        if _patched:
            return
        import time
        from pathlib import Path

        from medstudio.jobs.context import JobContext

        original = JobContext.progress
        folder = Path(os.environ["MEDSTUDIO_FAULT_DIR"])
        stall_at = int(os.environ.get("MEDSTUDIO_FAULT_STALL_AT", "2"))
        calls: dict[int, int] = {}

        def progress(self, **kw):
            original(self, **kw)
            if self.job.attempts != 1:
                return
            calls[self.job.pk] = calls.get(self.job.pk, 0) + 1
            if calls[self.job.pk] != stall_at:
                return
            from django.db import connection

            pid = ""
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid()")
                    pid = str(cur.fetchone()[0])
            (folder / f"stalled-{self.job.pk}").write_text(pid)
            release = folder / f"release-{self.job.pk}"
            while not release.exists():
                time.sleep(0.05)

        JobContext.progress = progress
        _patched.append(True)
