"""Worker scaling of corpus scoring on Ray (issue 16): rules + PII over a generated corpus with 1
and then 2 Ray workers; prints documents/s for each and the scaling ratio.

    .venv/bin/python bench/bench_corpus_ray.py --docs 20000 --shards 20

The corpus is generated in a temporary folder by repeating the shared data's general_en/general_zh
paragraphs (MEDSTUDIO_SHARED_DATA), each copy with a new id, as Parquet shards. It runs the Ray job
(curation/pipeline/corpus/ray_job.py) directly on a local Ray head started for the bench (2 CPUs by
default, owned by this process), with no database: the same code path a MedStudio corpus job submits
(one Ray actor per worker, each scoring whole shards). Each worker count writes to its own output
folder, so nothing is skipped. Each run also prints the median seconds a shard took inside its
worker: when that grows with the worker count, the workers are competing for the same cores (other
load on the machine), and the ratio measures the machine, not the job.
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
DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def generate(folder: Path, n_docs: int, n_shards: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = []
    for name in ("general_en.jsonl", "general_zh.jsonl"):
        with open(DATA / name, encoding="utf-8") as fh:
            base.extend(json.loads(line) for line in fh)
    per = n_docs // n_shards
    for s in range(n_shards):
        rows = [base[(s * per + i) % len(base)] for i in range(per)]
        pq.write_table(pa.table({"id": [f"{s}-{i}" for i in range(per)], "text": [r["text"] for r in rows],
                                 "lang": [r["lang"] for r in rows], "source": [r["source"] for r in rows]}),
                       folder / f"part-{s:05d}.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="runs per worker count, interleaved 1,2,1,2,...")
    args = ap.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local only; else a new ray.init() writes ~/.ray/auth_token
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)  # this process's own Ray
    try:
        from curation.pipeline.corpus.ray_job import run

        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            corpus.mkdir()
            generate(corpus, args.docs, args.shards)
            runs: dict[int, list[float]] = {1: [], 2: []}
            print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
            for rep in range(args.repeats):
                for workers in (1, 2):
                    spec = {"uri": str(corpus), "out_dir": f"{tmp}/out-{workers}-{rep}", "mapping": {},
                            "scorers": {"rules": {}, "pii": {}}, "workers": workers}
                    t0 = time.monotonic()
                    res = run(spec)
                    dt = time.monotonic() - t0
                    docs = sum(r["docs"] for r in res["results"])
                    runs[workers].append(docs / dt)
                    per_shard = statistics.median(r["seconds"] for r in res["results"] if r["status"] == "done")
                    print(f"workers={workers} run {rep + 1}: {docs} docs in {dt:.1f} s = {docs / dt:.0f} docs/s "
                          f"(median {per_shard:.1f} s per shard in its worker)", flush=True)
            med = {w: statistics.median(v) for w, v in runs.items()}
            for w in (1, 2):
                print(f"workers={w}: median {med[w]:.0f} docs/s over {len(runs[w])} runs")
            print(f"scaling 2 vs 1 workers (medians): {med[2] / med[1]:.2f}x")
            print(f"uptime: {os.popen('uptime').read().strip()}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
