"""The Celery app. Every long action runs as a Job through one task (medstudio.jobs.tasks)."""
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")

app = Celery("medstudio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["medstudio.jobs"])


@worker_ready.connect
def _resume_orphaned_jobs(**_: object) -> None:
    # A worker that starts picks up jobs whose previous worker died mid-way.
    from medstudio.jobs.services import jobs_recover

    jobs_recover()


@worker_init.connect
@worker_process_init.connect
def _batch_priority(**_: object) -> None:
    # Jobs run below the web server's CPU priority (medstudio/jobs/priority.py says why). worker_init
    # covers the main process (and the solo pool, where jobs run in it); prefork children inherit
    # it, and worker_process_init sets it again in case a child was started otherwise.
    from medstudio.jobs.priority import lower_cpu_priority

    lower_cpu_priority()
