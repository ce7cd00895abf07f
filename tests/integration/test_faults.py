"""Fault injection (issue 14, point 5): each job kind, on a real worker, survives a SIGKILL of the
worker in the middle of the job, and on PostgreSQL + Redis (CI's second pass) the loss of the
worker's database connection (pg_terminate_backend) and a restart of the real redis-server that
loses every key; it ends `succeeded` with exactly-once results: no duplicate rows, nothing missing.

"In the middle" is deterministic: the test worker loads tests/integration/faultinject/sitecustomize.py,
which stops the job's first attempt inside its Nth progress call (after a batch is committed, inside
the next one's transaction) and signals it with a file; the test waits for that file, then strikes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from medstudio.jobs.models import Job
from medstudio.jobs.services import job_execute

from tests.corpus.conftest import ray_address, s3_endpoint  # noqa: F401  (one local Ray for the session; its head gets the S3 test endpoint)
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTS = Path(__file__).resolve().parent / "faultinject"
STALE = 2


def _job(pk) -> Job:
    return Job.objects.get(pk=pk)


@pytest.fixture
def faulty(worker_factory, tmp_path, settings):
    """start(stall_at) -> a worker whose first attempt at any job stalls in its Nth progress call."""
    settings.JOB_STALE_SECONDS = STALE  # jobs_recover() called here judges staleness like the workers
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()

    def start(stall_at: int = 2, **env):
        pythonpath = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH", "")) if p)
        return worker_factory(MEDSTUDIO_FAULT_DIR=fault_dir, MEDSTUDIO_FAULT_STALL_AT=stall_at, PYTHONPATH=pythonpath,
                              MEDSTUDIO_JOB_STALE_SECONDS=STALE, MEDSTUDIO_IMPORT_BATCH_SIZE=100,
                              MEDSTUDIO_PREF_BATCH_SIZE=4, MEDSTUDIO_PREF_CHAT_MAX_RETRIES=1, OMP_NUM_THREADS=1, **env)

    start.dir = fault_dir
    return start


def _strike_and_recover(faulty, job_pk: int, stall_at: int, fault: str, **env) -> Job:
    """`env` goes to both workers (the struck one and the one started after a SIGKILL): say
    MEDSTUDIO_FAULT_STALL_IN=... for a kind that stalls in a function (faultinject/sitecustomize.py)."""
    from django.conf import settings

    if fault == "redis_restart" and not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("the Redis restart needs the Redis broker (CI's PostgreSQL + Redis pass)")
    worker = faulty(stall_at, **env)
    stalled = faulty.dir / f"stalled-{job_pk}"
    wait_for(stalled.exists, timeout=120)
    job = _job(job_pk)
    assert job.status == "running" and job.attempts == 1
    if fault == "redis_restart":
        # The broker loses every key (the job's unacked message too); the worker and its database
        # connection live on: the job finishes on its first attempt, and once.
        _restart_redis()
        (faulty.dir / f"release-{job_pk}").write_text("")
        wait_for(lambda: _job(job_pk).status in ("succeeded", "failed", "cancelled"), timeout=300)
        job = _job(job_pk)
        assert job.status == "succeeded", job.error
        assert job.attempts == 1
        return job
    if fault == "sigkill":
        worker.kill()
    else:  # the worker's PostgreSQL backend goes away mid-transaction; the worker itself lives on
        with connection.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", [int(stalled.read_text())])
        (faulty.dir / f"release-{job_pk}").write_text("")
    # wait until the heartbeat is stale, then recover: a new worker does it when it starts (SIGKILL);
    # the beat of the live worker does it every 30 s, called here directly (connection loss)
    wait_for(lambda: (timezone.now() - _job(job_pk).heartbeat_at).total_seconds() > STALE + 0.2, timeout=30)
    if fault == "sigkill":
        faulty(stall_at, **env)
    else:
        from medstudio.jobs.services import jobs_recover

        wait_for(lambda: _job(job_pk).status != "running" or job_pk in jobs_recover(), timeout=60, interval=0.5)
    # 300 s as for the Redis restart: a Ray job resubmitted by a fresh worker took over 180 s once
    # with three test suites sharing the 2-core box (about 60 s alone)
    wait_for(lambda: _job(job_pk).status in ("succeeded", "failed", "cancelled"), timeout=300)
    job = _job(job_pk)
    assert job.status == "succeeded", job.error
    assert job.attempts >= 2
    return job


FAULT_KINDS = ["sigkill", pytest.param("pg_terminate", marks=pytest.mark.postgres),
               pytest.param("redis_restart", marks=pytest.mark.postgres)]
# The kinds added last run without the Redis restart: under it the worker and its database
# connection live on and the job finishes on its first attempt, so the handler runs exactly as with
# no fault at all; what a lost broker does to the worker and to a running and a waiting job is the
# same code for every kind (medstudio.jobs, Celery's reconnect), covered by the kinds above and
# test_redis_restart_mid_job. It would add a shared-Redis restart and ~15 s per kind to CI.
KILL_AND_CUT = ["sigkill", pytest.param("pg_terminate", marks=pytest.mark.postgres)]
# Stall when every write of the handler is committed but the Job is not marked finished yet: the
# next attempt runs the whole handler again over its own results (see faultinject/sitecustomize.py).
AT_FINISH = {"MEDSTUDIO_FAULT_STALL_IN": "medstudio.jobs.services:_finish", "MEDSTUDIO_FAULT_STALL_WHEN": "before"}


def _dataset(tmp_path, name: str, n: int, kind: str = "document", zh: bool = True, pad: int = 0):
    """A dataset imported in-process (no worker), n records."""
    from medstudio.datasets.models import Dataset
    from medstudio.datasets.services import import_start

    path = tmp_path / f"{name}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            text = f"Patient {i} reports a headache for {i % 7 + 1} days." + (f" 患者{i}头痛。" if zh else "") + " x" * pad
            fh.write(json.dumps({"id": f"{name}{i}", "text": text}, ensure_ascii=False) + "\n")
    with transaction.atomic():
        job = import_start(user=None, path=path, fmt="jsonl", kind=kind, dataset=name, enqueue=False)
    job_execute(job_id=job.pk)
    assert _job(job.pk).status == "succeeded"
    return Dataset.objects.get(name=name)


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_import(faulty, tmp_path, fault):
    from medstudio.datasets.models import Dataset, Record
    from medstudio.datasets.services import import_start

    n = 3000
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(n)))
    with transaction.atomic():
        job = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="faulty-import")
    job = _strike_and_recover(faulty, job.pk, 5, fault)  # call 1 is validation; 2.. one per 100-line batch
    ds = Dataset.objects.get(name="faulty-import")
    ids = list(Record.objects.filter(dataset=ds).values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == n == ds.n_records == job.result["inserted"]


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_export(faulty, tmp_path, fault):
    from medstudio.datasets.models import Export
    from medstudio.datasets.services import export_start

    n = 6000  # progress every 5000 records: call 2 is mid-file
    ds = _dataset(tmp_path, "faulty-export", n)
    with transaction.atomic():
        job = export_start(user=None, dataset=ds, fmt="jsonl")
    job = _strike_and_recover(faulty, job.pk, 2, fault)
    export = Export.objects.get(job=job)  # one Export row, not one per attempt
    lines = Path(export.path).read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids)) == n == export.n_records
    assert not list(Path(export.path).parent.glob("*.part"))


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_rules_scorer(faulty, tmp_path, fault):
    from curation.scoring import scorer_run_start
    from medstudio.handoffs.models import Score

    n = 1200  # batches of 256: call 1 sets the total, 2.. one per batch
    ds = _dataset(tmp_path, "faulty-score", n)
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer="rules")
    _strike_and_recover(faulty, run.job_id, 3, fault)
    run.refresh_from_db()
    assert run.status == "succeeded"
    rows = list(Score.objects.filter(run=run).values_list("record_id", flat=True))
    assert len(rows) == len(set(rows)) == n


def _ready_selection(ds, name: str):
    from curation.studio import services as studio
    from medstudio.handoffs.models import Selection

    version = studio.recipe_version_create(user=None, name=name, datasets=[ds], conditions={"bounds": [], "flags": []})
    with transaction.atomic():
        sel = studio.selection_apply_start(user=None, version=version, name=name, enqueue=False)
    job_execute(job_id=sel.job_id)
    sel = Selection.objects.get(pk=sel.pk)
    assert sel.status == "ready"
    return version, sel


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_recipe_apply(faulty, tmp_path, fault):
    from curation.studio import services as studio
    from medstudio.handoffs.models import Selection, SelectionRecord

    a, b = _dataset(tmp_path, "faulty-apply-a", 300), _dataset(tmp_path, "faulty-apply-b", 300)
    version = studio.recipe_version_create(user=None, name="faulty-apply", datasets=[a, b],
                                           conditions={"bounds": [], "flags": []})
    with transaction.atomic():
        sel = studio.selection_apply_start(user=None, version=version, name="faulty-apply")
    _strike_and_recover(faulty, sel.job_id, 2, fault)  # after the first dataset's matrix sync
    sel = Selection.objects.get(pk=sel.pk)
    assert sel.status == "ready"
    assert Selection.objects.filter(recipe_version=version).count() == 1
    rows = list(SelectionRecord.objects.filter(selection=sel).values_list("record_id", flat=True))
    assert len(rows) == len(set(rows)) == 600 == sel.n_records


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_mixture_draw(faulty, tmp_path, fault):
    from curation.studio import services as studio
    from medstudio.handoffs.models import Mixture

    from medstudio.datasets.models import Record

    ds = _dataset(tmp_path, "faulty-mix", 400, zh=False)
    langs = set(Record.objects.filter(dataset=ds).values_list("lang", flat=True))
    assert len(langs) == 1
    _, sel = _ready_selection(ds, "faulty-mix")
    budget = sel.n_tokens
    with transaction.atomic():
        mix = studio.mixture_create(user=None, name="faulty-mix", stage="custom", budget_tokens=budget,
                                    targets={"categories": {"medical": 1}, "langs": {langs.pop(): 1}},
                                    sources=[{"selection": sel.pk, "category": "medical"}],
                                    shard_tokens=max(1, budget // 4))
    _strike_and_recover(faulty, mix.job_id, 2, fault)  # after the first shard
    mix = Mixture.objects.get(pk=mix.pk)
    assert mix.status == "succeeded"
    folder = Path(mix.path)
    shards = sorted(folder.glob("shard-*.jsonl"))
    assert [p.name for p in shards] == [f for f in mix.files if f.startswith("shard-")]
    assert not list(folder.glob("*.part"))
    draws = [json.loads(line) for p in shards for line in p.read_text(encoding="utf-8").splitlines()]
    assert len(draws) == mix.achieved["n_draws"]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["shards"]) == {p.name for p in shards}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root, as in CI); skipped where it cannot be mounted."""
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_export_on_a_full_disk_fails_clearly_and_keeps_no_partial_file(worker_factory, small_disk, tmp_path, settings):
    from medstudio.datasets.models import Export
    from medstudio.datasets.services import export_start

    ds = _dataset(tmp_path, "too-big", 1500, zh=False, pad=500)  # ~1.5 MB of JSONL for a 1 MiB disk
    settings.MEDIA_ROOT = small_disk
    worker_factory()
    with transaction.atomic():
        job = export_start(user=None, dataset=ds, fmt="jsonl")
    wait_for(lambda: _job(job.pk).status in ("succeeded", "failed", "cancelled"), timeout=120)
    job = _job(job.pk)
    assert job.status == "failed"
    assert "No space left on device" in job.error and "Nothing was kept" in job.error, job.error
    assert not Export.objects.filter(job=job).exists()
    assert not [p for p in small_disk.rglob("*") if p.is_file()]  # no .part, no half file


