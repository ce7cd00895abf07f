from django.apps import AppConfig


class HandoffsConfig(AppConfig):
    """What the pipeline stages hand each other: scorer runs and scores, recipes, selections,
    mixtures and preference sets; plus the registries that consume them (training data sources,
    lineage). Stages read and write these through this app's services and selectors and never
    import each other."""

    name = "medstudio.handoffs"
    label = "handoffs"
    verbose_name = "Hand-offs between stages"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the platform's own data sources and lineage resolvers (datasets, selections,
        # mixtures; recipe versions, scorer runs, queues). Stages register theirs in their ready().
        from . import board, lineage, sources  # noqa: F401
        # Scorer runs, selections and mixtures show their Job's status (medstudio/jobs/mirrors.py).
        from medstudio.jobs.mirrors import register_status_mirror
        from medstudio.jobs.models import Job

        from .models import Mixture, ScorerRun, Selection

        def scorer_run_rows(job):
            # A run has one job per shard (params.run_id); the FK names the first one only. A shard
            # that fails or is cancelled ends the run; success is decided when every shard is done.
            # A re-queued shard leaves the run "running" while another of its shards runs.
            if job.kind == "curation.score" and job.params.get("run_id"):
                rows = ScorerRun.objects.filter(pk=job.params["run_id"])
                if job.status == "queued" and Job.objects.filter(
                        kind=job.kind, status="running", params__run_id=job.params["run_id"]).exclude(pk=job.pk).exists():
                    return rows.none()
                return rows
            return ScorerRun.objects.filter(job_id=job.pk)

        register_status_mirror(ScorerRun, words={"failed": "failed", "cancelled": "cancelled"},
                               terminal=("succeeded", "failed", "cancelled"), rows=scorer_run_rows,
                               live={"queued": "queued", "running": "running"})
        register_status_mirror(Selection, words={"failed": Selection.Status.FAILED, "cancelled": Selection.Status.FAILED},
                               terminal=(Selection.Status.READY, Selection.Status.FAILED))
        register_status_mirror(Mixture, words={"failed": "failed", "cancelled": "cancelled"},
                               terminal=("succeeded", "failed", "cancelled"))
