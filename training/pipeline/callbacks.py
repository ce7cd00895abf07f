"""Metric streaming between the training process and its supervisor (no Django).

The training process appends one JSON object per log event to ``metrics.jsonl`` in the run
directory; the supervising worker tails that file (``MetricsTail``) and writes the rows to the
database. A file rather than a DB connection from the trainer: the training process then needs
no Django, no database credentials, and keeps running if the database hiccups.

Only ``make_callback`` touches transformers, lazily, so the web process can import this module.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# Keys the live view draws, mapped from the names the HF/TRL trainers log.
METRIC_KEYS = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "eval_loss": "eval_loss",
    "tokens_per_second": "tokens_per_second",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins",
    "rewards/accuracies": "rewards_accuracy",
    "eval_rewards/margins": "eval_rewards_margins",
    "eval_rewards/accuracies": "eval_rewards_accuracy",
}
SPEC_FILENAME = "medstudio_spec.json"


def normalise_logs(logs: dict[str, Any]) -> dict[str, float]:
    """Keep the numeric metrics we know, under stable names."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        name = METRIC_KEYS.get(key)
        if name and isinstance(value, (int, float)) and value == value:  # drop NaN
            out[name] = float(value)
    return out


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    # One write() per line with O_APPEND: a reader never sees half a line from a finished write.
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class MetricsTail:
    """Incremental reader of metrics.jsonl: each ``read()`` returns only complete new rows."""

    def __init__(self, path: str | os.PathLike, offset: int = 0):
        self.path = Path(path)
        self.offset = offset

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for line in data[: end + 1].splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a corrupt line must not stop the stream
        return rows


def make_callback(metrics_path: str, spec_dict: dict[str, Any]):
    """Build the TrainerCallback (imports transformers lazily).

    It writes metrics (with tokens/s computed from ``num_input_tokens_seen``) to the JSONL file,
    copies the spec into every checkpoint with step and best metric, and records checkpoints.
    """
    from transformers import TrainerCallback

    class MedStudioCallback(TrainerCallback):
        def __init__(self):
            self._t = None
            self._tokens = 0

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self._t = time.perf_counter()
                self._tokens = state.num_input_tokens_seen or 0
                append_jsonl(metrics_path, {"event": "begin", "step": state.global_step, "max_steps": state.max_steps, "time": time.time()})

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            row = normalise_logs(logs)
            now = time.perf_counter()
            seen = state.num_input_tokens_seen or 0
            if self._t is not None and seen > self._tokens and now > self._t and "tokens_per_second" not in row:
                row["tokens_per_second"] = (seen - self._tokens) / (now - self._t)
                self._t, self._tokens = now, seen
            if row:
                append_jsonl(metrics_path, {"event": "log", "step": state.global_step, "epoch": state.epoch,
                                            "max_steps": state.max_steps, "tokens": seen, "metrics": row, "time": time.time()})

        def on_save(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                (ckpt / SPEC_FILENAME).write_text(json.dumps({
                    "spec": spec_dict, "step": state.global_step,
                    "best_metric": state.best_metric, "best_checkpoint": state.best_model_checkpoint,
                }, indent=1, ensure_ascii=False))
                append_jsonl(metrics_path, {"event": "checkpoint", "step": state.global_step, "path": str(ckpt), "time": time.time()})

    return MedStudioCallback()
