"""Embedded broker: put + get of N messages through kombu's filesystem transport, stock vs the
atomic-write subclass (medstudio/jobs/broker.py). Prints medians of 3 runs and the ratio.

    .venv/bin/python bench/bench_broker.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")


def run(transport, n: int) -> float:
    from kombu import Connection

    t = pathlib.Path(tempfile.mkdtemp())
    (t / "queue").mkdir()
    (t / "control").mkdir()
    opts = {"data_folder_in": str(t / "queue"), "data_folder_out": str(t / "queue"), "control_folder": str(t / "control"),
            "store_processed": False}
    with Connection("filesystem://", transport=transport, transport_options=opts) as c:
        q = c.SimpleQueue(f"bench-{t.name}")
        start = time.perf_counter()
        for i in range(n):
            q.put({"job": i})
        for _ in range(n):
            q.get(timeout=5).ack()
        return time.perf_counter() - start


def main() -> None:
    import django

    django.setup()
    from kombu.transport import filesystem

    from medstudio.jobs import broker

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    res = {}
    for name, tr in (("stock", filesystem.Transport), ("atomic", broker.Transport)):
        times = [run(tr, n) for _ in range(3)]
        res[name] = statistics.median(times)
        print(f"{name:7s} {n} put+get: median {res[name]:.3f} s ({n / res[name]:,.0f} msg/s) runs {[round(x, 3) for x in times]}")
    print(f"atomic / stock time: {res['atomic'] / res['stock']:.2f}x")


if __name__ == "__main__":
    main()
