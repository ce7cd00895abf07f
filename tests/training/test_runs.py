"""Training runs through the web and the job framework: roles, validation, the supervised job,
metrics and checkpoints in the database, lineage, cancel and crash reporting."""
import json
import re

import pytest
from django.urls import reverse

from medstudio.jobs.models import Job
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training import toydata
from training import services
from training.models import Checkpoint, ModelRef, RunMetric, TrainingRun
from training.pipeline import launcher
from training.pipeline.specs import default_spec
from tests.charts import chart_options

TINY = dict(max_length=64, per_device_batch_size=2, global_batch_size=2, logging_steps=1, save_total_limit=2)


def _raw_docs(n=3):
    return [{"id": f"d{i}", "text": r["content"]["text"], "title": r["content"]["title"]} for i, r in enumerate(toydata.cpt_docs(n, 80))]


def _raw_qa(n=4):
    return [{"id": f"q{i}", "question": r["content"]["question"], "answer": r["content"]["answer"]} for i, r in enumerate(toydata.sft_qa(n, 40))]


def _raw_pairs(n=4):
    return [{"id": f"p{i}", **r["content"]} for i, r in enumerate(toydata.objective_pairs(n))]


@pytest.fixture
def base_model(db, tiny_llama_path):  # noqa: F811
    return services.model_ref_create(actor=None, name="tiny-llama", path=tiny_llama_path)


@pytest.fixture(autouse=True)
def _runs_dir(settings, tmp_path):
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"


def _form(stage, base, dataset, **over):
    from training.forms import RunForm

    data = {k: v for k, v in RunForm.initial_for(stage).items()}
    data.update(base_model=base.pk, data=f"dataset:{dataset.pk}", **over)
    return {k: ("on" if v is True else v) for k, v in data.items() if v is not False and v is not None}


