"""The corpus jobs: submit the shard work to Ray's job-submission API and mirror it into the Job."""
from __future__ import annotations

import json
import time
from typing import Callable

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext_noop

from curation.pipeline.corpus.aggregate import aggregate
from curation.pipeline.corpus.ray_job import encode_spec
from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind

from . import ray_cluster
from .models import CorpusRun

POLL_SECONDS = 1.0
SUBMIT_WAIT_SECONDS = 30.0
EVENT = "MEDSTUDIO-EVENT "


def _follow_ray_job(ctx: JobContext, *, module: str, spec: Callable[[], dict], submission_id: str, metadata: dict,
                    describe: str, on_event: Callable[[dict], None], on_poll: Callable[[str, str], None],
                    stop_note: str = "") -> str:
    """Run `python -m module SPEC` as a Ray job and follow it until it ends; returns its id.

    A resumed MedStudio job (cursor["ray_job_id"]) follows the Ray job while it is still alive, else
    submits again (what the earlier attempt committed is skipped by the Ray job itself). Each
    `MEDSTUDIO-EVENT {json}` line of the Ray job's log goes to `on_event`, once; `on_poll(ray_job_id, address)`
    runs after every poll (progress, heartbeat: it raises JobCancelled, which stops the Ray job).
    A Ray job that does not succeed fails the MedStudio job with the tail of its log.
    """
    from ray.job_submission import JobStatus as RayStatus

    client, address, embedded = ray_cluster.client()
    sub_id = (ctx.cursor or {}).get("ray_job_id")
    if sub_id:
        try:
            if client.get_job_status(sub_id) not in (RayStatus.PENDING, RayStatus.RUNNING):
                sub_id = None
        except Exception:
            sub_id = None
    if not sub_id:
        entry = f"{ray_cluster.entrypoint_python(embedded)} -m {module} {encode_spec(spec())}"
        sub_id = None
        deadline = time.monotonic() + SUBMIT_WAIT_SECONDS
        while sub_id is None:
            try:
                sub_id = client.submit_job(entrypoint=entry, runtime_env=ray_cluster.runtime_env(embedded),
                                           submission_id=f"{submission_id}-{ctx.job.attempts}-{int(time.time())}",
                                           metadata=metadata)
            except RuntimeError as exc:
                # A head that just started answers before its job agent is up: wait for it a while.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                ctx.progress()  # heartbeat; a cancel stops the wait
                time.sleep(2)
        ctx.log(f"Submitted Ray job {sub_id} to {address}{' (local Ray)' if embedded else ''}: {describe}.")
    seen, status = 0, None
    try:
        while True:
            status = client.get_job_status(sub_id)
            lines = client.get_job_logs(sub_id).splitlines()
            for line in lines[seen:]:
                if line.startswith(EVENT):
                    on_event(json.loads(line[len(EVENT):]))
            seen = len(lines)
            on_poll(sub_id, address)
            if status in (RayStatus.SUCCEEDED, RayStatus.FAILED, RayStatus.STOPPED):
                break
            time.sleep(POLL_SECONDS)
    except JobCancelled:
        client.stop_job(sub_id)
        if stop_note:
            ctx.log(f"Stopped Ray job {sub_id}; {stop_note}", "warning")
        raise
    if status != RayStatus.SUCCEEDED:
        tail = "\n".join(l for l in client.get_job_logs(sub_id).splitlines()[-20:] if not l.startswith(EVENT))
        raise JobFailed(f"Ray job {sub_id} ended {status}: {tail[-2000:]}")
    return sub_id


def _spec(ctx: JobContext, run: CorpusRun, only: list[str]) -> dict:
    from .services import runtime_scorers

    c = run.corpus
    try:
        scorers = runtime_scorers(run)
    except ValueError as exc:
        raise JobFailed(str(exc)) from exc
    if "decontam" in scorers:
        d = scorers["decontam"]
        ctx.log(f"decontam: indexed {d['benchmark_items']} items of {', '.join(d['benchmarks'])}; "
                f"the index goes to the workers once through Ray's object store.")
    return {"uri": c.uri, "out_dir": run.out_dir, "mapping": c.mapping, "scorers": scorers,
            "workers": run.workers, "only": only, "dedup_sigs_per_round": settings.CORPUS_DEDUP_SIGS_PER_ROUND}


@job_handler("curation.corpus_run", queue="cpu",
             description="Score a registered corpus shard by shard on Ray (RAY_ADDRESS, or a local Ray).")
