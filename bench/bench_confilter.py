"""ConFilter: one forward pass per dialogue (+ one batched pass over the turns) vs the naive
turn-by-turn computation (2n passes per dialogue), on 6-exchange dialogues from CMtMedQA.

    .venv/bin/python bench/bench_confilter.py                      # a small local Llama (CPU)
    .venv/bin/python bench/bench_confilter.py --model /path/to/Qwen2.5-0.5B-Instruct --device cuda

Prints the median seconds of each method over --repeats, the ratio naive / one-pass (goal >= 3x),
and the largest difference between the two methods' CF values (they must agree within 1e-4).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def six_turn_dialogues(n: int):
    from curation.pipeline.base import RecordView

    out = []
    with (DATA / "cmtmedqa_multiturn.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            turns, kept, replies = row["turns"], [], 0
            for t in turns:
                kept.append(t)
                replies += t["role"] == "assistant"
                if replies == 6:
                    break
            if replies == 6:
                out.append(RecordView(id=len(out), kind="dialogue", lang="zh", text="", content={"turns": kept}))
            if len(out) >= n:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="local causal LM directory (default: build a small Llama here)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dialogues", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=256, help="hidden size of the built Llama")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=2048)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from curation.pipeline.confilter import ConFilter, confilter_naive, parse_dialogue, plan_dialogue
    from medstudio.inference.lm import TransformersLM

    path = args.model
    if not path:
        from tests.fakes.tiny_models import build_tiny_llama

        path = build_tiny_llama(Path(tempfile.mkdtemp()) / "llama", seed=0, vocab_size=2000,
                                hidden_size=args.hidden, num_layers=args.layers)
    lm = TransformersLM(path, setting="--model", device=args.device)
    records = six_turn_dialogues(args.dialogues)
    n_tokens = 0
    for r in records:
        parsed = parse_dialogue(r)
        n_tokens += len(plan_dialogue(lm.tokenizer, parsed.system, parsed.exchanges, args.max_length)[1])
    scorer = ConFilter(lm, max_length=args.max_length)
    scorer.score_batch(records[:2])  # warm-up
    fast_t, slow_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fast = scorer.score_batch(records)
        fast_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        slow = [confilter_naive(lm, r, max_length=args.max_length) for r in records]
        slow_t.append(time.perf_counter() - t)
    diff = max(abs(a["cf"] - b["cf"]) for f, s in zip(fast, slow)
               for a, b in zip(f.detail["turns"], s.detail["turns"]) if a["cf"] is not None)
    f_med, s_med = statistics.median(fast_t), statistics.median(slow_t)
    print(f"model: {path} ({sum(p.numel() for p in lm.model.parameters()) / 1e6:.1f}M params, {lm.device}, "
          f"{torch.get_num_threads()} threads)")
    print(f"{len(records)} dialogues x 6 exchanges, {n_tokens} tokens in all, {args.repeats} repeats")
    print(f"one-pass : median {f_med:.3f} s  ({n_tokens / f_med:,.0f} dialogue tokens/s)  runs {[round(x, 3) for x in fast_t]}")
    print(f"naive    : median {s_med:.3f} s  ({n_tokens / s_med:,.0f} dialogue tokens/s)  runs {[round(x, 3) for x in slow_t]}")
    print(f"speed-up naive/one-pass: {s_med / f_med:.2f}x (goal >= 3x); max |CF difference| = {diff:.2e} (must be < 1e-4)")


if __name__ == "__main__":
    main()
