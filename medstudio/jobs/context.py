from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from .models import Job, JobLog

log = logging.getLogger("medstudio.jobs")


class JobCancelled(Exception):
    """Raised inside a handler when a user asked to cancel the job."""


class JobFailed(Exception):
    """A handler raises this for an expected failure; its message is shown to the user as is."""


class JobPartial(Exception):
    """A handler raises this when it finished but some independent parts failed (listed in `result`):
    the job ends `partial`, its result is kept and the message is its error."""

    def __init__(self, message: str, *, result: dict | None = None):
        super().__init__(message)
        self.result = result or {}


def connection_lost(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is the database connection going away (a restarted server,
    pg_terminate_backend, a network cut), not a refused statement: the job is worth another attempt
    from its cursor, and a handler must not treat it as bad data.

    PostgreSQL says so with SQLSTATE class 08 (connection exception) or 57P (operator intervention:
    admin shutdown, crash shutdown, cannot connect now), or with no SQLSTATE at all (the socket
    closed). SQLite's OperationalError ("database is locked") is not a lost connection.
    """
    from django.db import InterfaceError, OperationalError

    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(isinstance(x, (OperationalError, InterfaceError)) for x in chain):
        return False
    for x in chain:
        if not type(x).__module__.startswith(("psycopg", "psycopg2")):
            continue
        state = getattr(x, "sqlstate", None) or getattr(x, "pgcode", None)
        if state is None or state.startswith(("08", "57P")):
            return True
    return False


class JobContext:
    """What a handler sees: params, the resume cursor, progress/log/cancel helpers."""

    def __init__(self, job: Job):
        self.job = job

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    @property
    def cursor(self) -> Any:
        return self.job.cursor

    def progress(self, *, done: int | None = None, total: int | None = None, cursor: Any = ..., result: dict | None = None) -> None:
        """Persist progress (and the resume cursor) and heartbeat; raise JobCancelled if asked to stop.

        Call it inside the same transaction that stores the batch's results, so the cursor never
        runs ahead of (or behind) what is stored.
        """
        fields = {"heartbeat_at": timezone.now()}
        if done is not None:
            fields["done"] = done
            self.job.done = done
        if total is not None:
            fields["total"] = total
            self.job.total = total
        if cursor is not ...:
            fields["cursor"] = cursor
            self.job.cursor = cursor
        if result is not None:
            fields["result"] = result
            self.job.result = result
        Job.objects.filter(pk=self.job.pk).update(**fields)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled()

    def log(self, message: str, level: str = "info") -> None:
        log.log(logging.WARNING if level == "warning" else logging.ERROR if level == "error" else logging.INFO,
                "job %s: %s", self.job.pk, message)
        JobLog.objects.create(job_id=self.job.pk, level=level, message=message)
