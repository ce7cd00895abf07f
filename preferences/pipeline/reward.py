"""K reward models for preference voting (SF-Med, docs/METHODS.md 3.4), trained with TRL's RewardTrainer.

Plain Python; torch / transformers / trl / datasets are imported inside the functions so the web
process never loads them. Pairs are dicts {"prompt_turns", "chosen", "rejected"} (the conversational
format TRL expects is built here). Each of the K models sees the same pairs in its own random order
(seed + k), which is what makes their votes differ.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass
class RewardSpec:
    """How to train the voters. SF-Med trained K=10 reward models; the base is a setting."""

    base_model: str  # local path (or hub id in production) of a causal-LM checkpoint
    k: int = 10
    epochs: float = 1.0
    learning_rate: float = 1e-4  # TRL RewardConfig default
    batch_size: int = 8
    max_length: int = 1024
    seed: int = 0
    use_cpu: bool | None = None  # None: CPU when no CUDA device is visible

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_trl_rows(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversational preference rows (prompt / chosen / rejected as message lists), as TRL reads them."""
    rows = []
    for p in pairs:
        rows.append(
            {
                "prompt": [{"role": t["role"], "content": t["content"]} for t in p["prompt_turns"]],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
        )
    return rows


def _use_cpu(spec: RewardSpec) -> bool:
    if spec.use_cpu is not None:
        return spec.use_cpu
    import torch

    return not torch.cuda.is_available()


def train_reward_model(pairs: Sequence[dict[str, Any]], spec: RewardSpec, index: int, out_dir: str | Path) -> str:
    """Train voter number `index` on its own shuffle of `pairs`; save it under out_dir/rm_<index>."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    rows = to_trl_rows(pairs)
    random.Random(spec.seed + index).shuffle(rows)
    target = Path(out_dir) / f"rm_{index}"
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cpu = _use_cpu(spec)
    args = RewardConfig(
        output_dir=str(target / "_trainer"),
        num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        per_device_train_batch_size=spec.batch_size,
        max_length=spec.max_length,
        seed=spec.seed + index,
        use_cpu=cpu,
        bf16=not cpu,
        # Checkpointing saves GPU memory on a real base model; on CPU tiny models it only costs time.
        activation_checkpointing=not cpu,
        save_strategy="no",
        report_to="none",
        logging_steps=10,
        disable_tqdm=True,
    )
    trainer = RewardTrainer(model=spec.base_model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(target))
    tokenizer.save_pretrained(str(target))
    return str(target)


def train_reward_models(
    pairs: Sequence[dict[str, Any]],
    spec: RewardSpec,
    out_dir: str | Path,
    *,
    done: Sequence[str] = (),
    on_model: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Train the K voters; `done` holds paths already trained (a resumed job skips them)."""
    if len(pairs) < 2:
        raise ValueError("reward models need at least two pairs")
    paths = list(done)
    for i in range(len(paths), spec.k):
        path = train_reward_model(pairs, spec, i, out_dir)
        paths.append(path)
        if on_model:
            on_model(i, path)
    return paths


def score_pairs(
    model_path: str, pairs: Sequence[dict[str, Any]], *, batch_size: int = 16, max_length: int = 1024
) -> tuple[list[float], list[float]]:
    """r(chosen) and r(rejected) for every pair under one reward model, tokenised the way TRL
    trained it (chat template over prompt + answer). Over-long sequences keep their last tokens."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
    model.eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)

    def ids(prompt: list[dict], answer: str) -> list[int]:
        enc = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": answer}], tokenize=True, return_dict=True
        )
        return list(enc["input_ids"])[-max_length:]

    seqs = []
    for p in pairs:
        prompt = [{"role": t["role"], "content": t["content"]} for t in p["prompt_turns"]]
        seqs.append(ids(prompt, p["chosen"]))
        seqs.append(ids(prompt, p["rejected"]))
    rewards: list[float] = []
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        for start in range(0, len(seqs), batch_size):
            batch = seqs[start : start + batch_size]
            width = max(len(s) for s in batch)
            # Right padding: the sequence-classification head reads the last non-pad token.
            input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in batch], device=device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch], device=device)
            out = model(input_ids=input_ids, attention_mask=mask)
            rewards.extend(out.logits[:, 0].float().cpu().tolist())
    return rewards[0::2], rewards[1::2]