# --------------------------------------------------------------------------- the other scorers


def _shared_rows(name: str, n: int) -> list[dict]:
    from tests.conftest import SHARED_DATA

    rows = []
    with open(SHARED_DATA / name, encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    assert len(rows) == n, f"{name} has fewer than {n} rows"
    return rows


def _import_rows(tmp_path, name: str, kind: str, rows: list[dict]):
    from medstudio.datasets.models import Dataset
    from medstudio.datasets.services import import_start

    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with transaction.atomic():
        job = import_start(user=None, path=path, fmt="jsonl", kind=kind, dataset=name, enqueue=False)
    job_execute(job_id=job.pk)
    assert _job(job.pk).status == "succeeded", _job(job.pk).error
    return Dataset.objects.get(name=name)


def _scored_once(run, n: int) -> None:
    from medstudio.handoffs.models import Score

    run.refresh_from_db()
    assert run.status == "succeeded"
    rows = list(Score.objects.filter(run=run).values_list("record_id", flat=True))
    assert len(rows) == len(set(rows)) == n  # one score per record: none twice, none missing


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_pii_scorer(faulty, tmp_path, fault):
    from curation.scoring import scorer_run_start
    from medstudio.handoffs.models import Score

    n = 800  # batches of 256: call 1 sets the total, 2.. one per batch
    ds = _dataset(tmp_path, "faulty-pii", n)
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer="pii")
    _strike_and_recover(faulty, run.job_id, 3, fault)
    _scored_once(run, n)
    assert not Score.objects.filter(run=run, keep=False).exists()  # no PII in these texts


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_minhash_scorer(faulty, tmp_path, fault):
    from curation.models import DuplicateCluster
    from curation.scoring import scorer_run_start

    n = 1200  # batches of 1000: calls 1-2 sketch, 3 writes the clusters, 4-5 write the scores
    ds = _dataset(tmp_path, "faulty-minhash", n)
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer="minhash")
    job = _strike_and_recover(faulty, run.job_id, 5, fault)  # inside the second score batch
    _scored_once(run, n)
    clusters = list(DuplicateCluster.objects.filter(run=run).values_list("keeper_id", flat=True))
    assert len(clusters) == len(set(clusters)) == job.result["clusters"]  # clusters written once


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_decontam_scorer(faulty, tmp_path, fault):
    from curation.scoring import scorer_run_start
    from medstudio.handoffs.models import Score

    n = 1200  # batches of 1000: call 1 sets the total, 2-3 one per batch
    ds = _dataset(tmp_path, "faulty-decontam", n, zh=False)
    bench = _import_rows(tmp_path, "faulty-bench", "document", [
        {"id": "b0", "text": "The patient was given a cold compress and told to rest in a quiet dark room for two hours."}])
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer="decontam", params={"benchmarks": [bench.name]})
    job = _strike_and_recover(faulty, run.job_id, 3, fault)
    _scored_once(run, n)
    assert job.result["records"] == n and job.result["contaminated"] == Score.objects.filter(run=run, keep=False).count()


