"""Corpus-scale MinHash (issue 16, point 4): the staged dedup on Ray against the single-machine
path on the same generated corpus: the same clusters and the same dropped documents, and the peak
memory of each Ray worker as the corpus grows.

    .venv/bin/python bench/bench_corpus_dedup.py --docs 250000 1000000

The in-memory path runs only up to --single-max documents (default 250,000; it held 1.0 GB there
and 3.8 GB at 1M, so `--single-max 1000000` compares both at the issue's size).

For each size, in child processes (so that each peak RSS is that process's own):
1. generate: documents of 3-6 sentences drawn at random from the shared data's general_en /
   general_zh paragraphs, in three sources, with 2% planted near-copies (a few characters changed)
   of an earlier document, in the same source or another; Parquet shards of 10,000 documents;
2. single machine: curation.pipeline.minhash.find_near_duplicates over all texts in memory
   (estimate verification and policy "first", as the staged job), its peak RSS and time;
3. on Ray: curation.pipeline.corpus.dedup.run_dedup on a local Ray with --cpus CPUs started by
   the child, with the default partitions (one per 50,000 documents). A thread samples VmHWM
   (peak RSS) of every Ray worker process from /proc every 0.2 s; the driver's own peak is printed
   too. Then both results are compared: dropped ids, and clusters as sets of ids.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARD = 10_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(folder: Path, n_docs: int, seed: int = 11) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sentences = {"en": [], "zh": []}
    for name, lang in (("general_en.jsonl", "en"), ("general_zh.jsonl", "zh")):
        with open(DATA / name, encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line)["text"]
                sentences[lang] += [s.strip() for s in re.split(r"(?<=[.!?。！？])\s*", text) if len(s.strip()) > 15]
    rnd = random.Random(seed)
    sources = ("web", "forum", "books")
    docs: list[dict] = []
    n_shard = 0

    def flush() -> None:
        nonlocal docs, n_shard
        pq.write_table(pa.table({k: [d[k] for d in docs] for k in ("id", "text", "lang", "source")}),
                       folder / f"part-{n_shard:05d}.parquet")
        n_shard += 1
        docs = []

    recent: list[tuple[str, str]] = []  # (text, lang) of earlier documents to copy from
    for i in range(n_docs):
        if recent and rnd.random() < 0.02:
            text, lang = rnd.choice(recent)
            chars = list(text)
            for _ in range(max(1, len(chars) // 200)):
                chars[rnd.randrange(len(chars))] = "x" if lang == "en" else "的"
            text = "".join(chars)
        else:
            lang = "en" if rnd.random() < 0.5 else "zh"
            text = (" " if lang == "en" else "").join(rnd.choice(sentences[lang]) for _ in range(rnd.randint(3, 6)))
            if rnd.random() < 0.05:
                recent.append((text, lang))
                if len(recent) > 2000:
                    recent.pop(rnd.randrange(len(recent)))
        docs.append({"id": f"d{i}", "text": text, "lang": lang, "source": rnd.choice(sources)})
        if len(docs) == SHARD:
            flush()
    if docs:
        flush()


def _corpus_order(folder: Path):
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.dedup import plan_shards

    for sh in plan_shards(str(folder)):  # the order the staged job numbers documents in
        t = pq.read_table(sh["path"], columns=["id", "text", "source"])
        yield t.column("id").to_pylist(), t.column("text").to_pylist(), t.column("source").to_pylist()


def single(folder: Path, out: Path) -> None:
    from curation.pipeline.minhash import MinHashConfig, find_near_duplicates

    ids, texts, sources = [], [], []
    for i, t, s in _corpus_order(folder):
        ids += i
        texts += t
        sources += s
    t0 = time.monotonic()
    res = find_near_duplicates(texts, MinHashConfig(verify="estimate"), sources=sources, policy="first")
    dt = time.monotonic() - t0
    clusters = sorted(sorted(ids[i] for i in m) for m in res.clusters().values() if len(m) > 1)
    out.write_text(json.dumps({"seconds": dt, "peak_rss_mb": _peak_mb(), "dropped": sorted(ids[i] for i in res.dropped()),
                               "clusters": clusters}))


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _descends_from(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        pid = _parent(pid)
    return False


def _worker_pids() -> list[int]:
    """This process's Ray workers (its local Ray's raylet is its child), not another session's."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:
                continue
            if (cmd.startswith(b"ray::") or b"default_worker.py" in cmd) and _descends_from(int(d), os.getpid()):
                pids.append(int(d))  # Ray renames its workers "ray::<task>"
    return pids


