"""The training script the launcher starts (``accelerate launch -m training.pipeline.train --config ...``).

One script for the four stages, all on TRL trainers:
  cpt-stable / cpt-boost -> SFTTrainer on plain text (language modelling over every token)
  sft                    -> SFTTrainer on conversations ("messages")
  dpo                    -> DPOTrainer on (prompt, chosen, rejected), optionally with the online
                            merging optimizer (training/pipeline/merging.py)
It never imports Django: the worker hands it a spec (config.json) and a JSONL file of normalised
records ({"kind", "content"} per line, the platform's record schema), and reads back
metrics.jsonl, checkpoints and the final model. Records become examples through the platform's
one converter (medstudio.datasets.convert, plain Python as well).

Runs bare too (``python -m training.pipeline.train --config run/config.json``): bench/ compares both.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from medstudio.datasets.convert import Unconvertible, to_messages, to_preference, to_text
from training.pipeline.callbacks import SPEC_FILENAME, append_jsonl, make_callback
from training.pipeline.specs import TrainingSpec


# --- records -> training examples (pure; the conversions are medstudio.datasets.convert) ---------

def iter_records(path: str) -> Iterator[dict[str, Any]]:
    """The data file's records one at a time, in file order."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SystemExit(f"data file {path} line {n}: not JSON ({exc})")
            if "content" not in row:  # accept raw {"text": ...} lines too
                row = {"kind": "document", "content": row}
            yield row


def read_records(path: str) -> list[dict[str, Any]]:
    return list(iter_records(path))


def iter_examples(spec: TrainingSpec, rows: Iterable[dict[str, Any]], render=None) -> Iterator[dict[str, Any]]:
    for row in rows:
        kind, content = row.get("kind", "document"), row.get("content") or {}
        try:
            if spec.stage in ("cpt-stable", "cpt-boost"):
                ex = {"text": to_text(kind, content, render)}
            elif spec.stage == "sft":
                ex = {"messages": to_messages(kind, content)}
            else:
                ex = to_preference(kind, content)
        except Unconvertible:  # no usable example for this stage (e.g. a document in SFT): skipped
            continue
        yield ex


def build_examples(spec: TrainingSpec, rows: Iterable[dict[str, Any]], render=None) -> list[dict[str, Any]]:
    return list(iter_examples(spec, rows, render))


def train_dataset(spec: TrainingSpec, run_dir: Path, render=None):
    """The examples as a datasets.Dataset.

    CPT reads the data file (a whole frozen corpus selection, say) line by line into an on-disk
    Arrow dataset under run_dir, which the trainer memory-maps: the corpus is never a Python list in
    memory. A map-style Dataset rather than a streaming IterableDataset, so that epochs, the held-out
    split and the example count work as for any other run. SFT and DPO sets are small and mixed in
    shape (messages, preference triples): Dataset.from_list infers their schema over all rows.
    A resumed run (same file, same stage) reuses the Arrow files.
    """
    from datasets import Dataset, Features, Value

    if spec.stage not in ("cpt-stable", "cpt-boost"):
        examples = build_examples(spec, iter_records(spec.data_path), render)
        if not examples:
            raise SystemExit(f"no usable {spec.stage} examples in {spec.data_path}")
        return Dataset.from_list(examples)
    import hashlib

    from datasets.exceptions import DatasetGenerationError

    st = os.stat(spec.data_path)
    fingerprint = hashlib.sha256(json.dumps([os.path.abspath(spec.data_path), st.st_size, st.st_mtime_ns, spec.stage,
                                             render is not None]).encode()).hexdigest()[:32]
    seen = [0]

    def gen():
        for ex in iter_examples(spec, iter_records(spec.data_path), render):
            seen[0] += 1
            yield ex

    try:
        ds = Dataset.from_generator(gen, features=Features({"text": Value("string")}), fingerprint=fingerprint,
                                    cache_dir=str(run_dir / "hf-datasets"))
    except (DatasetGenerationError, ValueError):
        if seen[0] == 0:  # datasets refuses an empty generator ("corresponds to no data")
            raise SystemExit(f"no usable {spec.stage} examples in {spec.data_path}") from None
        raise
    if len(ds) == 0:
        raise SystemExit(f"no usable {spec.stage} examples in {spec.data_path}")
    return ds