# --------------------------------------------------------------------------- annotation judge


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_annotation_judge(faulty, tmp_path, fault):
    from medstudio.annotation import services as annotation
    from medstudio.annotation.models import Assignment, Label
    from tests.fakes.openai_server import fake_openai_server

    n = 64  # batches of 16: call 1 sets the total, 2.. one per batch
    ds = _dataset(tmp_path, "faulty-judge", n)
    question = annotation.question_create(user=None, name="quality", kind="rating")
    queue = annotation.queue_create(user=None, name="faulty judge queue", dataset=ds, question=question,
                                    annotators_per_item=1)
    with fake_openai_server(chat=json.dumps({"score": 4})) as url:
        with transaction.atomic():
            [job] = annotation.judge_start(queue=queue, user=None, base_url=url, model="judge")
        job = _strike_and_recover(faulty, job.pk, 3, fault)
    annotator = job.result["annotator"]
    items = list(Label.objects.filter(queue=queue, annotator=annotator).values_list("item_id", flat=True))
    assert len(items) == len(set(items)) == n == job.result["labelled"] == queue.n_items
    assert Assignment.objects.filter(queue=queue, annotator=annotator).count() == n
    assert set(Label.objects.filter(queue=queue).values_list("primary_value", flat=True)) == {4}


# --------------------------------------------------------------------------- preference build and voting


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_preference_build(faulty, tmp_path, fault):
    from preferences import services as prefs
    from preferences.models import BuildRun, PreferencePair

    n = 1100  # objective pairs in batches of 500: one progress call per batch
    ds = _import_rows(tmp_path, "faulty-cmmlu", "mcq", _shared_rows("cmmlu_med.jsonl", n))
    pref_set = prefs.preference_set_create(user=None, name="faulty-build")
    with transaction.atomic():
        run = prefs.build_start(user=None, pref_set=pref_set, builder="objective", dataset=ds, params={"seed": 1})
    _strike_and_recover(faulty, run.job_id, 2, fault)  # inside the second batch
    run = BuildRun.objects.get(pk=run.pk)
    assert run.status == "done"
    keys = list(PreferencePair.objects.filter(run=run).values_list("item_key", flat=True))
    assert len(keys) == len(set(keys)) == n == run.n_pairs == run.n_done  # counters not bumped twice either


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_preference_vote(faulty, tmp_path, fault):
    from preferences import services as prefs
    from preferences.models import PreferencePair, VoteRun
    from preferences.pipeline.judge import ASPECTS
    from tests.fakes.openai_server import fake_openai_server

    n, judges = 24, ["j1", "j2"]
    pref_set = prefs.preference_set_create(user=None, name="faulty-vote")
    for i in range(n):
        PreferencePair.objects.create(pref_set=pref_set, origin="sampled", item_key=i, chosen=f"GOOD answer {i}",
                                      rejected=f"bad answer {i}", prompt_turns=[{"role": "user", "content": f"q{i}"}])

    def judge(req):
        answer = req["messages"][-1]["content"].split("Answer to rate:\n", 1)[1]
        return json.dumps({a: 5 if "GOOD" in answer else 1 for a in ASPECTS})

    with fake_openai_server(chat=judge) as url:
        with transaction.atomic():
            vote = prefs.vote_start(user=None, pref_set=pref_set, method="judges",
                                    params={"judges": judges, "base_url": url}, flip_frac=0.0, drop_frac=0.0)
        # MEDSTUDIO_PREF_BATCH_SIZE=4 on the worker: call 1 is the first batch, 2 the second
        _strike_and_recover(faulty, vote.job_id, 2, fault)
    vote = VoteRun.objects.get(pk=vote.pk)
    assert vote.status == "done"
    voted = PreferencePair.objects.filter(pref_set=pref_set, vote=vote)
    assert voted.count() == n and all(p.vote_detail["chosen"] == [5.0, 5.0] for p in voted)
    assert vote.summary["counts"]["keep"] == n
    assert vote.usage["calls"] == n * len(judges) * 2  # the stored usage counts each scored pair once


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_evaluation_mcq(faulty, tmp_path, fault, tiny_llama_path):
    from training.evaluation import services as evaluation
    from training.evaluation.models import EvalItem, EvalRun

    n = 12
    ds = _import_rows(tmp_path, "faulty-eval", "mcq", _shared_rows("cmmlu_med.jsonl", n))
    with transaction.atomic():
        run = evaluation.eval_run_start(user=None, kind="mcq", dataset=ds, model_name="tiny",
                                        model_spec={"backend": "transformers", "path": tiny_llama_path},
                                        params={"batch_size": 4, "seeds": [0, 1], "max_new_tokens": 4})
    _strike_and_recover(faulty, run.job_id, 3, fault)  # call 1 sets the total, 2.. one per batch
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    pairs = list(EvalItem.objects.filter(run=run).values_list("record_id", "seed"))
    assert len(pairs) == len(set(pairs)) == 2 * n


