"""Rule filters: throughput (docs/s) on the shared data, and bounded memory while streaming
--docs generated documents (default 1,000,000) through the rules scorer in batches.

Part 1 times the shipped RulesScorer on each shared-data file (median of --repeat) and, as a
reference in the same run, the same scorer with the PII and toxic rules disabled (what the
text-statistics rules alone cost). Part 2 streams generated documents (spliced shared-data
fragments, some made repetitive, toxic, PII-bearing or symbol-heavy) through the scorer, keeping only
counters, and prints peak RSS at checkpoints: a flat line means memory does not grow with the
corpus.

    .venv/bin/python bench/bench_rules.py [--docs 1000000] [--repeat 3] [--skip-stream]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.pipeline.base import RecordView, chunked  # noqa: E402
from curation.pipeline.rules import RuleConfig, RulesScorer  # noqa: E402
from medstudio.datasets.convert import text_fields  # noqa: E402

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))
FILES = [("general_en.jsonl", "document"), ("general_zh.jsonl", "document"), ("huatuo26m_test_qa.jsonl", "qa"),
         ("zh_med_qa_toyhom.jsonl", "qa"), ("cmtmedqa_multiturn.jsonl", "dialogue"), ("cmmlu_med.jsonl", "mcq"),
         ("pubmedqa.jsonl", "mcq"), ("hh_rlhf_harmless_pairs.jsonl", "pair")]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def views(name, kind):
    out = []
    with open(DATA / name, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            r = json.loads(line)
            out.append(RecordView(i, kind, r.get("lang", ""), "\n".join(text_fields(kind, r)), r))
    return out


def throughput(repeat: int) -> None:
    full = RulesScorer()
    stats_only = RulesScorer(RuleConfig(disabled=("pii", "toxic")))
    print("docs/s per core (CPU time, median of --repeat)")
    print(f"{'file':32} {'docs':>6} {'rules docs/s':>13} {'no pii/toxic':>13}  drops by first reason")
    total_n = total_t = 0.0
    for name, kind in FILES:
        recs = views(name, kind)
        # CPU seconds of this (single-threaded) process: per-core cost, unaffected by other jobs
        times = []
        for _ in range(repeat):
            t0 = time.process_time()
            res = full.score_batch(recs)
            times.append(time.process_time() - t0)
        t_full = statistics.median(times)
        t0 = time.process_time()
        stats_only.score_batch(recs)
        t_stats = time.process_time() - t0
        total_n += len(recs)
        total_t += t_full
        drops = Counter(r.reason for r in res if not r.keep)
        print(f"{name:32} {len(recs):6d} {len(recs) / t_full:13.0f} {len(recs) / t_stats:13.0f}  "
              f"{sum(drops.values())} dropped: {dict(drops.most_common(4))}")
    print(f"{'all shared data':32} {int(total_n):6d} {total_n / total_t:13.0f}")


def generated(n: int, seed: int = 3):
    """Stream n synthetic documents; nothing is kept, so memory must stay flat."""
    rng = random.Random(seed)
    frags = []
    for name, kind in FILES[:5]:
        with open(DATA / name, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                frags.extend(t[:400] for t in text_fields(kind, r) if len(t) > 40)
    extras = [" 联系电话13812345678。", " 你这个傻逼。", " ☆★☆★♪♪♪■■■◆◆◆", " Click here to subscribe. " * 6, ""]
    for i in range(n):
        text = "\n".join(rng.choice(frags) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.1:
            text += rng.choice(extras)
        yield RecordView(i, "document", "", text)


def stream(n: int, batch: int = 1000) -> None:
    scorer = RulesScorer()
    kept = 0
    reasons: Counter = Counter()
    checkpoints = sorted({min(n, c) for c in [10_000, 25_000] + list(range(50_000, n + 1, 50_000)) + [n]})
    start_rss = rss_mb()
    print(f"\nstreaming {n} generated documents in batches of {batch}; RSS before: {start_rss:.0f} MB")
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    for recs in chunked(generated(n), batch):
        for r in scorer.score_batch(recs):
            kept += bool(r.keep)
            if not r.keep:
                reasons[r.reason] += 1
        done += len(recs)
        if checkpoints and done >= checkpoints[0]:
            checkpoints.pop(0)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            print(f"  {done:9d} docs  {done / dc:7.0f} docs/s per core ({done / dt:7.0f} wall)  peak RSS {rss_mb():6.0f} MB",
                  flush=True)
    print(f"kept {kept} of {n}; drops: {dict(reasons.most_common(6))}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    if not args.skip_throughput:
        throughput(args.repeat)
    if not args.skip_stream:
        stream(args.docs)


if __name__ == "__main__":
    main()
