"""Thin Celery adapters: JSON arguments (ids), one service call each."""
from celery import shared_task


@shared_task(name="medstudio.jobs.execute", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def job_execute_task(job_id: int) -> None:
    from .services import job_execute

    job_execute(job_id=job_id)


@shared_task(name="medstudio.jobs.recover", ignore_result=True)
def jobs_recover_task() -> None:
    from .services import jobs_recover

    jobs_recover()
