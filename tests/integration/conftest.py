"""A real Celery worker process on the project's broker, sharing the test database.

Embedded mode: the SQLite test file + kombu's filesystem broker. CI's second pass: Postgres +
Redis (MEDSTUDIO_REQUIRE_SERVICES=1 makes an unreachable service a failure, never a skip).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _reachable(url: str) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def broker_ready():
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if url.startswith("redis") and not _reachable(url):
        msg = f"Redis broker unreachable at {url}"
        if os.environ.get("MEDSTUDIO_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if url.startswith("redis"):
        from medstudio.celery import app

        with app.connection_for_write() as conn:  # a clean queue: no message left by an earlier run
            conn.default_channel.client.flushdb()
    return url


class WorkerProcess:
    def __init__(self, env: dict):
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / "var" / f"test-worker-{os.getpid()}.log"

    def start(self) -> "WorkerProcess":
        cmd = [sys.executable, "-m", "celery", "-A", "medstudio", "worker", "-P", "solo", "-l", "INFO",
               "-Q", "default,cpu,gpu,training", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to ack, clean up or finish the batch."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_factory(transactional_db, settings, broker_ready):
    """Start real workers pointed at the test database; jobs go through the broker (not eager)."""
    from django.db import connection

    settings.JOBS_EAGER = False
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        db_url = f"sqlite:///{db['NAME']}"
    else:
        db_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    workers: list[WorkerProcess] = []

    def make(**extra_env) -> WorkerProcess:
        env = {**os.environ, "DATABASE_URL": db_url, "MEDSTUDIO_JOBS_EAGER": "0",
               "MEDSTUDIO_MEDIA_ROOT": str(settings.MEDIA_ROOT), **{k: str(v) for k, v in extra_env.items()}}
        w = WorkerProcess(env).start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