# --- the run ----------------------------------------------------------------------------------

def _load_model(spec: TrainingSpec):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(spec.base_model)
    # Dropout (SFT: 0.1, docs/METHODS.md 4) lives under different names per architecture.
    for attr in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "dropout"):
        if hasattr(config, attr):
            setattr(config, attr, spec.dropout)
    return AutoModelForCausalLM.from_pretrained(spec.base_model, config=config)


def _common_args(spec: TrainingSpec, has_eval: bool, run_dir: Path) -> dict[str, Any]:
    save_strategy = "steps" if spec.save_steps else "epoch"
    args = dict(
        output_dir=spec.output_dir,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler_type,
        warmup_steps=spec.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        per_device_train_batch_size=spec.per_device_batch_size,
        per_device_eval_batch_size=spec.per_device_batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        num_train_epochs=spec.num_train_epochs,
        max_steps=spec.max_steps,
        weight_decay=spec.weight_decay,
        bf16=spec.bf16,
        use_cpu=spec.resources.on_cpu,
        seed=spec.seed,
        logging_steps=spec.logging_steps,
        save_strategy=save_strategy,
        save_total_limit=spec.save_total_limit,
        report_to="none",
        include_num_input_tokens_seen=True,
        max_length=spec.max_length,
        dataloader_num_workers=0,
    )
    if spec.save_steps:
        args["save_steps"] = spec.save_steps
    if has_eval:
        # "best of 2 epochs" (docs/METHODS.md 4): evaluate when saving, keep the best by eval loss.
        args.update(eval_strategy=save_strategy, load_best_model_at_end=True,
                    metric_for_best_model="eval_loss", greater_is_better=False)
        if spec.save_steps:
            args["eval_steps"] = spec.save_steps
    if spec.resources.distributed == "zero3":
        args["deepspeed"] = str(run_dir / "ds_zero3.json")
    elif spec.resources.distributed == "fsdp":
        # FSDP2 (transformers 5's default) keeps named DTensor parameters, which the merging
        # optimizer needs (it works on each rank's local shard).
        args["fsdp"] = "full_shard auto_wrap"
        args["fsdp_config"] = {"version": 2}
    return args


def _merging_trainer_cls(base_cls, spec: TrainingSpec, metrics_path: str):
    """A DPOTrainer whose optimizer is OnlineMergingAdamW, built from named parameters."""
    import torch

    from training.pipeline.merging import OnlineMergingAdamW, clean_name, named_param_groups, sharded_task_vector

    class MergingTrainer(base_cls):
        def create_optimizer(self, model=None):
            if self.optimizer is None:
                from transformers import AutoModelForCausalLM

                m = spec.merging
                opt_model = self.model if model is None else model
                base = AutoModelForCausalLM.from_pretrained(m.base_model)
                base_state = {clean_name(k): v for k, v in base.state_dict().items()}
                named = [(clean_name(n), p) for n, p in opt_model.named_parameters() if p.requires_grad]
                gen = torch.Generator().manual_seed(spec.seed)
                tau = sharded_task_vector(named, base_state, p=m.p, clip=m.clip, method=m.method, generator=gen)
                del base, base_state
                missing = [n for n, _ in named if n not in tau]
                if not tau:
                    raise RuntimeError(f"online merging: no parameter of the DPO model matches theta_base {m.base_model}")
                self.optimizer = OnlineMergingAdamW(
                    named_param_groups(opt_model, self.args.weight_decay), tau,
                    lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
                    eps=self.args.adam_epsilon, weight_decay=self.args.weight_decay,
                    p=m.p, alpha=m.alpha, method=m.method, rescale=m.rescale,
                    generator=torch.Generator().manual_seed(spec.seed + 1),
                )
                append_jsonl(metrics_path, {"event": "merging", "method": m.method, "p": m.p, "alpha": m.alpha,
                                            "tau_tensors": len(tau), "without_tau": missing[:20], "base_model": m.base_model})
            return self.optimizer

    return MergingTrainer


