"""Threshold studio on a corpus: kept-counts for 5 conditions over N documents' score files.

    .venv/bin/python bench/bench_corpus_studio.py --docs 10000000 --shards 20 --runs 5

Generates score files shaped like the corpus scorers' output (doc_id, shard, lang, source, n_chars,
rules/pii values and keeps) once under bench/out/, then times `studio.counts` (DuckDB, grouped by
language and source) with 5 conditions. Reference in the same run: one pyarrow.dataset scan of the
same columns with the same filter and no grouping, the least a count can cost from these files.
Prints medians of --runs and the ratio; target p50 < 1 s at 10M documents.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.pipeline.corpus.studio import Condition, counts  # noqa: E402

CONDS = [Condition("rules_value", ">=", 0.3), Condition("pii_value", "<=", 1.0), Condition("rules_keep", "==", True),
         Condition("n_chars", ">", 100), Condition("pii_keep", "==", True)]


def make(out: Path, docs: int, shards: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per = docs // shards
    rng = np.random.default_rng(0)
    for s in range(shards):
        path = out / f"part-{s:04d}.scores.parquet"
        if path.exists():
            continue
        n = per
        t = pa.table({
            "doc_id": pa.array([f"{s}-{i}" for i in range(n)]),
            "shard": pa.array([f"part-{s:04d}"] * n).dictionary_encode(),
            "lang": pa.array(np.where(rng.random(n) < 0.3, "zh", "en")).dictionary_encode(),
            "source": pa.array(rng.choice(["web", "book", "forum", "paper"], n)).dictionary_encode(),
            "n_chars": rng.integers(10, 5000, n),
            "rules_value": rng.random(n), "rules_keep": rng.random(n) > 0.2,
            "pii_value": rng.integers(0, 4, n).astype(float), "pii_keep": rng.random(n) > 0.1,
            "keep": np.ones(n, dtype=bool), "reason": pa.array([""] * n),
        })
        pq.write_table(t, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)


def reference(out: Path) -> int:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = ds.dataset(str(out), format="parquet")
    f = ((pc.field("rules_value") >= 0.3) & (pc.field("pii_value") <= 1.0) & (pc.field("rules_keep") == True)  # noqa: E712
         & (pc.field("n_chars") > 100) & (pc.field("pii_keep") == True))  # noqa: E712
    return d.count_rows(filter=f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    out = ROOT / "bench" / "out" / f"studio_{args.docs}_{args.shards}"
    t0 = time.perf_counter()
    make(out, args.docs, args.shards)
    print(f"score files: {out} ({time.perf_counter() - t0:.1f} s to make or find); uptime: {os.popen('uptime').read().strip()}")
    studio_t, ref_t = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        res = counts(str(out), CONDS)
        studio_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        n_ref = reference(out)
        ref_t.append(time.perf_counter() - t)
        assert res["kept"] == n_ref, (res["kept"], n_ref)
    ms, mr = statistics.median(studio_t), statistics.median(ref_t)
    print(f"docs={res['docs']} kept={res['kept']} groups={len(res['by'])}")
    print(f"studio.counts (DuckDB, grouped): median {ms:.3f} s  runs {[round(x, 3) for x in studio_t]}")
    print(f"reference (pyarrow count_rows, same filter, no grouping): median {mr:.3f} s  runs {[round(x, 3) for x in ref_t]}")
    print(f"ratio studio/reference: {ms / mr:.2f}x; target p50 < 1 s: {'met' if ms < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
