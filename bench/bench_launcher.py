"""Training throughput: a run launched by MedStudio vs the same trainer script run bare.

    .venv/bin/python bench/bench_launcher.py --repeats 3 --steps 20

Both sides run training/pipeline/train.py on the same config (a small local Llama, CPT on
documents from the shared data, fixed max_steps). "launched" goes through the launcher the
training job uses (accelerate launch in its own session, supervised, metrics tailed every
second); "bare" is `python -m training.pipeline.train --config ...`. Tokens/s is the trainer's
tokens seen divided by its train_runtime (start-up excluded); wall time includes start-up.
Runs alternate (bare, launched, bare, ...) so machine load hits both alike; medians and the
launched/bare ratio are printed (goal >= 0.97).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def build_model(path: Path, hidden: int, layers: int) -> str:
    from tests.fakes.tiny_models import build_tiny_llama

    return build_tiny_llama(path, hidden_size=hidden, num_layers=layers)


def write_docs(path: Path, n: int) -> str:
    with (DATA / "general_en.jsonl").open(encoding="utf-8") as src, path.open("w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i >= n:
                break
            r = json.loads(line)
            out.write(json.dumps({"kind": "document", "content": {"title": r["title"], "text": r["text"]}}) + "\n")
    return str(path)


def one_run(mode: str, spec, work: Path, k: int) -> dict:
    from training.pipeline import launcher

    run_dir = work / f"{mode}-{k}"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = launcher.prepare_run_dir(spec.__class__.from_dict({**spec.to_dict(), "output_dir": ""}), run_dir)
    cmd = launcher.build_command(spec, run_dir) if mode == "launched" else launcher.bare_command(run_dir)
    t0 = time.perf_counter()
    proc = launcher.start(cmd, run_dir)
    rows: list = []
    outcome = launcher.supervise(proc, run_dir, on_rows=rows.extend, poll=1.0)
    wall = time.perf_counter() - t0
    if outcome.status != "succeeded":
        raise SystemExit(f"{mode} run failed:\n{outcome.log_tail}")
    end = next(r for r in rows if r.get("event") == "end")
    return {"tokens_per_s": end["tokens"] / end["train_runtime"], "wall_s": wall, "tokens": end["tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    # SIGTERM -> SystemExit, so supervise() kills the training process group on the way out
    # (the runs live in their own sessions and would otherwise outlive the benchmark).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from training.pipeline.specs import default_spec

    work = Path(tempfile.mkdtemp(prefix="bench_launcher_"))
    try:
        base = build_model(work / "model", args.hidden, args.layers)
        data = write_docs(work / "docs.jsonl", 400)
        spec = default_spec("cpt-stable", base, data_path=data, max_length=args.seq, per_device_batch_size=args.batch,
                            global_batch_size=args.batch, max_steps=args.steps, learning_rate=1e-4, logging_steps=5,
                            save_steps=10_000, save_total_limit=1)
        results: dict[str, list[dict]] = {"bare": [], "launched": []}
        for k in range(args.repeats):
            for mode in ("bare", "launched"):
                r = one_run(mode, spec, work, k)
                results[mode].append(r)
                print(f"{mode:9s} #{k}: {r['tokens_per_s']:8.0f} tokens/s  wall {r['wall_s']:5.1f} s  ({r['tokens']} tokens)", flush=True)
        med = {m: statistics.median(r["tokens_per_s"] for r in rs) for m, rs in results.items()}
        wall = {m: statistics.median(r["wall_s"] for r in rs) for m, rs in results.items()}
        print(f"\nmodel: Llama hidden={args.hidden} layers={args.layers}, seq {args.seq}, batch {args.batch}, {args.steps} steps, CPU")
        print(f"median tokens/s  bare {med['bare']:.0f}  launched {med['launched']:.0f}  ratio launched/bare {med['launched'] / med['bare']:.3f} (goal >= 0.97)")
        print(f"median wall s    bare {wall['bare']:.1f}  launched {wall['launched']:.1f}  (start-up of accelerate launch included)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
