"""Start, supervise, cancel and resume a training process (no Django, no torch).

The worker never trains in its own process: it writes the run directory (config.json, and for
GPU runs a ZeRO-3 config and a hostfile), starts ``accelerate launch`` or the DeepSpeed launcher
in a new session (its own process group, so cancel can kill every rank at once), then polls the
process, tails metrics.jsonl and asks the caller whether to stop.

Run directory layout:
  config.json         the spec (what train.py reads)
  ds_zero3.json       DeepSpeed ZeRO-3 config (distributed == "zero3")
  hostfile            one "host slots=N" line per node (nodes > 1)
  train.log           stdout + stderr of the launcher and every rank
  metrics.jsonl       written by training/pipeline/callbacks.py
  out/checkpoint-N/   Trainer checkpoints (+ medstudio_spec.json); out/final/ the final model
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from training.pipeline.callbacks import MetricsTail
from training.pipeline.specs import TrainingSpec

TRAIN_MODULE = "training.pipeline.train"


def zero3_config(spec: TrainingSpec) -> dict[str, Any]:
    """DeepSpeed ZeRO-3 config; "auto" values are filled by the HF Trainer from the spec."""
    return {
        "bf16": {"enabled": "auto"},
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
        },
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "wall_clock_breakdown": False,
    }


def prepare_run_dir(spec: TrainingSpec, run_dir: str | os.PathLike) -> TrainingSpec:
    """Write config.json (+ ZeRO config, hostfile); returns the spec with output_dir filled in."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not spec.output_dir:
        spec = replace(spec, output_dir=str(run_dir / "out"))
    spec.validate()
    (run_dir / "config.json").write_text(spec.to_json())
    r = spec.resources
    if r.distributed == "zero3":
        (run_dir / "ds_zero3.json").write_text(json.dumps(zero3_config(spec), indent=1))
    if r.nodes > 1:
        (run_dir / "hostfile").write_text("".join(f"{h} slots={r.gpus_per_node}\n" for h in r.hosts))
    return spec


def build_command(spec: TrainingSpec, run_dir: str | os.PathLike, python: str | None = None) -> list[str]:
    """The launcher command line for this spec (accelerate launch, or deepspeed for ZeRO-3)."""
    run_dir = Path(run_dir)
    python = python or sys.executable
    config = str(run_dir / "config.json")
    r = spec.resources
    if r.launcher == "deepspeed":
        cmd = [python, "-m", "deepspeed.launcher.runner"]
        if r.nodes > 1:
            cmd += ["--hostfile", str(run_dir / "hostfile"), "--num_nodes", str(r.nodes)]
        cmd += ["--num_gpus", str(r.gpus_per_node), "--module", TRAIN_MODULE, "--config", config]
        return cmd
    cmd = [python, "-m", "accelerate.commands.launch"]
    if r.on_cpu:
        cmd += ["--cpu", "--num_processes", "1", "--num_machines", "1"]
    else:
        cmd += ["--num_processes", str(r.world_size), "--num_machines", str(r.nodes)]
        if r.nodes > 1:
            # Rank/address per node come from the environment on multi-node launches (one worker per node).
            cmd += ["--machine_rank", os.environ.get("MEDSTUDIO_MACHINE_RANK", "0"),
                    "--main_process_ip", r.hosts[0], "--main_process_port", os.environ.get("MEDSTUDIO_MAIN_PORT", "29500")]
        if r.world_size > 1:
            cmd += ["--multi_gpu"]
    cmd += ["--mixed_precision", "bf16" if spec.bf16 else "no", "--dynamo_backend", "no",
            "-m", TRAIN_MODULE, "--config", config]
    return cmd


def bare_command(run_dir: str | os.PathLike, python: str | None = None) -> list[str]:
    """The same script without any launcher (benchmark reference)."""
    return [python or sys.executable, "-m", TRAIN_MODULE, "--config", str(Path(run_dir) / "config.json")]


