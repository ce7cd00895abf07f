"""Import throughput and memory: MedStudio's streaming import vs a bare json.loads pass.

    .venv/bin/python bench/bench_import.py --sizes 100000 400000

For each size a fresh SQLite database (in a temp dir) imports a generated zh/en document file
through the real import job (validation pass + batched inserts); the reference is a bare loop that
only reads and json-parses the same file. Peak RSS per child process shows whether memory stays
bounded as the file grows.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_file(path: Path, n: int) -> None:
    rnd = random.Random(0)
    zh = "患者主诉头痛三天伴恶心呕吐既往高血压病史血压控制不佳建议完善头颅检查"
    en = "patient reports headache for three days with nausea history of hypertension poorly controlled".split()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i % 2:
                text = "".join(rnd.choice(zh) for _ in range(rnd.randint(80, 400)))
            else:
                text = " ".join(rnd.choice(en) for _ in range(rnd.randint(60, 300)))
            fh.write(json.dumps({"id": f"d{i}", "text": text, "source": "bench"}, ensure_ascii=False) + "\n")


def child(mode: str, path: str) -> None:
    t0 = time.perf_counter()
    if mode == "bare":
        n = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                json.loads(line)
                n += 1
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from medstudio.datasets.models import Record
        from medstudio.datasets.services import import_start
        from medstudio.jobs.services import job_execute

        job = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="bench", enqueue=False)
        job_execute(job_id=job.pk)
        n = Record.objects.count()
    dt = time.perf_counter() - t0
    print(json.dumps({"n": n, "seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(mode: str, path: Path, var: Path) -> dict:
    env = {**os.environ, "MEDSTUDIO_VAR_DIR": str(var), "DATABASE_URL": f"sqlite:///{var}/bench.sqlite3",
           "MEDSTUDIO_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[50000, 200000])
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"{'records':>9} {'import s':>9} {'rec/s':>9} {'bare s':>8} {'import/bare':>11} {'peak RSS MB':>12}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            path = tmp / "docs.jsonl"
            make_file(path, n)
            bare = run_child("bare", path, tmp)
            imp = run_child("import", path, tmp)
            assert imp["n"] == n, imp
            print(f"{n:>9} {imp['seconds']:>9.1f} {n / imp['seconds']:>9.0f} {bare['seconds']:>8.2f} "
                  f"{imp['seconds'] / bare['seconds']:>11.1f} {imp['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
