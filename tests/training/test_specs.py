"""Run specs: the papers' defaults (docs/METHODS.md 1.6 and 4) and validation before launch."""
import json

import pytest

from training.pipeline.specs import (
    NEXT_STAGE, MergingSpec, Resources, SpecError, TrainingSpec, default_spec, stage_defaults,
)


def test_stage_defaults_follow_the_papers():
    s = default_spec("cpt-stable", "m")
    assert (s.learning_rate, s.max_length, s.warmup_ratio, s.lr_scheduler_type) == (8e-6, 4096, 0.1, "cosine")
    assert s.global_batch_size * s.max_length == pytest.approx(4_000_000, rel=0.01)  # 4M tokens per batch
    b = default_spec("cpt-boost", "m")
    assert b.learning_rate == 2e-6 and b.max_length == 4096 and b.global_batch_size == s.global_batch_size
    sft = default_spec("sft", "m")
    assert (sft.max_length, sft.global_batch_size, sft.learning_rate, sft.weight_decay, sft.dropout,
            sft.val_fraction, sft.num_train_epochs) == (2048, 128, 2e-6, 0.1, 0.1, 0.1, 2.0)
    dpo = default_spec("dpo", "m")
    assert (dpo.learning_rate, dpo.global_batch_size, dpo.beta, dpo.num_train_epochs) == (1e-7, 96, 0.03, 2.0)
    assert MergingSpec().p == 0.01 and MergingSpec().alpha == 1e-7
    assert NEXT_STAGE["cpt-stable"] == "cpt-boost" and NEXT_STAGE["sft"] == "dpo" and NEXT_STAGE["dpo"] is None


def test_defaults_validate_on_gpu_resources():
    for stage in NEXT_STAGE:
        default_spec(stage, "m", resources=Resources(gpus_per_node=8, distributed="zero3"), bf16=True).validate()


def test_validation_reports_every_problem():
    spec = default_spec("sft", "", learning_rate=0, global_batch_size=100, per_device_batch_size=3, val_fraction=0.7)
    with pytest.raises(SpecError) as exc:
        spec.validate()
    assert {"base_model", "learning_rate", "global_batch_size", "val_fraction"} <= set(exc.value.errors)


def test_unknown_stage_and_unknown_setting_are_rejected():
    with pytest.raises(SpecError):
        stage_defaults("rlhf")
    with pytest.raises(SpecError) as exc:
        TrainingSpec.from_dict({"stage": "sft", "base_model": "m", "lr": 1})
    assert "lr" in exc.value.errors


def test_merging_needs_named_parameters_and_a_base():
    spec = default_spec("dpo", "sft-model", resources=Resources(gpus_per_node=8, distributed="zero3"),
                        merging=MergingSpec(enabled=True), bf16=True)
    errs = spec.errors()
    assert "merging.base_model" in errs and "resources.distributed" in errs
    ok = default_spec("dpo", "sft-model", resources=Resources(gpus_per_node=8, distributed="fsdp"),
                      merging=MergingSpec(enabled=True, base_model="cpt-model"), bf16=True)
    assert ok.errors() == {}
    assert "merging.enabled" in default_spec("sft", "m", merging=MergingSpec(enabled=True, base_model="b")).errors()
    assert "merging.p" in default_spec("dpo", "m", merging=MergingSpec(enabled=True, base_model="b", p=0)).errors()


def test_gradient_accumulation_from_global_batch():
    spec = default_spec("sft", "m", per_device_batch_size=2, resources=Resources(nodes=2, gpus_per_node=8, hosts=["a", "b"], distributed="zero3"), bf16=True)
    assert spec.gradient_accumulation_steps == 128 // (2 * 16)
    assert spec.errors() == {}
    assert "resources.hosts" in default_spec("sft", "m", resources=Resources(nodes=2, gpus_per_node=8, distributed="zero3"), bf16=True).errors()


def test_cpu_runs_refuse_bf16_and_zero():
    errs = default_spec("sft", "m", bf16=True, resources=Resources(distributed="zero3")).errors()
    assert "bf16" in errs and "resources.distributed" in errs


def test_round_trip_and_hash_are_stable():
    spec = default_spec("dpo", "m", merging=MergingSpec(enabled=True, base_model="b"))
    again = TrainingSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec and again.content_hash() == spec.content_hash()
    assert default_spec("dpo", "m", beta=0.1).content_hash() != spec.content_hash()