def test_roles_view_vs_launch(client_for, base_model, make_dataset):
    ds = make_dataset("docs", "document", _raw_docs())
    for role in ("clinician", "curator"):
        c = client_for(role)
        assert c.get(reverse("training:runs")).status_code == 200
        assert c.get(reverse("training:models")).status_code == 200
        assert c.get(reverse("training:model_detail", args=[base_model.pk])).status_code == 200
        assert c.get(reverse("training:run_new")).status_code == 403
        assert c.post(reverse("training:run_new"), _form("cpt-stable", base_model, ds)).status_code == 403
    assert TrainingRun.objects.count() == 0
    page = client_for("admin").get(reverse("training:run_new") + "?stage=sft")
    assert page.status_code == 200
    html = page.content.decode()
    # SFT defaults pre-filled: lr 2e-6, seq 2048, batch 128, weight decay 0.1, 10% validation.
    for name, value in (("learning_rate", "2e-06"), ("max_length", "2048"), ("global_batch_size", "128"),
                        ("weight_decay", "0.1"), ("val_fraction", "0.1")):
        assert re.search(rf'name="{name}" value="{re.escape(value)}"', html), name
    # Changing the stage reloads the form partial (HTMX) with that stage's defaults, keeping the model.
    part = client_for("admin").get(reverse("training:run_new") + f"?stage=dpo&base_model={base_model.pk}",
                                   HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'name="beta" value="0.03"' in part and 'name="learning_rate" value="1e-07"' in part
    assert re.search(rf'<option value="{base_model.pk}" selected>', part)


def test_invalid_spec_and_wrong_data_kind_are_refused(client_for, base_model, make_dataset):
    docs = make_dataset("docs", "document", _raw_docs())
    admin = client_for("admin")
    r = admin.post(reverse("training:run_new"), _form("sft", base_model, docs, learning_rate="-1", max_steps=2))
    assert r.status_code == 200
    html = r.content.decode()
    assert "must be in (0, 1)" in html and "sft trains on qa or dialogue or mcq records, and &#x27;docs&#x27; holds document records" in html
    assert TrainingRun.objects.count() == 0 and not Job.objects.filter(kind="training.run").exists()


@pytest.mark.slow
def test_ui_chain_leaves_four_linked_checkpoints(client_for, base_model, make_dataset):
    admin = client_for("admin")
    viewer = client_for("clinician")
    data = {"cpt-stable": make_dataset("docs", "document", _raw_docs()),
            "cpt-boost": make_dataset("docs2", "document", _raw_docs(2)),
            "sft": make_dataset("qa", "qa", _raw_qa()),
            "dpo": make_dataset("pairs", "pair", _raw_pairs())}
    start = base_model
    finals = []
    prev_run = None
    for stage in ("cpt-stable", "cpt-boost", "sft", "dpo"):
        extra = dict(TINY, learning_rate="2e-3", max_steps=3, save_steps=2)
        if stage == "dpo":
            # "next stage" from the SFT checkpoint pre-selects theta_base = the model SFT started from.
            url = re.search(r'href="([^"]*stage=dpo[^"]*)"', viewer_html).group(1).replace("&amp;", "&")
            page = admin.get(url).content.decode()
            merge_base = int(re.search(r'name="merge_base"[^>]*>.*?<option value="(\d+)" selected', page, re.S).group(1))
            assert merge_base == prev_run.base_model_id
            extra.update(merge_base=merge_base, merging_enabled=True, merging_p="0.5", merging_alpha="0.001", max_length=160)
        r = admin.post(reverse("training:run_new"), _form(stage, start, data[stage], **extra))
        assert r.status_code == 302, r.content.decode()[:3000]
        run = TrainingRun.objects.latest("id")
        assert run.status == "succeeded", (run.error, run.log_tail)
        finals.append(run.checkpoints.get(is_final=True).model_ref)
        # Live view: metrics streamed into the DB and drawn; checkpoints listed; next stage offered (admins only).
        assert RunMetric.objects.filter(run=run, name="loss").count() >= 3
        viewer_html = admin.get(reverse("training:run_detail", args=[run.pk])).content.decode()
        loss = chart_options(viewer_html)["Loss"]["series"][0]
        assert loss["name"] == "loss" and [p[0] for p in loss["data"]] == list(
            RunMetric.objects.filter(run=run, name="loss").order_by("step").values_list("step", flat=True))
        assert 'id="checkpoints"' in viewer_html
        assert viewer.get(reverse("training:run_detail", args=[run.pk])).status_code == 200
        assert "next-stage" not in viewer.get(reverse("training:run_detail", args=[run.pk])).content.decode()
        start, prev_run = finals[-1], run
    assert RunMetric.objects.filter(run=run, name="rewards_margins").exists()
    # Four linked checkpoints: each final model's parent is the previous one; data and spec recorded.
    assert [m.stage for m in finals] == ["cpt-stable", "cpt-boost", "sft", "dpo"]
    assert finals[0].parent == base_model
    for parent, child in zip(finals, finals[1:]):
        assert child.parent == parent
    assert [m.name for m in finals[-1].lineage()][-1] == "tiny-llama" and len(finals[-1].lineage()) == 5
    assert finals[2].data_ref["name"] == "qa" and len(finals[2].data_ref["sha256"]) == 64
    spec_file = json.loads(open(finals[-1].path + "/medstudio_spec.json").read())
    assert spec_file["spec"]["merging"]["enabled"] and spec_file["spec"]["merging"]["base_model"] == finals[1].path
    assert Checkpoint.objects.filter(is_final=False).exists()


@pytest.mark.slow
def test_cancel_from_the_job_kills_the_training_process(base_model, make_dataset, admin_user, monkeypatch):
    ds = make_dataset("docs", "document", _raw_docs())
    real = services.run_events_record

    def record_then_click_cancel(*, run, rows):
        step = real(run=run, rows=rows)
        if any(r.get("event") == "log" for r in rows):  # an admin clicks Cancel while the run streams
            Job.objects.filter(kind="training.run", params__run_id=run.pk).update(cancel_requested=True)
        return step

    monkeypatch.setattr(services, "run_events_record", record_then_click_cancel)
    spec = default_spec("cpt-stable", base_model.path, max_steps=100_000, learning_rate=1e-3, **TINY)
    run = services.training_run_start(actor=admin_user, spec=spec, base_model=base_model, data_ref={"type": "dataset", "id": ds.pk})
    run.refresh_from_db()
    assert run.status == "cancelled" and run.job.status == "cancelled"
    pgid = int((launcher.Path(run.run_dir) / "launcher.pid").read_text())
    assert not launcher.group_alive(pgid)
    assert run.step < 100


@pytest.mark.slow
def test_crashed_run_is_reported_with_log_tail(make_dataset, admin_user, tmp_path, tiny_llama_path):  # noqa: F811
    import shutil

    ds = make_dataset("docs", "document", _raw_docs())
    # Config and tokenizer load (pre-flight passes), but the weights are corrupt: the training
    # process itself dies, and the run reports it with the log tail.
    path = tmp_path / "corrupt-weights"
    shutil.copytree(tiny_llama_path, path)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    broken = services.model_ref_create(actor=None, name="broken", path=str(path))
    spec = default_spec("cpt-stable", broken.path, max_steps=2, **TINY)
    run = services.training_run_start(actor=admin_user, spec=spec, base_model=broken, data_ref={"type": "dataset", "id": ds.pk})
    run.refresh_from_db()
    assert run.status == "failed" and run.job.status == "failed"
    assert "Traceback" in run.log_tail or "Error" in run.log_tail
    assert "exited with code" in run.error


def test_management_command_validates(base_model, make_dataset):
    from django.core.management import CommandError, call_command

    make_dataset("qa", "qa", _raw_qa())
    with pytest.raises(CommandError, match="learning_rate"):
        call_command("train", "--stage", "sft", "--base", "tiny-llama", "--dataset", "qa", "--set", "learning_rate=5")
    with pytest.raises(CommandError, match="does not exist|no dataset"):
        call_command("train", "--stage", "sft", "--base", "tiny-llama", "--dataset", "nope")
    assert ModelRef.objects.count() == 1


class _WorkerDied(BaseException):
    """Stands in for a worker killed mid-run (not an Exception: the job framework must not catch it)."""


@pytest.mark.slow
def test_job_resumes_after_worker_loss_from_last_checkpoint(base_model, make_dataset, admin_user, monkeypatch, settings):
    from medstudio.jobs.services import job_execute, jobs_recover

    from training.pipeline.callbacks import MetricsTail

    ds = make_dataset("docs", "document", _raw_docs())
    real = services.run_events_record
    state = {"die": True, "committed": 0}

    def read_through_next_checkpoint(self):
        # While the "worker" is still to die, hand rows over one checkpoint at a time, so the
        # batches do not depend on how fast the machine trains between two polls (a fast CI box
        # once delivered the whole run in a single batch and the worker never died).
        if not state["die"] or not self.path.exists():
            return real_read(self)
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            lines = fh.read().splitlines(keepends=True)
        rows = []
        for line in lines:
            if not line.endswith(b"\n"):
                break
            self.offset += len(line)
            rows.append(json.loads(line))
            if rows[-1].get("event") == "checkpoint":
                break
        return rows

    def record_then_die(*, run, rows):
        # Die on the first batch that holds a checkpoint after an earlier batch committed (its
        # rows and offset are durable); the dying batch's rows and offset roll back together.
        if not (state["die"] and state["committed"] and any(r.get("event") == "checkpoint" for r in rows)):
            state["committed"] += 1
            return real(run=run, rows=rows)
        state["die"] = False
        raise _WorkerDied()

    real_read = MetricsTail.read
    monkeypatch.setattr(MetricsTail, "read", read_through_next_checkpoint)
    monkeypatch.setattr(services, "run_events_record", record_then_die)
    spec = default_spec("cpt-stable", base_model.path, max_steps=8, save_steps=3, learning_rate=1e-3, **TINY)
    run = services.training_run_start(actor=admin_user, spec=spec, base_model=base_model,
                                      data_ref={"type": "dataset", "id": ds.pk}, enqueue=False)
    with pytest.raises(_WorkerDied):
        job_execute(job_id=run.job_id)
    job = Job.objects.get(pk=run.job_id)
    assert job.status == "running" and job.cursor["metrics_offset"] > 0 and job.cursor["data"]["n_records"] == 3

    settings.JOB_STALE_SECONDS = 0
    assert jobs_recover() == [job.pk]  # eager: the re-queued job runs again right here
    run.refresh_from_db()
    job.refresh_from_db()
    assert run.status == "succeeded" and job.status == "succeeded" and job.attempts == 2
    assert any("Resuming from" in m for m in job.logs.values_list("message", flat=True))
    assert run.step == 8
    steps = list(RunMetric.objects.filter(run=run, name="loss").order_by("step").values_list("step", flat=True))
    assert steps == sorted(set(steps)) and steps[-1] == 8
