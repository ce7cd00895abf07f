"""The Celery app. Every long action runs as a Job through one task (medstudio.jobs.tasks)."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")

app = Celery("medstudio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["medstudio.jobs"])


@worker_ready.connect
def _resume_orphaned_jobs(**_: object) -> None:
    # A worker that starts picks up jobs whose previous worker died mid-way.
    from medstudio.jobs.services import jobs_recover

    jobs_recover()