# --------------------------------------------------------------------------- training run


@pytest.mark.parametrize("fault", FAULT_KINDS)
def test_training_run(faulty, tmp_path, fault, tiny_llama_path, settings):
    """A CPT run of a tiny Llama: the worker is struck while the training process runs (it lives in
    its own session, so it outlives a killed worker); the next attempt kills what was left, resumes
    from the last checkpoint and the metrics tail from its committed offset."""
    from tests.training import toydata
    from training import services as training
    from training.models import Checkpoint, RunMetric, TrainingRun
    from training.pipeline.specs import default_spec

    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"  # the run's folder is fixed when it is created
    docs = [{"id": f"d{i}", "text": r["content"]["text"], "title": r["content"]["title"]}
            for i, r in enumerate(toydata.cpt_docs(4, 80))]
    ds = _import_rows(tmp_path, "faulty-train", "document", docs)
    base = training.model_ref_create(actor=None, name="tiny-llama", path=tiny_llama_path)
    spec = default_spec("cpt-stable", base.path, max_steps=6, save_steps=2, learning_rate=1e-3, max_length=64,
                        per_device_batch_size=2, global_batch_size=2, logging_steps=1, save_total_limit=2)
    with transaction.atomic():
        run = training.training_run_start(actor=None, spec=spec, base_model=base, data_ref={"type": "dataset", "id": ds.pk})
    # call 1 stores the exported data and the cursor; 2 is the first metrics batch or heartbeat after it
    job = _strike_and_recover(faulty, run.job_id, 2, fault)
    run = TrainingRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    assert run.step == 6 and job.result["step"] == 6
    steps = list(RunMetric.objects.filter(run=run, name="loss").order_by("step").values_list("step", flat=True))
    assert steps == sorted(set(steps)) and steps[-1] == 6
    assert Checkpoint.objects.filter(run=run, is_final=True).count() == 1
    from training.pipeline import launcher

    assert not launcher.kill_stale(Path(run.run_dir))  # no training process of either attempt still runs


# --------------------------------------------------------------------------- a Redis restart


REDIS = ("127.0.0.1", 6379)


