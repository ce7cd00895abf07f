"""Pre-flight checks: each problem that would kill a run in its first seconds is refused at launch,
naming what to change, and nothing is stored (no run, no job)."""
import json
import shutil

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from medstudio.datasets.models import Dataset
from medstudio.jobs.models import Job
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training import toydata
from training import services
from training.models import TrainingRun
from training.pipeline.preflight import check_model
from training.pipeline.specs import default_spec


@pytest.fixture
def model_copy(tiny_llama_path, tmp_path):  # noqa: F811
    def make(name, drop=()):
        path = tmp_path / name
        shutil.copytree(tiny_llama_path, path)
        for f in drop:
            (path / f).unlink()
        return str(path)
    return make


def _qa(make_dataset):
    return make_dataset("qa", "qa", [{"id": f"q{i}", **r["content"]} for i, r in enumerate(toydata.sft_qa(4, 40))])


def _refused(match, *args):
    with pytest.raises(CommandError, match=match):
        call_command("train", *args)
    assert TrainingRun.objects.count() == 0 and not Job.objects.filter(kind="training.run").exists()


def _strip_chat_template(path):
    (tmp := __import__("pathlib").Path(path) / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = tmp.parent / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))


def test_base_model_without_config_is_refused(db, make_dataset, model_copy):
    _qa(make_dataset)
    _refused("has no config.json", "--stage", "sft", "--base", model_copy("noconfig", drop=["config.json"]), "--data", "dataset:qa")


def test_base_model_whose_tokenizer_is_missing_or_broken_is_refused(db, make_dataset, model_copy):
    _qa(make_dataset)
    _refused("has no tokenizer", "--stage", "sft", "--base", model_copy("notok", drop=["tokenizer.json"]), "--data", "dataset:qa")
    broken = model_copy("badtok")
    with open(f"{broken}/tokenizer.json", "w") as fh:
        fh.write("{not json")
    assert any("does not load" in p for p in check_model(broken))


def test_chat_stage_needs_a_chat_template_but_cpt_does_not(db, make_dataset, model_copy):
    _qa(make_dataset)
    plain = model_copy("plain")
    _strip_chat_template(plain)
    _refused("no chat template", "--stage", "sft", "--base", plain, "--data", "dataset:qa")
    assert check_model(plain, chat=False) == []  # CPT trains on raw text: the same model is fine there


def test_data_of_the_wrong_kind_is_refused_with_what_fits(db, make_dataset, tiny_llama_path):  # noqa: F811
    make_dataset("docs", "document", [{"id": f"d{i}", **r["content"]} for i, r in enumerate(toydata.cpt_docs(3, 80))])
    _refused(r"sft trains on qa or dialogue or mcq records, and 'docs' holds document records",
             "--stage", "sft", "--base", tiny_llama_path, "--data", "dataset:docs")


def test_empty_data_is_refused(db, tiny_llama_path):  # noqa: F811
    Dataset.objects.create(name="empty-qa", kind="qa")
    base = services.model_ref_create(actor=None, name="tiny", path=tiny_llama_path)
    with pytest.raises(services.SpecError) as exc:
        services.training_run_start(actor=None, spec=default_spec("sft", base.path), base_model=base,
                                    data_ref={"type": "dataset", "id": Dataset.objects.get(name="empty-qa").pk}, enqueue=False)
    assert "'empty-qa' is empty" in exc.value.errors["data"]
    assert TrainingRun.objects.count() == 0


def test_online_merging_needs_an_existing_base(db, make_dataset, tiny_llama_path, client_for):  # noqa: F811
    pairs = make_dataset("pairs", "pair", [{"id": f"p{i}", **r["content"]} for i, r in enumerate(toydata.objective_pairs(4))])
    _refused("online merging needs theta_base", "--stage", "dpo", "--base", tiny_llama_path, "--data", "dataset:pairs",
             "--set", "merging.enabled=true")
    gone = services.model_ref_create(actor=None, name="gone", path="/nonexistent/sft-base")
    _refused("gone: '/nonexistent/sft-base' is not a local model directory", "--stage", "dpo", "--base", tiny_llama_path,
             "--data", "dataset:pairs", "--set", "merging.enabled=true", "--merge-base", "gone")
    # The same check through the form: a field error, the form kept as typed, no run.
    from training.forms import RunForm

    base = services.model_ref_create(actor=None, name="tiny", path=tiny_llama_path)
    data = {k: ("on" if v is True else v) for k, v in RunForm.initial_for("dpo").items() if v is not False and v is not None}
    data.update(base_model=base.pk, data=f"dataset:{pairs.pk}", merging_enabled="on", merge_base=gone.pk, name="typed name")
    r = client_for("admin").post(reverse("training:run_new"), data)
    html = r.content.decode()
    assert r.status_code == 200 and "is not a local model directory" in html and 'value="typed name"' in html
    assert TrainingRun.objects.count() == 0


def test_unknown_data_name_and_missing_model_path_are_refused(db, make_dataset, tiny_llama_path):  # noqa: F811
    _qa(make_dataset)
    _refused("no selection named 'nope'", "--stage", "sft", "--base", tiny_llama_path, "--data", "selection:nope")
    _refused("TYPE:NAME", "--stage", "sft", "--base", tiny_llama_path, "--data", "qa")
    _refused("no model named '/nowhere'", "--stage", "sft", "--base", "/nowhere", "--data", "dataset:qa")
