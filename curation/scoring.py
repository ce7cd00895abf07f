"""The scorer registry and the job that runs a per-record scorer over a dataset.

A scorer registers a factory; `scorer_run_start` creates a ScorerRun and one job per id-range
shard (so several workers share a large dataset). Each job loads records in bounded batches as
RecordViews, calls `score_batch`, and stores Scores + its cursor in one transaction, so a job
resumed after a crash neither redoes nor loses a batch. Corpus-level blocks (MinHash, decontam)
register a `corpus_handler` instead and do their own passes.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max, Min
from django.utils.translation import gettext_noop

from curation.pipeline.base import RecordView
from medstudio.datasets.models import Dataset, Record
from medstudio.jobs.context import JobContext, JobFailed
from medstudio.handoffs import services as handoffs
from medstudio.handoffs.models import ScorerRun
from medstudio.handoffs.scorers import get_scorer
from medstudio.handoffs.services import scores_write
from medstudio.jobs.registry import job_handler, register_job_kind
from medstudio.jobs.errors import failure, known_failure

# Failures shown translated on the job page (medstudio/jobs/errors.py reads the params back).
RUN_DELETED = known_failure(gettext_noop("The scorer run was deleted."))



def record_view(r: Record, kind: str) -> RecordView:
    return RecordView(id=r.pk, kind=kind, lang=r.lang, text=r.text, content=r.content, source=r.source, subset=r.subset)




@transaction.atomic
def benchmark_datasets(names, *, exclude_pk: int | None = None) -> tuple[list[Dataset], set[str]]:
    """The benchmark datasets decontamination checks against: the ones named (a list, or a comma-separated
    string), else every dataset flagged as a benchmark; never `exclude_pk`. Returns (datasets, unknown names)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = names or []
    if names:
        benches = list(Dataset.objects.filter(name__in=names))
        missing = set(names) - {d.name for d in benches}
    else:
        benches, missing = list(Dataset.objects.filter(is_benchmark=True)), set()
    return [b for b in benches if b.pk != exclude_pk], missing


def scorer_run_start(*, user, dataset: Dataset, scorer: str, params: dict | None = None, shards: int = 1,
                     model_ref: str = "", enqueue: bool = True) -> ScorerRun:
    """Create a ScorerRun and its job(s); per-record scorers split the dataset into id-range shards."""
    from medstudio.jobs.services import job_create

    spec = get_scorer(scorer)
    if spec.kinds and dataset.kind not in spec.kinds:
        raise ValueError(f"Scorer {scorer} works on {', '.join(spec.kinds)} datasets, not {dataset.kind}.")
    params = params or {}
    version = params.get("version") or "1"
    if spec.factory is not None:
        try:
            block = spec.factory(params)
        except Exception as exc:  # a bad param or a missing model must be shown, not a 500
            raise ValueError(str(exc)) from exc
        version = str(getattr(block, "version", version))
    run = handoffs.scorer_run_create(user=user, dataset=dataset, scorer=scorer, version=version, params=params,
                                     model_ref=model_ref or str(params.get("model", "")))
    bounds = Record.objects.filter(dataset=dataset).aggregate(lo=Min("id"), hi=Max("id"))
    lo, hi = bounds["lo"] or 0, bounds["hi"] or 0
    shards = max(1, min(int(shards), 64)) if spec.factory is not None or spec.shardable else 1
    step = (hi - lo + shards) // shards or 1
    first_job = None
    for i in range(shards):
        a, b = lo + i * step, min(hi, lo + (i + 1) * step - 1)
        job = job_create(kind="curation.score", params={"run_id": run.pk, "id_from": a, "id_to": b, "shard": i,
                                                         "shards": shards}, user=user, queue=spec.queue,
                         enqueue=enqueue)
        first_job = first_job or job
    handoffs.scorer_run_update(run=run, job=first_job)
    run.job = first_job
    return run


def _finish_run_if_complete(run: ScorerRun, current_job_id: int | None = None, current_status: str = "succeeded") -> None:
    from medstudio.jobs.models import Job, JobStatus

    # The calling job is still "running" in the table while its handler returns; count it with the
    # status it is about to get, or a run would never finish.
    jobs = Job.objects.filter(kind="curation.score", params__run_id=run.pk).exclude(pk=current_job_id)
    statuses = set(jobs.values_list("status", flat=True)) | {current_status}
    if statuses <= {JobStatus.SUCCEEDED}:
        handoffs.scorer_run_update(run=run, status="succeeded", finished=True)
        from medstudio.jobs.registry import handlers

        if "studio.matrix_sync" in handlers():
            # Keep the threshold studio's score matrix current, without importing the studio here.
            from medstudio.jobs.services import job_create

            job_create(kind="studio.matrix_sync", params={"dataset_id": run.dataset_id}, user=run.created_by)
    elif JobStatus.FAILED in statuses and not statuses & {JobStatus.QUEUED, JobStatus.RUNNING}:
        handoffs.scorer_run_update(run=run, status="failed", finished=True)


@job_handler("curation.score", queue="cpu", description="Run a scorer over (a shard of) a dataset.")
def score_job(ctx: JobContext) -> dict:
    try:
        return _score_job(ctx)
    except Exception:
        # a failed or cancelled shard must not leave the run "running" forever
        run = ScorerRun.objects.filter(pk=ctx.params.get("run_id")).first()
        if run is not None:
            _finish_run_if_complete(run, ctx.job.pk, "failed")
        raise


def _score_job(ctx: JobContext) -> dict:
    p = ctx.params
    run = ScorerRun.objects.select_related("dataset").filter(pk=p["run_id"]).first()
    if run is None:
        raise JobFailed(failure(RUN_DELETED))
    spec = get_scorer(run.scorer)
    handoffs.scorer_run_update(run=run, only_if_status="queued", status="running")
    records = Record.objects.filter(dataset=run.dataset, id__gte=p["id_from"], id__lte=p["id_to"]).order_by("id")
    if spec.corpus_handler is not None:
        result = spec.corpus_handler(ctx, run, records) or {}
        _finish_run_if_complete(run, ctx.job.pk)
        return result
    try:
        block = spec.factory(run.params)
    except Exception as exc:
        raise JobFailed(f"Cannot set up scorer {run.scorer}: {exc}") from exc
    after = (ctx.cursor or {}).get("after_id", 0)
    total = records.count()
    done = records.filter(id__lte=after).count() if after else 0
    ctx.progress(total=total, done=done)
    kind = run.dataset.kind
    while True:
        batch = list(records.filter(id__gt=after)[: spec.batch_size])
        if not batch:
            break
        results = block.score_batch([record_view(r, kind) for r in batch])
        if len(results) != len(batch):
            raise JobFailed(f"Scorer {run.scorer} returned {len(results)} results for {len(batch)} records.")
        after = batch[-1].pk
        done += len(batch)
        with transaction.atomic():
            scores_write(run=run, rows=[(r.pk, res) for r, res in zip(batch, results)])
            ctx.progress(done=done, cursor={"after_id": after})
    _finish_run_if_complete(run, ctx.job.pk)
    return {"run_id": run.pk, "scored": done}


def _score_links(job):
    from django.urls import reverse
    run = (job.result or {}).get("run_id") or (job.params or {}).get("run_id")
    return [(gettext_noop("Open the scorer run's results"), reverse("curation:run_detail", args=[run]))] if run else []


register_job_kind("curation.score", label=gettext_noop("Scoring"), result_links=_score_links)
