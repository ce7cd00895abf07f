"""Export: verdicts/votes resolve the order; the TRL file trains in DPOTrainer on the tiny Llama."""
from __future__ import annotations

import json

import pytest

from preferences.pipeline.builders import objective_pair
from preferences.pipeline.export import resolve, write_exports
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401 (fixture)

TURNS = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "头痛怎么办？"}]


def test_resolve_order_of_precedence():
    assert resolve("a", "b") == ("a", "b")
    assert resolve("a", "b", action="flip") == ("b", "a")
    assert resolve("a", "b", action="drop") is None
    assert resolve("a", "b", status="tie") is None
    # A clinician verdict overrides the judge and the vote, both ways.
    assert resolve("a", "b", action="drop", verdict="chosen") == ("a", "b")
    assert resolve("a", "b", verdict="rejected") == ("b", "a")
    assert resolve("a", "b", status="tie", verdict="rejected") == ("b", "a")
    assert resolve("a", "b", verdict="tie") is None


def pairs_for_export():
    return [
        {"prompt_turns": TURNS, "chosen": "多休息。", "rejected": "不知道。", "origin": "subjective"},
        {"prompt_turns": TURNS, "chosen": "坏", "rejected": "好", "origin": "subjective", "action": "flip"},
        {"prompt_turns": TURNS, "chosen": "x", "rejected": "y", "origin": "subjective", "status": "tie"},
        {"prompt_turns": TURNS, "chosen": "x", "rejected": "y", "origin": "sampled", "action": "drop"},
        objective_pair({"id": 1, "lang": "zh", "question": "哪个对？", "options": {"A": "甲", "B": "乙"}, "answer": "B"}).to_dict(),
    ]


def test_write_exports_formats_and_counts(tmp_path):
    summary = write_exports(pairs_for_export(), tmp_path, "carebot")
    assert summary["by_origin"] == {"subjective": 2, "objective": 1}
    assert summary["left_out"] == {"tie": 1, "drop": 1}
    rows = [json.loads(line) for line in open(summary["files"]["trl"], encoding="utf-8")]
    assert rows[0]["prompt"] == TURNS and rows[0]["chosen"] == [{"role": "assistant", "content": "多休息。"}]
    assert rows[1]["chosen"][0]["content"] == "好"  # flipped by the vote
    lf = json.load(open(summary["files"]["llamafactory"], encoding="utf-8"))
    assert lf[0]["system"] == "你是医生。" and lf[0]["conversations"] == [{"from": "human", "value": "头痛怎么办？"}]
    assert lf[2]["chosen"]["value"].startswith("答案：B. 乙")
    info = json.load(open(summary["files"]["dataset_info"]))
    assert info["carebot"]["ranking"] is True and info["carebot"]["file_name"] == "carebot.llamafactory.json"


@pytest.mark.slow
def test_exported_trl_file_loads_and_trains_in_dpo_trainer(tiny_llama_path, tmp_path):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    summary = write_exports(pairs_for_export() * 3, tmp_path, "dpo")
    ds = load_dataset("json", data_files=summary["files"]["trl"], split="train")
    assert len(ds) == 9 and set(ds.column_names) == {"prompt", "chosen", "rejected"}
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    # docs/METHODS.md 4: DPO beta 0.03.
    args = DPOConfig(output_dir=str(tmp_path / "out"), beta=0.03, max_steps=2, per_device_train_batch_size=4,
                     max_length=256, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
                     activation_checkpointing=False, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss == out.training_loss  # not NaN