def _redis_up() -> bool:
    import socket

    try:
        with socket.create_connection(REDIS, timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _restart_redis() -> None:
    """Stop the real redis-server (losing every key: `shutdown nosave`) and start it again as CI runs
    it. Whatever happens in between, Redis is running again when this returns or raises."""
    import subprocess

    cli = ["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1])]
    folder = subprocess.run(cli + ["config", "get", "dir"], capture_output=True, text=True).stdout.split()[-1:] or ["/tmp"]
    try:
        subprocess.run(cli + ["shutdown", "nosave"], capture_output=True, timeout=30)
        wait_for(lambda: not _redis_up(), timeout=30)
    finally:
        if not _redis_up():
            subprocess.run(["redis-server", "--daemonize", "yes", "--bind", REDIS[0], "--port", str(REDIS[1]),
                            "--save", "", "--appendonly", "no", "--dir", folder[0]], check=True, timeout=30)
        wait_for(_redis_up, timeout=30)


@pytest.mark.postgres
def test_redis_restart_mid_job(faulty, tmp_path, settings):
    """The broker loses everything mid-job: the running import (its message gone with the rest) still
    ends succeeded exactly once, the worker reconnects, and an export that was waiting in the lost
    queue is sent again by recovery (a queued job with no broker message) and runs once."""
    import redis

    from medstudio.datasets.models import Dataset, Export, Record
    from medstudio.datasets.services import export_start, import_start
    from medstudio.jobs.services import RESENT, jobs_recover

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("the Redis restart needs the Redis broker (CI's PostgreSQL + Redis pass)")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    n = 3000
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(n)))
    other = _dataset(tmp_path, "waiting-export", 300)
    with transaction.atomic():
        running = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="redis-import")
    faulty(5)
    stalled = faulty.dir / f"stalled-{running.pk}"
    wait_for(stalled.exists, timeout=120)
    with transaction.atomic():
        waiting = export_start(user=None, dataset=other, fmt="jsonl")
    # prefetch 1 + acks_late: the busy worker holds only the import; the export waits in Redis
    wait_for(lambda: broker.llen(waiting.queue) == 1, timeout=30)
    _restart_redis()
    assert broker.llen(waiting.queue) == 0  # its message is gone
    (faulty.dir / f"release-{running.pk}").write_text("")
    wait_for(lambda: _job(running.pk).status in ("succeeded", "failed", "cancelled"), timeout=180)
    job = _job(running.pk)
    assert job.status == "succeeded", job.error
    ids = list(Record.objects.filter(dataset__name="redis-import").values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == n == Dataset.objects.get(name="redis-import").n_records
    assert _job(waiting.pk).status == "queued"
    settings.JOB_RESEND_SECONDS = 0
    assert waiting.pk in jobs_recover()
    wait_for(lambda: _job(waiting.pk).status in ("succeeded", "failed", "cancelled"), timeout=120)
    export_job = _job(waiting.pk)
    assert export_job.status == "succeeded", export_job.error
    assert export_job.logs.filter(message=RESENT).exists()
    export = Export.objects.get(job=export_job)
    lines = Path(export.path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len({json.loads(x)["id"] for x in lines}) == 300 == export.n_records


# --------------------------------------------------------------------------- model scorers


def _labelled_documents(n: int) -> list[dict]:
    """Medical answers (Huatuo) and general Wikipedia text, with their domain and a rating each."""
    med = [{"id": f"m{r['id']}", "text": r["answer"], "domain": "medical", "rating": 4}
           for r in _shared_rows("huatuo26m_test_qa.jsonl", n)]
    gen = [{"id": f"g{i}", "text": r["text"], "domain": "general", "rating": 1}
           for i, r in enumerate(_shared_rows("general_zh.jsonl", n))]
    return med + gen


def _model_scorer_case(scorer: str, tmp_path, settings, tiny_llama_path):
    """(dataset, params, n, stall_at) for one model scorer; batch sizes: deita 32, confilter 16, raters 512."""
    if scorer in ("domain", "datarater"):
        from curation.modelscorers import services as modelscorers

        settings.MEDSTUDIO_MODEL_DIR = tmp_path / "models"
        labelled = _import_rows(tmp_path, f"{scorer}-labelled", "document", _labelled_documents(40))
        field = "domain" if scorer == "domain" else "rating"
        with transaction.atomic():
            model = modelscorers.trained_model_create(user=None, kind=scorer, encoder="hashed", enqueue=False,
                                                      source={"dataset_id": labelled.pk, "fields": [field]})
        job_execute(job_id=model.job_id)
        model.refresh_from_db()
        assert model.status == "ready", model.error
        return _dataset(tmp_path, f"faulty-{scorer}", 600), {"model_version": model.version}, 600, 3
    if scorer == "deita":
        rows = [{"id": f"q{r['id']}", "question": r["question"][:60], "answer": r["answer"][:60]}
                for r in _shared_rows("huatuo26m_test_qa.jsonl", 70)]
        params = {"complexity_model": tiny_llama_path, "quality_model": tiny_llama_path, "backend": "transformers",
                  "max_length": 128}
        return _import_rows(tmp_path, "faulty-deita", "qa", rows), params, 70, 3
    dialogues = [r for r in _shared_rows("cmtmedqa_multiturn.jsonl", 400)
                 if sum(t["role"] == "assistant" for t in r["turns"]) >= 2][:40]
    assert len(dialogues) == 40
    params = {"model": tiny_llama_path, "backend": "transformers", "max_length": 128}
    return _import_rows(tmp_path, "faulty-confilter", "dialogue", dialogues), params, 40, 3


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("scorer", ["domain", "datarater", "deita", "confilter"])
def test_model_scorer(faulty, tmp_path, settings, tiny_llama_path, scorer, fault):
    from curation.scoring import scorer_run_start
    from medstudio.handoffs.models import Score

    ds, params, n, stall_at = _model_scorer_case(scorer, tmp_path, settings, tiny_llama_path)
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer=scorer, params=params)
    _strike_and_recover(faulty, run.job_id, stall_at, fault)  # call 1 sets the total, 2.. one per batch
    _scored_once(run, n)
    # no record failed on the model either (ConFilter leaves turns past max_length unscored, not failed)
    assert not Score.objects.filter(run=run, reason__startswith="error").exists()


# --------------------------------------------------------------------------- the other job kinds (issue 14)


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_pii_redaction(faulty, tmp_path, fault):
    from curation.services import pii_redaction_start
    from medstudio.datasets.models import Dataset, Record

    n = 2300  # batches of 1000: call 1 commits the first batch, 2 is inside the second one's transaction
    rows = [{"id": f"r{i}", "text": f"Patient {i} wrote from p{i}@example.com about a headache."} for i in range(n)]
    source = _import_rows(tmp_path, "faulty-redact", "document", rows)
    with transaction.atomic():
        job = pii_redaction_start(user=None, dataset=source, types=["email"])
    job = _strike_and_recover(faulty, job.pk, 2, fault)
    target = Dataset.objects.get(pk=job.result["target_id"])
    texts = dict(Record.objects.filter(dataset=target).values_list("external_id", "text"))
    assert len(texts) == n == target.n_records == Record.objects.filter(dataset=target).count()
    assert not any("@example.com" in t for t in texts.values())
    # the counts travel in the cursor: the re-done batch is not counted twice
    assert job.result["counts"] == {"email": n} and job.result["records_changed"] == n


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_scorer_model_training(faulty, tmp_path, settings, fault):
    from curation.modelscorers import services as modelscorers
    from curation.modelscorers.models import TrainedModel

    settings.MEDSTUDIO_MODEL_DIR = tmp_path / "models"
    labelled = _import_rows(tmp_path, "train-labelled", "document", _labelled_documents(40))
    with transaction.atomic():
        model = modelscorers.trained_model_create(user=None, kind="domain", encoder="hashed",
                                                  source={"dataset_id": labelled.pk, "fields": ["domain"]})
    # calls: 1 start, 2 labels read (struck here, before the fit), 3 fitted, 4 saved
    job = _strike_and_recover(faulty, model.job_id, 2, fault, MEDSTUDIO_MODEL_DIR=settings.MEDSTUDIO_MODEL_DIR)
    model.refresh_from_db()
    assert model.status == "ready", model.error
    assert TrainedModel.objects.filter(kind="domain").count() == 1  # the version is not reserved twice
    assert Path(model.path).exists() and job.result["model"] == model.ref
    assert model.n_agreed == 80 and set(model.classes) == {"medical", "general"}


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_matrix_sync(faulty, tmp_path, settings, fault):
    """No progress call: the job stalls inside matrix_sync's transaction, after the rebuild."""
    from curation.scoring import scorer_run_start
    from curation.studio.models import MatrixSlot, ScoreMatrix

    n = 300
    ds = _dataset(tmp_path, "faulty-matrix", n)
    with transaction.atomic():
        run = scorer_run_start(user=None, dataset=ds, scorer="rules", enqueue=False)
    job_execute(job_id=run.job_id)  # in-process; its end queues the matrix sync for the worker
    [sync] = Job.objects.filter(kind="studio.matrix_sync", params__dataset_id=ds.pk)
    assert sync.status == "queued" and not ScoreMatrix.objects.filter(dataset=ds).exists()
    job = _strike_and_recover(faulty, sync.pk, 0, fault, MEDSTUDIO_FAULT_STALL_IN="curation.studio.services:matrix_sync",
                              MEDSTUDIO_FAULT_KIND="studio.matrix_sync")
    assert job.result["rebuilt"] is True  # the second attempt found the first one's rebuild rolled back
    from curation.studio.services import _wanted_slots

    slots = list(MatrixSlot.objects.filter(dataset=ds).values_list("run_id", "kind", "slot"))
    assert {r for r, _, _ in slots} == {run.pk}
    assert len(slots) == len({(k, i) for _, k, i in slots}) == len(_wanted_slots(ds))  # each slot once
    assert ScoreMatrix.objects.filter(dataset=ds).count() == n


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_selection_export(faulty, tmp_path, fault):
    from curation.studio import services as studio
    from curation.studio.models import SelectionExport

    n = 5300  # progress every 5000 records: call 2 is mid-file
    ds = _dataset(tmp_path, "faulty-sel-export", n, zh=False)
    _, sel = _ready_selection(ds, "faulty-sel-export")
    export = studio.selection_export_start(user=None, selection=sel, fmt="jsonl")
    job = _strike_and_recover(faulty, export.job_id, 2, fault)
    export = SelectionExport.objects.get(pk=export.pk)
    assert export.status == "succeeded" and SelectionExport.objects.filter(selection=sel).count() == 1
    data = Path(export.path) / export.files[0]
    ids = [json.loads(line)["record_id"] for line in data.read_text(encoding="utf-8").splitlines()]
    assert len(ids) == len(set(ids)) == n == export.n_written == job.result["n_written"]
    assert not list(Path(export.path).glob("*.part"))
    assert json.loads((Path(export.path) / "provenance.json").read_text())["n_written"] == n


def _pairs(name: str, n: int):
    from preferences import services as prefs
    from preferences.models import PreferencePair

    pref_set = prefs.preference_set_create(user=None, name=name)
    PreferencePair.objects.bulk_create([
        PreferencePair(pref_set=pref_set, origin="sampled", item_key=i, chosen=f"good answer {i}", rejected=f"bad answer {i}",
                       prompt_turns=[{"role": "user", "content": f"question {i}"}]) for i in range(n)])
    return pref_set


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_preference_export(faulty, tmp_path, fault):
    """No progress call: struck when the files and the export row are committed, before the Job is
    finished; the next attempt must not add a second export of the same job."""
    from preferences import services as prefs
    from preferences.models import PreferenceExport

    n = 30
    pref_set = _pairs("faulty-pref-export", n)
    job = prefs.export_start(user=None, pref_set=pref_set)
    job = _strike_and_recover(faulty, job.pk, 0, fault, MEDSTUDIO_FAULT_KIND="preferences.export", **AT_FINISH)
    [export] = PreferenceExport.objects.filter(pref_set=pref_set)
    assert export.job_id == job.pk and job.result["export_id"] == export.pk
    prompts = [json.loads(line)["prompt"][0]["content"] for line in open(export.files["trl"], encoding="utf-8")]
    assert len(prompts) == len(set(prompts)) == n == export.counts["n_pairs"]


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_preference_diversify(faulty, tmp_path, fault):
    from medstudio.datasets.models import Record
    from preferences import services as prefs
    from preferences.models import DiversifyRun, RunStatus
    from tests.fakes.openai_server import fake_openai_server

    src = _import_rows(tmp_path, "faulty-div-src", "qa",
                       [{"id": f"s{i}", "question": f"问题{i}", "answer": f"回答{i}"} for i in range(6)])
    seeds = [f"请像一名医生一样回答患者的问题，第{i}条。" for i in range(8)]
    calls = []

    def gen(req):
        calls.append(1)
        return f"1. 请作为临床医生，耐心解释患者症状的原因（{len(calls)}）。\n2. 写一首诗。"

    rounds = 4
    with fake_openai_server(chat=gen) as url:
        run = prefs.diversify_start(user=None, seeds=seeds, source=src, output_name="faulty-div-out",
                                    params={"rounds": rounds, "base_url": url, "m": 4, "n": 4, "k": 2})
        _strike_and_recover(faulty, run.job_id, 2, fault)  # one progress call per round: inside round 2's store
    run = DiversifyRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.DONE and run.state["round"] == rounds
    assert len(run.state["accepted"]) == len(set(run.state["accepted"])) == rounds  # round 2 kept once
    assert run.usage["calls"] == rounds  # the rolled-back round's call is not billed twice
    ids = list(Record.objects.filter(dataset=run.output).values_list("external_id", flat=True))
    assert len(ids) == len(set(ids)) == 6


def _eval_items(run) -> list[tuple]:
    from training.evaluation.models import EvalItem

    return list(EvalItem.objects.filter(run=run).values_list("record_id", "seed", "turn"))


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_evaluation_consultation(faulty, tmp_path, fault):
    from training.evaluation import services as evaluation
    from training.evaluation.models import EvalRun
    from tests.fakes.openai_server import fake_openai_server

    rows = [{"id": f"c{i}", "question": f"头痛{i}天怎么办？", "answer": f"休息并多喝水，第{i}条建议。"} for i in range(12)]
    ds = _import_rows(tmp_path, "faulty-consult", "qa", rows)

    def server(req):
        if req["model"] == "judge":
            return json.dumps({"fluency": 4, "relevance": 4, "completeness": 4, "proficiency": 4})
        return "休息并多喝水。"

    with fake_openai_server(chat=server) as url:
        with transaction.atomic():
            run = evaluation.eval_run_start(user=None, kind="consultation", dataset=ds, model_name="m",
                                            model_spec={"backend": "openai", "base_url": url, "model": "m"},
                                            params={"judge": {"base_url": url, "model": "judge"}, "batch_size": 4})
        _strike_and_recover(faulty, run.job_id, 3, fault)  # call 1 sets the total, 2.. one per batch
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    items = _eval_items(run)
    assert len(items) == len(set(items)) == 12 == run.summary["judged"]


def _memorization_run(tmp_path, name: str, url: str, n: int = 8, enqueue: bool = True):
    from training.evaluation import services as evaluation

    rows = [{"id": f"m{i}", "text": f"第{i}号病人主诉头痛三天，伴有恶心呕吐，既往体健，否认高血压病史，建议完善头颅CT检查。"}
            for i in range(n)]
    ds = _import_rows(tmp_path, name, "document", rows)
    with transaction.atomic():
        run = evaluation.eval_run_start(user=None, kind="memorization", dataset=ds, model_name="m", enqueue=enqueue,
                                        model_spec={"backend": "openai", "base_url": url, "model": "m", "max_retries": 0},
                                        params={"embedding_model": "fake-embed", "embedding_url": url, "batch_size": 2})
    return run


def _memorising_server():
    """Continues every record's prefix with its true suffix: every probe is memorised."""
    from training.pipeline.memorization import split_prefix_suffix

    def chat(req):
        prompt = req["messages"][-1]["content"]
        i = prompt.split("号")[0].lstrip("第")
        text = f"第{i}号病人主诉头痛三天，伴有恶心呕吐，既往体健，否认高血压病史，建议完善头颅CT检查。"
        return split_prefix_suffix(text, prefix_ratio=0.5, max_prefix_units=256, max_suffix_units=96)[1]

    return chat


def _embed(texts):
    return [[1.0, float(len(t) % 5), 2.0, float(sum(map(ord, t)) % 7)] for t in texts]


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_evaluation_memorization(faulty, tmp_path, fault):
    from training.evaluation.models import EvalRun, HighRiskStore, MemorizationHit
    from tests.fakes.openai_server import fake_openai_server

    with fake_openai_server(chat=_memorising_server(), embeddings=_embed) as url:
        run = _memorization_run(tmp_path, "faulty-memo", url)
        _strike_and_recover(faulty, run.job_id, 3, fault)  # batches of 2: call 3 is inside the second batch
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    items = _eval_items(run)
    assert len(items) == len(set(items)) == 8
    hits = list(MemorizationHit.objects.filter(run=run).values_list("record_id", flat=True))
    assert len(hits) == len(set(hits)) == run.summary["flagged"] == 8
    assert HighRiskStore.objects.get(run=run).n_entries == 8


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_evaluation_risk_check(faulty, tmp_path, fault):
    """Its one progress call is its last step: struck there, before the Job is finished."""
    from training.evaluation import services as evaluation
    from training.evaluation.models import HighRiskStore
    from tests.fakes.openai_server import fake_openai_server

    with fake_openai_server(chat=_memorising_server(), embeddings=_embed) as url:
        run = _memorization_run(tmp_path, "faulty-risk", url, n=4, enqueue=False)
        job_execute(job_id=run.job_id)
        store = HighRiskStore.objects.get(run=run)
        prompt = run.items.order_by("id").first().prompt
        with transaction.atomic():
            job = evaluation.high_risk_check_start(user=None, store=store, prompt=prompt)
        job = _strike_and_recover(faulty, job.pk, 1, fault)
    assert job.result["high_risk"] is True and job.result["store_id"] == store.pk
    assert job.result["max_cosine"] == pytest.approx(1.0)


@pytest.mark.postgres
@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_search_index(faulty, tmp_path, settings, fault):
    """PostgreSQL only. Struck before the build, with the index left as a killed CREATE INDEX
    CONCURRENTLY leaves it (there, but invalid): the next attempt drops it and builds it."""
    from medstudio.datasets import search_index
    from medstudio.jobs.services import job_create

    if connection.vendor != "postgresql":
        pytest.skip("the trigram search index is PostgreSQL's")
    settings.SEARCH_INDEX_MIN_RECORDS = 10**9  # the import below asks for no index itself
    ds = _dataset(tmp_path, "faulty-search", 400)
    with transaction.atomic():
        job = job_create(kind=search_index.JOB_KIND, params={"dataset_id": ds.pk})
    name = search_index.index_name(ds.pk)

    # what a CREATE INDEX CONCURRENTLY killed with its worker leaves: the index, marked invalid
    from medstudio.datasets.models import Record

    with connection.cursor() as cur:
        cur.execute(f"CREATE INDEX {name} ON {connection.ops.quote_name(Record._meta.db_table)} (id) "
                    f"WHERE dataset_id = {int(ds.pk)}")
        cur.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [name])
    assert search_index.index_valid(ds.pk) is False
    job = _strike_and_recover(faulty, job.pk, 0, fault, MEDSTUDIO_FAULT_STALL_IN="medstudio.datasets.search_index:build",
                              MEDSTUDIO_FAULT_STALL_WHEN="before", MEDSTUDIO_FAULT_KIND=search_index.JOB_KIND)
    assert job.result["search_index"] == f"built {name}"
    assert search_index.index_valid(ds.pk) is True
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_indexdef(%s::regclass)", [name])
        assert "gin_trgm_ops" in cur.fetchone()[0]  # the real index, not the dead attempt's leftover


