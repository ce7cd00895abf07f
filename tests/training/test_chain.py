"""CI on CPU: CPT-stable -> CPT-boost -> SFT -> DPO (with online merging) on a tiny local Llama,
each stage launched through `accelerate launch` and loading the previous stage's final model."""
import json
from pathlib import Path

import pytest

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training import toydata
from training.pipeline import launcher
from training.pipeline.callbacks import SPEC_FILENAME
from training.pipeline.specs import MergingSpec, default_spec

pytestmark = pytest.mark.slow

# Tiny-model settings: paper defaults for everything else (scheduler, warmup, decay, beta...),
# but a learning rate a 2-layer random model can move with in a handful of steps.
TINY = dict(max_length=96, per_device_batch_size=4, global_batch_size=4, logging_steps=1, save_total_limit=1)


def _launch(spec, run_dir):
    spec = launcher.prepare_run_dir(spec, run_dir)
    rows: list[dict] = []
    proc = launcher.start(launcher.build_command(spec, run_dir), run_dir)
    outcome = launcher.supervise(proc, run_dir, on_rows=rows.extend, poll=0.5)
    assert outcome.status == "succeeded", outcome.log_tail
    logs = [r for r in rows if r.get("event") == "log"]
    return spec, logs, outcome


def _losses(logs, key="loss"):
    return [r["metrics"][key] for r in logs if key in r["metrics"]]


def test_full_chain_with_merging(tiny_llama_path, tmp_path):  # noqa: F811
    base = tiny_llama_path
    stages = []

    data = toydata.write(tmp_path / "cpt.jsonl", toydata.cpt_docs(), repeat=4)
    spec, logs, _ = _launch(default_spec("cpt-stable", base, data_path=data, learning_rate=5e-3, max_steps=8, **TINY),
                            tmp_path / "cpt-stable")
    stages.append(spec)
    cpt_loss = _losses(logs)
    assert cpt_loss[-1] < 0.7 * cpt_loss[0]

    data = toydata.write(tmp_path / "boost.jsonl", toydata.cpt_docs(2) + toydata.sft_qa(2), repeat=4)
    spec, logs, _ = _launch(default_spec("cpt-boost", stages[-1].output_dir + "/final", data_path=data,
                                         learning_rate=2e-3, max_steps=6, **TINY), tmp_path / "cpt-boost")
    stages.append(spec)
    assert _losses(logs)[-1] < _losses(logs)[0]

    data = toydata.write(tmp_path / "sft.jsonl", toydata.sft_qa(), repeat=5)
    spec, logs, outcome = _launch(default_spec("sft", stages[-1].output_dir + "/final", data_path=data,
                                               learning_rate=5e-3, max_steps=10, save_steps=5, **TINY), tmp_path / "sft")
    stages.append(spec)
    sft_loss = _losses(logs)
    assert sft_loss[-1] < 0.7 * sft_loss[0]
    assert _losses(logs, "eval_loss"), "SFT holds out 10% and evaluates it"
    # Every checkpoint carries its spec, step and best metric.
    ckpt = next(Path(spec.output_dir).glob("checkpoint-*"))
    saved = json.loads((ckpt / SPEC_FILENAME).read_text())
    assert saved["spec"]["stage"] == "sft" and saved["step"] > 0 and saved["best_metric"] is not None

    data = toydata.write(tmp_path / "dpo.jsonl", toydata.objective_pairs(), repeat=3)
    merging = MergingSpec(enabled=True, p=0.5, alpha=1e-3, base_model=stages[1].output_dir + "/final")
    spec, logs, outcome = _launch(default_spec("dpo", stages[-1].output_dir + "/final", data_path=data, learning_rate=5e-3,
                                         max_steps=6, merging=merging, **TINY), tmp_path / "dpo")
    stages.append(spec)
    merge_events = [e for e in outcome.events if e.get("event") == "merging"]
    assert merge_events and merge_events[0]["tau_tensors"] > 0, "DPO ran with the online merging optimizer"
    dpo_loss = _losses(logs)
    assert dpo_loss[-1] < dpo_loss[0]
    assert _losses(logs, "rewards_margins") and _losses(logs, "rewards_accuracy")
    assert _losses(logs, "rewards_margins")[-1] > 0

    # Four linked checkpoints: each stage started from the previous stage's final model.
    finals = [json.loads((Path(s.output_dir) / "final" / SPEC_FILENAME).read_text()) for s in stages]
    assert [f["spec"]["stage"] for f in finals] == ["cpt-stable", "cpt-boost", "sft", "dpo"]
    for prev, cur in zip(stages, stages[1:]):
        assert cur.base_model == prev.output_dir + "/final"
    assert finals[-1]["spec"]["merging"]["enabled"] is True
