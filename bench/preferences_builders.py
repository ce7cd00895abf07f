"""Benchmark: preference-pair builders.

1. Subjective pairs against the local fake OpenAI server with a fixed per-call latency: the batch
   runner with a thread pool (run_items, max_workers=8) vs the sequential reference (max_workers=1).
2. Objective pairs over the whole of cmmlu_med.jsonl (pure Python throughput).
3. Voting selection (strength + flip/drop) on 100k synthetic pairs vs a numpy argsort reference.

Run:  .venv/bin/python bench/preferences_builders.py
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medstudio.inference.chat import ChatBackend  # noqa: E402
from preferences.pipeline.builders import objective_pair, run_items, subjective_pair  # noqa: E402
from preferences.pipeline.judge import ASPECTS, Usage  # noqa: E402
from preferences.pipeline.voting import preference_strengths, select_by_strength  # noqa: E402
from tests.fakes.openai_server import fake_openai_server  # noqa: E402

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))
LATENCY = 0.05
REPEATS = 3


def load(name):
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def script(req):
    time.sleep(LATENCY)  # a model server's latency; the CPU work per call is tiny
    if "乐于助人的医生" in req["messages"][0]["content"]:  # the generator's system prompt
        return "医生建议：多休息，必要时就医。"
    return json.dumps({a: 4 for a in ASPECTS})


def bench_subjective():
    rows = [{"id": r["id"], "lang": "zh", "question": r["question"], "answer": r["answer"]} for r in load("huatuo26m_test_qa.jsonl")[:40]]
    out = {}
    with fake_openai_server(chat=script) as url:
        gen = ChatBackend(url, "gen", max_retries=0)
        judge = ChatBackend(url, "judge", max_retries=0)
        for workers in (1, 8):
            times = []
            for _ in range(REPEATS):
                usage = Usage()
                t0 = time.perf_counter()
                res = run_items(rows, lambda r: subjective_pair(r, gen, judge, usage), max_workers=workers)
                times.append(time.perf_counter() - t0)
                assert all(isinstance(p, list) for _, p in res), [p for _, p in res if not isinstance(p, list)][:1]
            out[workers] = statistics.median(times)
            print(f"subjective, {len(rows)} records x 3 calls, {LATENCY*1000:.0f} ms/call, workers={workers}: "
                  f"median {out[workers]:.2f}s ({len(rows)/out[workers]:.1f} pairs/s)")
    print(f"  speed-up workers=8 vs sequential reference: {out[1]/out[8]:.1f}x")


def bench_objective():
    rows = load("cmmlu_med.jsonl")
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for r in rows:
            objective_pair(r, seed=0)
        times.append(time.perf_counter() - t0)
    m = statistics.median(times)
    print(f"objective, {len(rows)} cmmlu_med records: median {m*1000:.1f} ms ({len(rows)/m:,.0f} pairs/s)")


def bench_voting():
    import numpy as np

    rng = np.random.default_rng(0)
    k, n = 10, 100_000
    c = rng.normal(1, 1, (k, n)).tolist()
    r = rng.normal(0, 1, (k, n)).tolist()
    ours, ref = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        s = preference_strengths(c, r)
        actions = select_by_strength(s)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sn = (np.asarray(c) - np.asarray(r)).mean(axis=0)
        order = np.argsort(sn, kind="stable")
        ref_flip = set(order[: n // 10].tolist())
        ref.append(time.perf_counter() - t0)
    assert {i for i, a in enumerate(actions) if a == "flip"} == ref_flip
    mo, mr = statistics.median(ours), statistics.median(ref)
    print(f"voting, K={k}, {n:,} pairs: ours median {mo*1000:.0f} ms, numpy reference {mr*1000:.0f} ms "
          f"(ratio {mo/mr:.1f}x; same flipped set)")


if __name__ == "__main__":
    bench_objective()
    bench_voting()
    if "--no-subjective" not in sys.argv:
        bench_subjective()
