from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

from django.db.models.sql import UpdateQuery
from django.db.models.sql.constants import ROW_COUNT
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
        self._side = None  # a second connection for progress, inside `progress_outside_transaction`

    @contextmanager
    def progress_outside_transaction(self):
        """For a handler that does all its work in one long transaction (the dataset import):
        inside this block `progress` writes through a second connection in autocommit, so the
        heartbeat and the count are seen while the work runs (in the handler's transaction they
        would stay invisible until it commits, and jobs_recover would take the job for dead) and
        the job row is not locked for the whole run (a cancel would wait for it). The cancel flag is
        still read on the handler's connection, which sees a committed cancel at once. PostgreSQL
        only: SQLite has one writer at a time, so there progress stays on the handler's connection.
        """
        from django.db import DEFAULT_DB_ALIAS, connection, connections

        if connection.vendor != "postgresql" or self._side is not None:
            yield
            return
        self._side = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            yield
        finally:
            side, self._side = self._side, None
            side.close()

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
        if self._side is None:
            Job.objects.filter(pk=self.job.pk).update(**fields)
        else:  # the same UPDATE, compiled for the second connection
            query = Job.objects.filter(pk=self.job.pk).query.chain(UpdateQuery)
            query.add_update_values(fields)
            query.get_compiler(connection=self._side).execute_sql(ROW_COUNT)
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise JobCancelled()

    def log(self, message: str, level: str = "info") -> None:
        log.log(logging.WARNING if level == "warning" else logging.ERROR if level == "error" else logging.INFO,
                "job %s: %s", self.job.pk, message)
        JobLog.objects.create(job_id=self.job.pk, level=level, message=message)
