"""The corpus job: submit the shard work to Ray's job-submission API and mirror it into the Job."""
from __future__ import annotations

import json
import time

from django.db import transaction

from curation.pipeline.corpus.aggregate import aggregate
from curation.pipeline.corpus.ray_job import encode_spec
from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.registry import job_handler

from . import ray_cluster
from .models import CorpusRun

POLL_SECONDS = 1.0
EVENT = "MEDSTUDIO-EVENT "


def _spec(run: CorpusRun, only: list[str]) -> dict:
    c = run.corpus
    return {"uri": c.uri, "out_dir": run.out_dir, "mapping": c.mapping, "scorers": run.scorers,
            "workers": run.workers, "only": only}


@job_handler("curation.corpus_run", queue="cpu",
             description="Score a registered corpus shard by shard on Ray (RAY_ADDRESS, or a local Ray).")
def corpus_run_job(ctx: JobContext) -> dict:
    from ray.job_submission import JobStatus as RayStatus

    run = CorpusRun.objects.select_related("corpus").get(pk=ctx.params["run_id"])
    only = list(ctx.params.get("only") or [])
    total = len(only) or run.corpus.n_shards
    client, address, embedded = ray_cluster.client()
    cursor = ctx.cursor or {}
    sub_id = cursor.get("ray_job_id")
    if sub_id:  # a resumed MedStudio job: follow the Ray job if it is still alive, else resubmit
        try:
            if client.get_job_status(sub_id) not in (RayStatus.PENDING, RayStatus.RUNNING):
                sub_id = None
        except Exception:
            sub_id = None
    if not sub_id:
        entry = f"{ray_cluster.entrypoint_python(embedded)} -m curation.pipeline.corpus.ray_job {encode_spec(_spec(run, only))}"
        sub_id = client.submit_job(entrypoint=entry, runtime_env=ray_cluster.runtime_env(embedded),
                                   submission_id=f"medstudio-corpus-{run.pk}-{ctx.job.attempts}-{int(time.time())}",
                                   metadata={"medstudio_job": str(ctx.job.pk), "corpus": run.corpus.name})
        ctx.log(f"Submitted Ray job {sub_id} to {address}{' (local Ray)' if embedded else ''}: "
                f"{', '.join(run.scorers)} over {total} shard(s), {run.workers} worker(s).")
    CorpusRun.objects.filter(pk=run.pk).update(ray_job_id=sub_id)
    seen = 0
    done = skipped = 0
    docs = 0
    failed: list[dict] = []
    t0 = time.monotonic()
    status = None
    try:
        while True:
            status = client.get_job_status(sub_id)
            logs = client.get_job_logs(sub_id)
            lines = logs.splitlines()
            for line in lines[seen:]:
                if not line.startswith(EVENT):
                    continue
                ev = json.loads(line[len(EVENT):])
                if ev["event"] == "plan":
                    skipped = ev["skipped"]
                    if skipped:
                        ctx.log(f"Resuming: {skipped} shard(s) already scored are skipped.")
                elif ev["event"] == "shard":
                    if ev["status"] == "done":
                        done += 1
                        docs += ev.get("docs", 0)
                        ctx.log(f"shard {ev['key']}: {ev['docs']} docs, {ev.get('kept', 0)} kept ({ev['seconds']:.1f} s)")
                    else:
                        failed.append({"shard": ev["key"], "reason": ev.get("reason", "")})
                        ctx.log(f"shard {ev['key']} failed: {ev.get('reason', '')}", "warning")
            seen = len(lines)
            elapsed = max(time.monotonic() - t0, 1e-6)
            ctx.progress(done=done + skipped + len(failed), total=total,
                         cursor={"ray_job_id": sub_id},
                         result={"ray_job_id": sub_id, "ray_address": address, "shards_done": done + skipped,
                                 "shards_failed": len(failed), "shards_total": total, "shards_skipped": skipped,
                                 "documents": docs, "docs_per_s": round(docs / elapsed, 1)})
            if status in (RayStatus.SUCCEEDED, RayStatus.FAILED, RayStatus.STOPPED):
                break
            time.sleep(POLL_SECONDS)
    except JobCancelled:
        client.stop_job(sub_id)
        ctx.log(f"Stopped Ray job {sub_id}; shards already committed stay and are skipped by a re-run.", "warning")
        raise
    if status != RayStatus.SUCCEEDED:
        tail = "\n".join(l for l in client.get_job_logs(sub_id).splitlines()[-20:] if not l.startswith(EVENT))
        raise JobFailed(f"Ray job {sub_id} ended {status}: {tail[-2000:]}")
    agg = aggregate(run.out_dir, list(run.scorers))
    if only:  # a retry: report only the shards it was asked to redo
        agg["failed"] = [f for f in agg["failed"] if f["shard"] in set(only)]
    elapsed = max(time.monotonic() - t0, 1e-6)
    with transaction.atomic():
        CorpusRun.objects.filter(pk=run.pk).update(aggregates=agg)
    result = {"corpus": run.corpus.name, "run_id": run.pk, "out_dir": run.out_dir, "ray_job_id": sub_id,
              "shards_done": done + skipped, "shards_skipped": skipped, "shards_failed": len(agg["failed"]),
              "shards_total": total, "documents": agg["documents"], "kept": agg["kept"],
              "docs_per_s": round(docs / elapsed, 1), "failed_shards": agg["failed"],
              "scorers": {s: {k: v for k, v in a.items() if k != "histogram"} for s, a in agg["scorers"].items()}}
    if agg["failed"]:
        from medstudio.jobs.context import JobPartial

        raise JobPartial(f"{len(agg['failed'])} of {total} shard(s) failed: "
                         + "; ".join(f"{f['shard']}: {f['reason']}" for f in agg["failed"][:10]), result=result)
    return result