def last_checkpoint(output_dir: str) -> str | None:
    """The highest-step checkpoint-N directory holding trainer state, or None."""
    best = None
    for d in Path(output_dir).glob("checkpoint-*"):
        try:
            step = int(d.name.split("-")[-1])
        except ValueError:
            continue
        if (d / "trainer_state.json").exists() and (best is None or step > best[0]):
            best = (step, d)
    return str(best[1]) if best else None


def run(spec: TrainingSpec, run_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    spec.validate()
    metrics_path = str(run_dir / "metrics.jsonl")
    tok = AutoTokenizer.from_pretrained(spec.base_model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    render = None
    if spec.stage == "cpt-boost" and tok.chat_template:
        render = lambda msgs: tok.apply_chat_template(msgs, tokenize=False)  # noqa: E731
    ds = train_dataset(spec, run_dir, render)
    eval_ds = None
    if spec.val_fraction > 0 and len(ds) >= 4:
        split = ds.train_test_split(test_size=spec.val_fraction, seed=spec.seed)
        ds, eval_ds = split["train"], split["test"]
    model = _load_model(spec)
    callback = make_callback(metrics_path, spec.to_dict())
    common = _common_args(spec, eval_ds is not None, run_dir)

    if spec.stage == "dpo":
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(beta=spec.beta, **common)
        cls = _merging_trainer_cls(DPOTrainer, spec, metrics_path) if spec.merging.enabled else DPOTrainer
        trainer = cls(model=model, args=cfg, train_dataset=ds, eval_dataset=eval_ds,
                      processing_class=tok, callbacks=[callback])
    else:
        from trl import SFTConfig, SFTTrainer

        # Loss on assistant tokens only when the chat template marks them ({% generation %});
        # otherwise (e.g. a template without the marks) over the whole conversation.
        assistant_only = spec.stage == "sft" and "{% generation %}" in (tok.chat_template or "")
        cfg = SFTConfig(dataset_text_field="text", packing=False, assistant_only_loss=assistant_only, **common)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, eval_dataset=eval_ds,
                             processing_class=tok, callbacks=[callback])

    kept = len(trainer.train_dataset)
    if kept < len(ds):
        # TRL's DPO drops pairs whose prompt alone reaches max_length; say so instead of a sampler error.
        append_jsonl(metrics_path, {"event": "filtered", "kept": kept, "total": len(ds)})
        print(f"[medstudio] {len(ds) - kept} of {len(ds)} examples dropped (prompt longer than max_length={spec.max_length})", flush=True)
    if kept == 0:
        raise SystemExit(f"no training example fits max_length={spec.max_length}; raise max_length")

    resume = last_checkpoint(spec.output_dir)
    append_jsonl(metrics_path, {"event": "start", "resume_from": resume, "n_train": len(ds),
                                "n_eval": len(eval_ds) if eval_ds is not None else 0})
    result = trainer.train(resume_from_checkpoint=resume)
    final_dir = Path(spec.output_dir) / "final"
    trainer.save_model(str(final_dir))
    summary = {
        "event": "end", "final": str(final_dir), "step": trainer.state.global_step,
        "train_loss": result.training_loss, "best_metric": trainer.state.best_metric,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "tokens": trainer.state.num_input_tokens_seen, "train_runtime": result.metrics.get("train_runtime"),
    }
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(final_dir))
        (final_dir / SPEC_FILENAME).write_text(json.dumps({"spec": spec.to_dict(), **summary}, indent=1, ensure_ascii=False))
        append_jsonl(metrics_path, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="MedStudio training process (one stage)")
    ap.add_argument("--config", required=True, help="config.json written by the launcher")
    args, _unknown = ap.parse_known_args(argv)  # the DeepSpeed launcher appends --local_rank
    cfg_path = Path(args.config)
    spec = TrainingSpec.from_dict(json.loads(cfg_path.read_text()))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(spec, cfg_path.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