def corpus_run_job(ctx: JobContext) -> dict:
    run = CorpusRun.objects.select_related("corpus").get(pk=ctx.params["run_id"])
    only = list(ctx.params.get("only") or [])
    total = len(only) or run.corpus.n_shards
    st = {"done": 0, "skipped": 0, "docs": 0, "failed": []}
    t0 = time.monotonic()

    def on_event(ev: dict) -> None:
        if ev["event"] == "plan":
            st["skipped"] = ev["skipped"]
            if ev["skipped"]:
                ctx.log(f"Resuming: {ev['skipped']} shard(s) already scored are skipped.")
        elif ev["event"] == "log":
            ctx.log(ev["line"])
        elif ev["event"] == "minhash":
            ctx.log(f"minhash: {ev['dropped']} near-duplicate(s) of {ev['docs']} documents in {ev['clusters']} cluster(s); "
                    f"{ev['marked']} score file(s) marked ({ev['already_marked']} already were)")
        elif ev["event"] == "shard":
            if ev["status"] == "done":
                st["done"] += 1
                st["docs"] += ev.get("docs", 0)
                ctx.log(f"shard {ev['key']}: {ev['docs']} docs, {ev.get('kept', 0)} kept ({ev['seconds']:.1f} s)")
            else:
                st["failed"].append({"shard": ev["key"], "reason": ev.get("reason", "")})
                ctx.log(f"shard {ev['key']} failed: {ev.get('reason', '')}", "warning")

    def on_poll(sub_id: str, address: str) -> None:
        if not run.ray_job_id:
            CorpusRun.objects.filter(pk=run.pk).update(ray_job_id=sub_id)
            run.ray_job_id = sub_id
        elapsed = max(time.monotonic() - t0, 1e-6)
        ctx.progress(done=st["done"] + st["skipped"] + len(st["failed"]), total=total,
                     cursor={"ray_job_id": sub_id},
                     result={"ray_job_id": sub_id, "ray_address": address,
                             "shards_done": st["done"] + st["skipped"], "shards_failed": len(st["failed"]),
                             "shards_total": total, "shards_skipped": st["skipped"], "documents": st["docs"],
                             "docs_per_s": round(st["docs"] / elapsed, 1)})

    run.ray_job_id = ""
    sub_id = _follow_ray_job(
        ctx, module="curation.pipeline.corpus.ray_job", spec=lambda: _spec(ctx, run, only),
        submission_id=f"medstudio-corpus-{run.pk}", metadata={"medstudio_job": str(ctx.job.pk), "corpus": run.corpus.name},
        describe=f"{', '.join(run.scorers)} over {total} shard(s), {run.workers} worker(s)",
        on_event=on_event, on_poll=on_poll, stop_note="shards already committed stay and are skipped by a re-run.")
    done, skipped, docs = st["done"], st["skipped"], st["docs"]
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
    from curation.corpus.models import Corpus

    corpus = Corpus.objects.get(pk=ctx.params["corpus_id"])
    st = {"stage": 0, "end": None}

    def on_event(ev: dict) -> None:
        if ev["event"] == "log":
            st["stage"] += 1
            ctx.log(ev["line"])
        elif ev["event"] == "end":
            st["end"] = ev

    def spec() -> dict:
        return {"uri": corpus.uri, "out_dir": ctx.params["out_dir"], "mapping": corpus.mapping,
                "partitions": int(ctx.params.get("partitions") or 0), "threshold": float(ctx.params.get("threshold") or 0.8),
                "by_source": bool(ctx.params.get("by_source", True)), "sigs_per_round": settings.CORPUS_DEDUP_SIGS_PER_ROUND}

    # signature files already written are reused by a new submission
    sub_id = _follow_ray_job(
        ctx, module="curation.pipeline.corpus.dedup", spec=spec, submission_id=f"medstudio-dedup-{ctx.job.pk}",
        metadata={"medstudio_job": str(ctx.job.pk), "corpus": corpus.name}, describe=f"dedup of {corpus.name}",
        on_event=on_event, on_poll=lambda sid, _address: ctx.progress(done=min(st["stage"], 4), total=4, cursor={"ray_job_id": sid}))
    end = st["end"]
    if end is None:
        raise JobFailed(f"Ray job {sub_id} ended without its summary line")
    ctx.progress(done=4, total=4)
    return {"corpus": corpus.name, "out_dir": ctx.params["out_dir"], "documents": end["docs"],
            "dropped": end["dropped"], "kept": end["docs"] - end["dropped"], "clusters": end["clusters"],
            "passes": end["passes"], "verify_rounds": end.get("verify_rounds") or {}, "ray_job_id": sub_id}


@job_handler("curation.corpus_freeze", queue="cpu",
             description="Freeze the documents a corpus's thresholds keep: kept ids per shard + manifest, registered for training.")
def corpus_freeze_job(ctx: JobContext) -> dict:
    import hashlib

    from curation.corpus.models import Corpus
    from curation.pipeline.corpus.shards import join_uri, parent_uri, read_bytes
    from curation.pipeline.corpus.studio import StudioError, freeze
    from medstudio.handoffs.services import corpus_selection_register

    from .services import corpus_conditions

    corpus = Corpus.objects.get(pk=ctx.params["corpus_id"])
    name, score_dir = ctx.params["name"], ctx.params["score_dir"]
    dest = join_uri(parent_uri(score_dir), "selections", name)
    try:
        manifest = freeze(score_dir, corpus_conditions(ctx.params["conditions"]), dest, name=name,
                          source={"uri": corpus.uri, "mapping": corpus.mapping})
    except StudioError as exc:
        raise JobFailed(str(exc)) from exc
    digest = hashlib.sha256(read_bytes(join_uri(dest, "manifest.json"))).hexdigest()
    sel = corpus_selection_register(user=ctx.job.created_by, name=name,
                                    corpus=corpus.name, path=dest, manifest=manifest, manifest_sha256=digest, job=ctx.job)
    ctx.log(f"Frozen selection {name}: {manifest['kept']} of {manifest['docs']} documents kept "
            f"({manifest['kept_chars']} characters) from {len(manifest['shards'])} shard(s).")
    ctx.progress(done=1, total=1)
    return {"corpus": corpus.name, "selection": name, "selection_id": sel.pk, "dest": dest, "docs": manifest["docs"],
            "kept": manifest["kept"], "kept_chars": manifest["kept_chars"], "shards": len(manifest["shards"]),
            "manifest_sha256": digest}


def _corpus_freeze_links(job):
    from django.urls import reverse

    corpus = (job.params or {}).get("corpus_id")
    return [(gettext_noop("Open the corpus threshold studio"), reverse("curation:corpus_studio", args=[corpus]))] if corpus else []


register_job_kind("curation.corpus_freeze", label=gettext_noop("Corpus selection freeze"), result_links=_corpus_freeze_links)