@job_handler("curation.corpus_dedup", queue="cpu",
             description="Near-duplicate removal (MinHash-LSH) over a corpus's shards on Ray, within sources then across.")
def corpus_dedup_job(ctx: JobContext) -> dict:
    """Submit the staged dedup (curation/pipeline/corpus/dedup.py) as a Ray job and mirror its log."""
    from ray.job_submission import JobStatus as RayStatus

    from curation.corpus.models import Corpus

    corpus = Corpus.objects.get(pk=ctx.params["corpus_id"])
    client, address, embedded = ray_cluster.client()
    sub_id = (ctx.cursor or {}).get("ray_job_id")
    if sub_id:
        try:
            if client.get_job_status(sub_id) not in (RayStatus.PENDING, RayStatus.RUNNING):
                sub_id = None  # signature files already written are reused by the new submission
        except Exception:
            sub_id = None
    if not sub_id:
        spec = {"uri": corpus.uri, "out_dir": ctx.params["out_dir"], "mapping": corpus.mapping,
                "partitions": int(ctx.params.get("partitions") or 8), "threshold": float(ctx.params.get("threshold") or 0.8),
                "by_source": bool(ctx.params.get("by_source", True))}
        entry = f"{ray_cluster.entrypoint_python(embedded)} -m curation.pipeline.corpus.dedup {encode_spec(spec)}"
        sub_id = client.submit_job(entrypoint=entry, runtime_env=ray_cluster.runtime_env(embedded),
                                   submission_id=f"medstudio-dedup-{ctx.job.pk}-{ctx.job.attempts}-{int(time.time())}",
                                   metadata={"medstudio_job": str(ctx.job.pk), "corpus": corpus.name})
        ctx.log(f"Submitted Ray job {sub_id} to {address}{' (local Ray)' if embedded else ''}: dedup of {corpus.name}.")
    seen, stage, end = 0, 0, None
    try:
        while True:
            status = client.get_job_status(sub_id)
            lines = client.get_job_logs(sub_id).splitlines()
            for line in lines[seen:]:
                if not line.startswith(EVENT):
                    continue
                ev = json.loads(line[len(EVENT):])
                if ev["event"] == "log":
                    stage += 1
                    ctx.log(ev["line"])
                elif ev["event"] == "end":
                    end = ev
            seen = len(lines)
            ctx.progress(done=min(stage, 4), total=4, cursor={"ray_job_id": sub_id})
            if status in (RayStatus.SUCCEEDED, RayStatus.FAILED, RayStatus.STOPPED):
                break
            time.sleep(POLL_SECONDS)
    except JobCancelled:
        client.stop_job(sub_id)
        raise
    if status != RayStatus.SUCCEEDED or end is None:
        tail = "\n".join(l for l in client.get_job_logs(sub_id).splitlines()[-20:] if not l.startswith(EVENT))
        raise JobFailed(f"Ray job {sub_id} ended {status}: {tail[-2000:]}")
    ctx.progress(done=4, total=4)
    return {"corpus": corpus.name, "out_dir": ctx.params["out_dir"], "documents": end["docs"],
            "dropped": end["dropped"], "kept": end["docs"] - end["dropped"], "clusters": end["clusters"],
            "passes": end["passes"], "ray_job_id": sub_id}
