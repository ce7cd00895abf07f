"""The launcher: its own process group, cancel within seconds, resume from the last checkpoint,
crash reported with the log tail, ZeRO-3 config and hostfile generation."""
import json
import os
import shutil
import time

import pytest

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training import toydata
from training.pipeline import launcher, train
from training.pipeline.specs import Resources, default_spec

TINY = dict(max_length=64, per_device_batch_size=2, global_batch_size=2, learning_rate=1e-3, logging_steps=1)


def _cpt_spec(base, tmp_path, **kw):
    data = toydata.write(tmp_path / "docs.jsonl", toydata.cpt_docs(2, 80), repeat=4)
    return default_spec("cpt-stable", base, data_path=data, **{**TINY, **kw})


def test_accelerate_command_for_cpu_and_gpu(tmp_path):
    spec = launcher.prepare_run_dir(default_spec("sft", "m", data_path="d.jsonl"), tmp_path)
    cmd = launcher.build_command(spec, tmp_path)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--cpu" in cmd
    assert cmd[-4:] == ["-m", "training.pipeline.train", "--config", str(tmp_path / "config.json")]
    assert json.loads((tmp_path / "config.json").read_text())["output_dir"] == str(tmp_path / "out")

    gpu = default_spec("sft", "m", bf16=True, per_device_batch_size=4,
                       resources=Resources(nodes=2, gpus_per_node=8, hosts=["n1", "n2"], distributed="zero3", launcher="deepspeed"))
    gpu = launcher.prepare_run_dir(gpu, tmp_path / "gpu")
    cmd = launcher.build_command(gpu, tmp_path / "gpu")
    assert "deepspeed.launcher.runner" in cmd and cmd[cmd.index("--num_gpus") + 1] == "8"
    assert (tmp_path / "gpu" / "hostfile").read_text() == "n1 slots=8\nn2 slots=8\n"
    ds = json.loads((tmp_path / "gpu" / "ds_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3


def test_invalid_spec_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError):
        launcher.prepare_run_dir(default_spec("sft", "m", learning_rate=-1), tmp_path / "r")
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.slow
def test_cancel_kills_the_process_group_within_seconds(tiny_llama_path, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    spec = launcher.prepare_run_dir(_cpt_spec(tiny_llama_path, tmp_path, max_steps=100_000), run_dir)
    proc = launcher.start(launcher.build_command(spec, run_dir), run_dir)
    pgid = os.getpgid(proc.pid)
    assert pgid != os.getpgid(0), "the training process must not share the worker's process group"
    seen: list = []
    asked = {}

    def should_stop():
        if any(r.get("event") == "log" for r in seen):
            asked.setdefault("t", time.monotonic())
            return True
        return False

    out = launcher.supervise(proc, run_dir, on_rows=seen.extend, should_stop=should_stop, poll=0.2)
    elapsed = time.monotonic() - asked["t"]
    assert out.status == "cancelled"
    assert elapsed < 10, f"cancel took {elapsed:.1f}s"
    assert not launcher.group_alive(pgid)


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tiny_llama_path, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    spec = launcher.prepare_run_dir(_cpt_spec(tiny_llama_path, tmp_path, max_steps=12, save_steps=3, save_total_limit=5), run_dir)
    proc = launcher.start(launcher.build_command(spec, run_dir), run_dir)
    seen: list = []
    out = launcher.supervise(proc, run_dir, on_rows=seen.extend,
                             should_stop=lambda: any(r.get("event") == "checkpoint" for r in seen), poll=0.2)
    # On a fast machine the twelve tiny steps can all finish (and later checkpoints be written)
    # before the cancel lands. Whatever the timing, leave the state a crash right after the first
    # checkpoint leaves: that checkpoint only (save_total_limit keeps it however far the run got),
    # so the resume below always has steps to do.
    assert out.status in ("cancelled", "succeeded")
    first_ckpt = min(r["step"] for r in seen if r.get("event") == "checkpoint")
    out_dir = run_dir / "out"
    for later in out_dir.glob("checkpoint-*"):
        if int(later.name.rsplit("-", 1)[1]) > first_ckpt:
            shutil.rmtree(later)
    shutil.rmtree(out_dir / "final", ignore_errors=True)
    assert train.last_checkpoint(str(out_dir)) == str(out_dir / f"checkpoint-{first_ckpt}")

    proc = launcher.start(launcher.build_command(spec, run_dir), run_dir)
    offset = (run_dir / "metrics.jsonl").stat().st_size
    rows: list = []
    out = launcher.supervise(proc, run_dir, on_rows=rows.extend, poll=0.5, metrics_offset=offset)
    assert out.status == "succeeded", out.log_tail
    start = next(r for r in rows if r.get("event") == "start")
    assert start["resume_from"] is not None
    resumed_step = int(start["resume_from"].rsplit("-", 1)[1])
    assert resumed_step == first_ckpt < 12
    logged = [r["step"] for r in rows if r.get("event") == "log" and "loss" in r["metrics"]]
    assert min(logged) > resumed_step, "a resumed run does not redo finished steps"
    assert next(r for r in rows if r.get("event") == "end")["step"] == 12


@pytest.mark.slow
def test_crash_is_reported_with_the_log_tail(tiny_llama_path, tmp_path):  # noqa: F811
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "document", "content": {"text": "fine"}}\nthis is not json\n')
    run_dir = tmp_path / "run"
    spec = launcher.prepare_run_dir(default_spec("cpt-stable", tiny_llama_path, data_path=str(bad), **TINY), run_dir)
    out = launcher.supervise(launcher.start(launcher.build_command(spec, run_dir), run_dir), run_dir, poll=0.2)
    assert out.status == "failed" and out.returncode != 0
    assert "line 2: not JSON" in out.log_tail


def test_kill_stale_stops_a_group_left_by_a_dead_worker(tmp_path):
    # A worker that died leaves its launcher running in its own session; the retry must stop it.
    import sys

    proc = launcher.start([sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"], tmp_path)
    time.sleep(0.5)
    pgid = os.getpgid(proc.pid)
    assert launcher.group_alive(pgid)
    assert launcher.kill_stale(tmp_path, grace=2.0) is True
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while launcher.group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not launcher.group_alive(pgid)
    assert launcher.kill_stale(tmp_path) is False