def _mem_mb(pid: int) -> tuple[float, float] | None:
    """(VmHWM, RssAnon) in MB. VmHWM, the kernel's peak RSS, also counts the pages of Ray's shared
    object store that the worker touched (writing a task's result, reading an argument); RssAnon
    is the worker's private memory now, sampled, so its maximum is the private peak."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None


def on_ray(folder: Path, out_dir: Path, cpus: int, out: Path) -> None:
    import pyarrow.parquet as pq
    import ray

    from curation.pipeline.corpus.dedup import DedupSpec, plan_shards, run_dedup

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    peaks: dict[int, float] = {}
    private: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in _worker_pids():
                mb = _mem_mb(pid)
                if mb is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), mb[0])
                    private[pid] = max(private.get(pid, 0.0), mb[1])
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        res = run_dedup(DedupSpec(uri=str(folder), out_dir=str(out_dir), mapping={}), log=lambda *_: None)
        rounds = res.get("verify_rounds", {})
    finally:
        stop.set()
        th.join()
        ray.shutdown()
    dropped, clusters = [], {}
    for sh in plan_shards(str(folder)):
        for r in pq.read_table(out_dir / "_dedup" / f"{sh['key']}.dedup.parquet", columns=["id", "keep", "cluster"]).to_pylist():
            if not r["keep"]:
                dropped.append(r["id"])
            if r["cluster"]:
                clusters.setdefault(r["cluster"], []).append(r["id"])
    out.write_text(json.dumps({"seconds": res["seconds"], "partitions": res["partitions"], "verify_rounds": rounds, "driver_peak_rss_mb": _peak_mb(),
                               "worker_peak_rss_mb": sorted(peaks.values()),
                               "worker_private_mb": sorted(private.values()), "dropped": sorted(dropped),
                               "clusters": sorted(sorted(m) for m in clusters.values() if len(m) > 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--single-max", type=int, default=250_000,
                    help="run the in-memory path only up to this many documents (it held 1.0 GB at 250,000, 3.8 GB at 1M)")
    ap.add_argument("--role", choices=("gen", "single", "ray"))
    ap.add_argument("--folder")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.role == "gen":
        return generate(Path(args.folder), args.docs[0])
    if args.role == "single":
        return single(Path(args.folder), Path(args.out))
    if args.role == "ray":
        return on_ray(Path(args.folder), Path(args.out).with_suffix(".d"), args.cpus, Path(args.out))
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    for n in args.docs:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "corpus"
            folder.mkdir()
            me = [sys.executable, __file__]
            subprocess.run(me + ["--role", "gen", "--docs", str(n), "--folder", str(folder)], check=True)
            a, b = Path(tmp) / "single.json", Path(tmp) / "ray.json"
            if n <= args.single_max:
                subprocess.run(me + ["--role", "single", "--folder", str(folder), "--out", str(a)], check=True)
            subprocess.run(me + ["--role", "ray", "--cpus", str(args.cpus), "--folder", str(folder), "--out", str(b)],
                           check=True)
            r = json.loads(b.read_text())
            w = r["worker_peak_rss_mb"]
            if n > args.single_max:
                print(f"{n:,} documents: on Ray ({args.cpus} CPUs, {r['partitions']} partitions) {r['seconds']:.1f} s, "
                      f"worker peak RSS max {max(w or [0]):.0f} MB (private {max(r['worker_private_mb'] or [0]):.0f} MB) "
                      f"over {len(w)} worker(s), driver "
                      f"{r['driver_peak_rss_mb']:.0f} MB | dropped {len(r['dropped'])}, clusters {len(r['clusters'])} "
                      f"(the in-memory path not run above --single-max); verification rounds {r['verify_rounds']}", flush=True)
                continue
            s = json.loads(a.read_text())
            same_drop = s["dropped"] == r["dropped"]
            same_clusters = s["clusters"] == r["clusters"]
            print(f"{n:,} documents in {n // SHARD + (n % SHARD > 0)} shards: "
                  f"single machine {s['seconds']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB | "
                  f"on Ray ({args.cpus} CPUs, {r['partitions']} partitions) {r['seconds']:.1f} s, "
                  f"worker peak RSS max {max(w or [0]):.0f} MB (private {max(r['worker_private_mb'] or [0]):.0f} MB) over "
                  f"{len(w)} worker(s), driver {r['driver_peak_rss_mb']:.0f} MB | "
                  f"dropped {len(s['dropped'])} vs {len(r['dropped'])}, clusters {len(s['clusters'])} vs {len(r['clusters'])}: "
                  f"{'same dropped ids' if same_drop else 'DROPPED IDS DIFFER'}, "
                  f"{'same clusters' if same_clusters else 'CLUSTERS DIFFER'}", flush=True)
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
