"""Shared fixtures: users per role, logged-in clients, datasets through the real importer."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
# The commands a test calls in-process (call_command("import_records", ...)) would lower the whole
# test process's CPU priority for good; tests run at the priority they were started with, and the
# niceness itself is tested in child processes (tests/platform/test_priority.py, test_worker.py).
os.environ.setdefault("MEDSTUDIO_JOB_NICE", "0")
# Tests size import batches with MEDSTUDIO_IMPORT_BATCH_SIZE (a failure in the second batch, a kill
# mid-import); 0 makes PostgreSQL's streamed COPY batches follow it instead of its own default
# (tests/platform/test_row_path.py checks that default on its own).
os.environ.setdefault("MEDSTUDIO_IMPORT_STREAM_BATCH_SIZE", "0")

SHARED_DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    for item in items:
        if "postgres" in item.keywords and not settings.IS_POSTGRES:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL); CI runs it"))


@pytest.fixture(autouse=True)
def _eager_jobs(settings, tmp_path):
    settings.JOBS_EAGER = True
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.JOB_NICE = 0  # see MEDSTUDIO_JOB_NICE above
    settings.IMPORT_STREAM_BATCH_SIZE = 0  # see MEDSTUDIO_IMPORT_STREAM_BATCH_SIZE above


@pytest.fixture(autouse=True)
def _fresh_shared_cache():
    """With MEDSTUDIO_CACHE_URL (CI's Postgres pass) the cache is Redis, shared across processes and
    runs, while ids restart in each test database: start every test from an empty cache."""
    from django.conf import settings

    if getattr(settings, "CACHE_URL", ""):
        from django.core.cache import cache

        cache.clear()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set MEDSTUDIO_SHARED_DATA")
    return SHARED_DATA


def _user(django_user_model, role: str, username: str | None = None):
    return django_user_model.objects.create_user(username=username or f"{role}1", password="pw-" + role, role=role)


@pytest.fixture
def clinician(db, django_user_model):
    return _user(django_user_model, "clinician")


@pytest.fixture
def curator(db, django_user_model):
    return _user(django_user_model, "curator")


@pytest.fixture
def admin_user(db, django_user_model):
    return _user(django_user_model, "admin", "admin1")


@pytest.fixture
def client_for(db, django_user_model):
    """client_for("curator") -> a test Client logged in as a fresh user with that role."""
    from django.test import Client

    made: dict[str, Client] = {}

    def make(role: str, username: str | None = None) -> Client:
        key = username or role
        if key not in made:
            user = django_user_model.objects.filter(username=username or f"{role}-client").first() or _user(
                django_user_model, role, username or f"{role}-client")
            client = Client()
            client.force_login(user)
            made[key] = client
        return made[key]

    return make


@pytest.fixture
def make_dataset(db, tmp_path):
    """make_dataset(name, kind, rows) imports raw dict rows through the real importer."""
    from medstudio.datasets.models import Dataset
    from medstudio.datasets.services import import_start
    from medstudio.jobs.services import job_execute

    def make(name: str, kind: str, rows: list[dict], user=None):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        job = import_start(user=user, path=path, fmt="jsonl", kind=kind, dataset=name, enqueue=False)
        job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        return Dataset.objects.get(name=name)

    return make


@pytest.fixture
def page():
    """A Playwright page on Debian's Chromium (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context()
        pg = context.new_page()
        pg.set_default_timeout(15000)
        yield pg
        context.close()
        browser.close()