# --------------------------------------------------------------------------- corpus jobs on a real local Ray


def _ray_shard_events(ray_address: str, job_pk: int, corpus: str) -> list[str]:
    """Every shard a Ray job of this MedStudio job scored, one entry per score file it committed."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_address)
    keys = []
    for info in client.list_jobs():  # the session's Ray: other tests' jobs too
        if (info.metadata or {}).get("medstudio_job") != str(job_pk) or (info.metadata or {}).get("corpus") != corpus:
            continue
        for line in client.get_job_logs(info.submission_id).splitlines():
            if line.startswith("MEDSTUDIO-EVENT "):
                ev = json.loads(line.split(" ", 1)[1])
                if ev.get("event") == "shard" and ev.get("status") == "done":
                    keys.append(ev["key"])
    return keys


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_corpus_run_on_ray(faulty, tmp_path, settings, fault, ray_address):
    """The Ray job lives on when the MedStudio worker is killed (or loses its database); the next
    attempt follows it or submits again, and a shard already scored is skipped, never scored twice."""
    import pyarrow.parquet as pq

    from curation.corpus.services import corpus_register, corpus_run_start
    from tests.corpus.conftest import docs, write_parquet

    settings.RAY_ADDRESS = ray_address
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    folder = tmp_path / "corpus"
    folder.mkdir()
    n_shards = 6
    for i in range(n_shards):
        write_parquet(folder / f"part-{i}.parquet", docs(20, 20 * i))
    corpus = corpus_register(actor=None, name="faulty-corpus", uri=str(folder))
    run = corpus_run_start(actor=None, corpus=corpus, scorers={"rules": {}}, workers=1)
    # a progress call per poll of the Ray job (every second): call 2 is while it runs
    job = _strike_and_recover(faulty, run.job_id, 2, fault, RAY_ADDRESS=ray_address, RAY_AUTH_MODE="disabled",
                              MEDSTUDIO_CORPUS_OUTPUT=settings.CORPUS_OUTPUT)
    assert job.result["shards_done"] == n_shards and job.result["shards_failed"] == 0
    files = sorted(Path(run.out_dir).rglob("*.scores.parquet"))
    assert len(files) == n_shards and not list(Path(run.out_dir).rglob("*.tmp-*"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == job.result["documents"] == 20 * n_shards
    scored = _ray_shard_events(ray_address, job.pk, corpus.name)
    assert sorted(scored) == sorted(f"part-{i}.parquet" for i in range(n_shards))  # each shard scored once


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_evaluation_harness(faulty, tmp_path, settings, fault, tiny_llama_path):
    """lm-evaluation-harness, offline, on the tiny model and a 4-question local cmmlu_anatomy copy:
    struck after its samples file is written (its last progress call), before the Job is finished."""
    pytest.importorskip("lm_eval")
    import datasets

    from training.evaluation import services as evaluation
    from training.evaluation.models import EvalRun

    rows = [r for r in _shared_rows("cmmlu_med.jsonl", 400) if r["subject"] == "anatomy"]

    def columns(part):
        return {"Question": [r["question"] for r in part], **{k: [r["options"][k] for r in part] for k in "ABCD"},
                "Answer": [r["answer"] for r in part]}

    dev, test = [r for r in rows if r["split"] == "dev"], [r for r in rows if r["split"] == "test"][:4]
    assert dev and len(test) == 4
    tasks = tmp_path / "eval_datasets"
    datasets.DatasetDict({"dev": datasets.Dataset.from_dict(columns(dev)),
                          "test": datasets.Dataset.from_dict(columns(test))}).save_to_disk(tasks / "cmmlu_anatomy")
    settings.MEDSTUDIO_EVAL_DATASETS_DIR = str(tasks)
    with transaction.atomic():
        run = evaluation.harness_run_start(user=None, tasks=["cmmlu_anatomy"], model_name="tiny",
                                           model_spec={"backend": "transformers", "path": tiny_llama_path})
    _strike_and_recover(faulty, run.job_id, 2, fault, MEDSTUDIO_EVAL_DATASETS_DIR=tasks, HF_HUB_OFFLINE=1,
                        HF_DATASETS_OFFLINE=1)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    samples = Path(run.summary["samples_path"])
    assert len(samples.read_text(encoding="utf-8").splitlines()) == 4 == run.summary["per_subject"]["cmmlu_anatomy"]["n"]
    assert not list(samples.parent.glob("*.tmp"))


def _corpus(tmp_path, name: str, n_shards: int, duplicate_first: bool = False):
    """A corpus of parquet shards of 20 real documents each; with duplicate_first, shard 1 repeats
    shard 0's texts under other ids (20 exact duplicates)."""
    from curation.corpus.services import corpus_register
    from tests.corpus.conftest import docs, write_parquet

    folder = tmp_path / name
    folder.mkdir()
    for i in range(n_shards):
        rows = docs(20, 20 * i)
        if duplicate_first and i == 1:
            rows = [dict(r, id=f"dup-{r['id']}") for r in docs(20, 0)]
        write_parquet(folder / f"part-{i}.parquet", rows)
    return corpus_register(actor=None, name=name, uri=str(folder))


