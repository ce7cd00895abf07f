"""Memorisation audit throughput on a tiny local Llama: batched generation (the job's path,
left-padded batches) against one prompt at a time, plus the ROUGE-L judging cost.

    .venv/bin/python bench/bench_memorization.py [--probes 64] [--batch 16] [--tokens 48] [--repeats 3]

No download: the model is built locally (tests/fakes/tiny_models.py). Shared data for the texts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from tests.fakes.tiny_models import build_tiny_llama
    from training.pipeline.evaluation import GenParams, TransformersGenerator
    from training.pipeline.memorization import judge_memorised, make_probes

    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")) / "huatuo26m_test_qa.jsonl"
    with open(data, encoding="utf-8") as f:
        texts = [json.loads(line)["answer"][:120] for _, line in zip(range(args.probes), f)]
    probes = make_probes(list(enumerate(texts)))
    model = build_tiny_llama(tempfile.mkdtemp() + "/m", seed=0)
    params = GenParams(max_new_tokens=args.tokens)
    prompts = [p.prefix for p in probes]

    def run(bs):
        gen = TransformersGenerator(model, batch_size=bs)
        gen._load()
        times, outs = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            outs = gen.generate(prompts, params)
            times.append(time.perf_counter() - t)
        return statistics.median(times), [o.text for o in outs]

    t_b, out_b = run(args.batch)
    t_1, out_1 = run(1)
    t = time.perf_counter()
    for _ in range(args.repeats):
        judge_memorised(probes, out_b)
    t_j = (time.perf_counter() - t) / args.repeats
    same = sum(a == b for a, b in zip(out_b, out_1))
    print(f"{len(probes)} probes, {args.tokens} new tokens, torch threads {args.threads}, median of {args.repeats}")
    print(f"  batched (batch {args.batch}): {t_b:.2f} s = {len(probes) / t_b:.1f} probes/s")
    print(f"  one at a time          : {t_1:.2f} s = {len(probes) / t_1:.1f} probes/s")
    print(f"  speed-up {t_1 / t_b:.1f}x; identical greedy outputs {same}/{len(probes)} (left padding can flip near-ties)")
    print(f"  ROUGE-L judging: {t_j * 1e3 / len(probes):.2f} ms/probe")


if __name__ == "__main__":
    main()
