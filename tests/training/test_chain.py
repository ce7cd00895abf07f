"""CI on CPU, from the command line: CPT-stable -> CPT-boost -> SFT -> DPO (with online merging) on
a tiny local Llama via `manage.py train`, each stage launched through `accelerate launch` and
loading the previous stage's final model; loss falls on a memorisable toy set."""
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training import toydata
from training.models import ModelRef, RunMetric, TrainingRun
from training.pipeline.callbacks import SPEC_FILENAME

pytestmark = pytest.mark.slow

# Paper defaults for everything else (scheduler, warmup, decay, beta...), but a learning rate a
# 2-layer random model can move with in a handful of steps, and short sequences.
TINY = ["max_length=96", "per_device_batch_size=4", "global_batch_size=4", "logging_steps=1", "save_total_limit=1"]


@pytest.fixture(autouse=True)
def _runs_dir(settings, tmp_path):
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"


def _raw(records, kind):
    out = []
    for i, r in enumerate(records):
        c = r["content"]
        out.append({"id": f"{kind}{i}", **c})
    return out


def _train(stage, base, dataset, *sets, merge_base=""):
    out = StringIO()
    args = ["train", "--stage", stage, "--base", str(base), "--dataset", dataset]
    if merge_base:
        args += ["--merge-base", str(merge_base)]
    for s in (*TINY, *sets):
        args += ["--set", s]
    call_command(*args, stdout=out)
    final_id = int(re.search(r"final model id (\d+)", out.getvalue()).group(1))
    run = TrainingRun.objects.latest("id")
    return ModelRef.objects.get(pk=final_id), run


def _loss(run, name="loss"):
    return list(RunMetric.objects.filter(run=run, name=name).order_by("step").values_list("value", flat=True))


def test_cli_chain_with_merging(tiny_llama_path, make_dataset):  # noqa: F811
    make_dataset("cpt", "document", _raw(toydata.cpt_docs() * 4, "d"))
    make_dataset("boost", "document", _raw(toydata.cpt_docs(2) * 4, "b"))
    make_dataset("sft", "qa", _raw(toydata.sft_qa() * 5, "q"))
    make_dataset("dpo", "pair", _raw(toydata.objective_pairs() * 3, "p"))

    cpt, run = _train("cpt-stable", tiny_llama_path, "cpt", "learning_rate=5e-3", "max_steps=8")
    assert _loss(run)[-1] < 0.7 * _loss(run)[0]
    boost, run = _train("cpt-boost", cpt.pk, "boost", "learning_rate=2e-3", "max_steps=6")
    assert _loss(run)[-1] < _loss(run)[0]
    sft, run = _train("sft", boost.pk, "sft", "learning_rate=5e-3", "max_steps=10", "save_steps=5")
    assert _loss(run)[-1] < 0.7 * _loss(run)[0]
    assert _loss(run, "eval_loss"), "SFT holds out 10% and evaluates it"
    ckpt = next(Path(run.run_dir, "out").glob("checkpoint-*"))
    saved = json.loads((ckpt / SPEC_FILENAME).read_text())
    assert saved["spec"]["stage"] == "sft" and saved["step"] > 0 and saved["best_metric"] is not None

    dpo, run = _train("dpo", sft.pk, "dpo", "learning_rate=5e-3", "max_steps=6", "max_length=160",
                      "merging.enabled=true", "merging.p=0.5", "merging.alpha=0.001", merge_base=boost.pk)
    assert _loss(run)[-1] < _loss(run)[0]
    assert _loss(run, "rewards_margins")[-1] > 0 and _loss(run, "rewards_accuracy")
    events = [json.loads(line) for line in Path(run.run_dir, "metrics.jsonl").read_text().splitlines()]
    merge = [e for e in events if e.get("event") == "merging"]
    assert merge and merge[0]["tau_tensors"] > 0 and merge[0]["base_model"] == boost.path

    # Four linked checkpoints, each loading the previous one.
    assert [m.stage for m in dpo.lineage()] == ["dpo", "sft", "cpt-boost", "cpt-stable", ""]
    assert dpo.run.spec["base_model"] == sft.path and dpo.run.spec["merging"]["base_model"] == boost.path
    assert dpo.data_ref["name"] == "dpo" and len(dpo.data_ref["sha256"]) == 64