def _on_ray(settings, tmp_path, ray_address) -> dict:
    settings.RAY_ADDRESS = ray_address
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    return {"RAY_ADDRESS": ray_address, "RAY_AUTH_MODE": "disabled", "MEDSTUDIO_CORPUS_OUTPUT": settings.CORPUS_OUTPUT}


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_corpus_dedup_on_ray(faulty, tmp_path, settings, fault, ray_address):
    """The same Ray follow-or-resubmit path as the corpus run; the decisions are written once per shard."""
    import pyarrow.parquet as pq

    from curation.corpus.services import corpus_dedup_start

    env = _on_ray(settings, tmp_path, ray_address)
    corpus = _corpus(tmp_path, "faulty-dedup", 3, duplicate_first=True)
    job = corpus_dedup_start(actor=None, corpus=corpus, partitions=2)
    job = _strike_and_recover(faulty, job.pk, 2, fault, **env)  # call 2: the second poll of the Ray job
    assert job.result["documents"] == 60 and job.result["dropped"] == 20
    out = Path(job.params["out_dir"])
    decisions = sorted(out.rglob("*.dedup.parquet"))
    assert len(decisions) == 3  # one decision file per shard
    kept = sum(pq.read_table(f, columns=["keep"]).column("keep").to_pylist().count(True) for f in decisions)
    assert kept == 40 and not list(out.rglob("*.tmp-*"))