def start(cmd: list[str], run_dir: str | os.PathLike, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen:
    """Start the launcher in its own session: it and every rank share one new process group."""
    run_dir = Path(run_dir)
    log = open(run_dir / "train.log", "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    # The run must import this repository's packages wherever the worker was started from.
    root = str(Path(__file__).resolve().parents[2])
    full_env["PYTHONPATH"] = root + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    full_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    full_env.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from a run
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd or root, env=full_env, start_new_session=True)
    finally:
        log.close()  # the child holds its own descriptor
    # A worker that dies leaves its training group running; the pid file lets the next attempt kill it.
    (run_dir / "launcher.pid").write_text(str(proc.pid))
    return proc


def kill_stale(run_dir: str | os.PathLike, grace: float = 5.0) -> bool:
    """Kill a process group left by an earlier attempt of this run (worker crash). True if one was alive."""
    pid_file = Path(run_dir) / "launcher.pid"
    if not pid_file.exists():
        return False
    try:
        pgid = int(pid_file.read_text().strip())
    except ValueError:
        return False
    # start_new_session makes the launcher a group leader, so its pid is the group id.
    if pgid <= 1 or pgid == os.getpgid(0) or not group_alive(pgid):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
        if not group_alive(pgid):
            break
    return True


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(pgid):
                return
            time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ANSI escapes (CSI colour/cursor codes, OSC titles, two-character escapes) and other control characters.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_console(text: str) -> str:
    """Console output as a person reads it: no ANSI escapes, and each line carriage-returned over
    (a tqdm progress bar redrawn in place) kept only in its final state."""
    text = _ANSI.sub("", text or "")
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p.strip()]
            line = parts[-1] if parts else ""
        lines.append(_CONTROL.sub("", line))
    return "\n".join(lines)


def log_tail(path: str | os.PathLike, n_lines: int = 40, max_bytes: int = 16_000) -> str:
    path = Path(path)
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        data = fh.read().decode("utf-8", errors="replace")
    lines = [ln for ln in clean_console(data).split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines[-n_lines:])


@dataclass
class Outcome:
    status: str  # succeeded | failed | cancelled
    returncode: int | None
    log_tail: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def supervise(
    proc: subprocess.Popen,
    run_dir: str | os.PathLike,
    *,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    poll: float = 1.0,
    metrics_offset: int = 0,
    tail: MetricsTail | None = None,
) -> Outcome:
    """Wait for the process, streaming metrics rows to ``on_rows``; kill the group when asked.

    ``should_stop`` may also raise (the Job framework's progress() raises on cancel): either way
    the process group is killed before returning or re-raising, so no rank outlives its job.
    """
    run_dir = Path(run_dir)
    # Pass your own tail to read its offset after each batch of rows (the job's resume cursor).
    tail = tail or MetricsTail(run_dir / "metrics.jsonl", offset=metrics_offset)
    events: list[dict[str, Any]] = []

    def drain(to_end: bool = False):
        # Once the process is gone, read until nothing is new: a reader may hand rows over in
        # several batches. While it runs, one read per poll, so a cancel is never kept waiting.
        while rows := tail.read():
            events.extend(r for r in rows if r.get("event") != "log")
            if on_rows:
                on_rows(rows)
            if not to_end:
                break

    try:
        while proc.poll() is None:
            drain()
            if should_stop and should_stop():
                kill_group(proc)
                drain(to_end=True)
                return Outcome("cancelled", proc.returncode, log_tail(run_dir / "train.log"), events)
            time.sleep(poll)
    except BaseException:
        kill_group(proc)
        raise
    drain(to_end=True)
    rc = proc.returncode
    # A launcher can exit while a rank lingers: never leave orphans behind.
    kill_group(proc, grace=1.0)
    ok = rc == 0 and any(e.get("event") == "end" for e in events)
    return Outcome("succeeded" if ok else "failed", rc, "" if ok else log_tail(run_dir / "train.log"), events)