@pytest.mark.parametrize("fault", KILL_AND_CUT)
def test_corpus_freeze(faulty, tmp_path, settings, fault, ray_address):
    """Its one progress call is its last step: struck there, the selection registered; the next
    attempt freezes again into the same files and the same one selection."""
    from curation.corpus.services import corpus_freeze_start, corpus_run_start
    from medstudio.handoffs.models import CorpusSelection

    env = _on_ray(settings, tmp_path, ray_address)
    corpus = _corpus(tmp_path, "faulty-freeze", 2)
    run = corpus_run_start(actor=None, corpus=corpus, scorers={"rules": {}}, enqueue=False)
    job_execute(job_id=run.job_id)  # scored in-process, on the same Ray
    assert _job(run.job_id).status == "succeeded", _job(run.job_id).error
    job = corpus_freeze_start(actor=None, corpus=corpus, conditions=[["rules_keep", "==", True]], name="faulty-frozen")
    job = _strike_and_recover(faulty, job.pk, 1, fault, **env)
    [sel] = CorpusSelection.objects.filter(name="faulty-frozen")
    assert sel.job_id == job.pk and sel.n_docs == 40 and sel.n_records == job.result["kept"]
    manifest = json.loads((Path(job.result["dest"]) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kept"] == sel.n_records and not list(Path(job.result["dest"]).rglob("*.tmp"))
