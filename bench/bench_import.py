"""Import throughput and memory: MedStudio's streaming import vs a bare json.loads pass.

    .venv/bin/python bench/bench_import.py --sizes 100000 400000
    .venv/bin/python bench/bench_import.py --postgres postgres://postgres@127.0.0.1:5432 --sizes 100000 --runs 3

With --postgres (issue 16, point 6) each run uses a fresh database (medstudio_bench_import) and
measures, in one process: the import job; the search-index job that follows it; the reference
"parse + plain COPY" (read and json.loads the same file, COPY the rows into the same table, which
has its btree indexes and no trigram index); the JSONL and Parquet export jobs; and the references
"one query + writer" (one SELECT of the exported columns, then json.dumps lines / one pyarrow
Parquet write of the same rows; for JSONL also the same with orjson, the export's own encoder). Medians of --runs, ratios within the same run, and `uptime`.

For each size a fresh SQLite database (in a temp dir) imports a generated zh/en document file
through the real import job (one pass: validated and inserted in batches, one transaction); the reference is a bare loop that
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


def pg_child(path: str) -> None:
    """One Postgres run (DATABASE_URL points at a fresh database): every timing as one JSON line."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    import pyarrow as pa
    import pyarrow.parquet as pq

    # A worker has written Parquet before: time both writers warm. pyarrow's first write in a
    # process pays a one-off start (about 0.9 s here, even for a two-row file), which would
    # otherwise land on whichever export runs first.
    pq.write_table(pa.table({"warm": ["up"]}), Path(os.environ["MEDSTUDIO_VAR_DIR"]) / "warm.parquet")

    from medstudio.datasets import search_index
    from medstudio.datasets.models import Dataset, Export, Record
    from medstudio.datasets.services import dataset_create, export_start, import_start
    from medstudio.jobs.models import Job
    from medstudio.jobs.services import job_execute

    out: dict = {}
    # reference: parse + plain COPY into the same table (its btree indexes, no trigram index)
    ref = dataset_create(actor=None, name="reference", kind="document")
    t0 = time.perf_counter()
    now = timezone.now()
    with connection.cursor() as cur, cur.cursor.copy(
            "COPY datasets_record (dataset_id, external_id, lang, source, subset, content, text, text_hash, "
            "n_tokens, created_at) FROM STDIN") as copy, open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            copy.write_row((ref.pk, row["id"], "", row.get("source", ""), "", line, row["text"], "", 0, now))
    out["copy_s"] = time.perf_counter() - t0
    ref.delete()

    job = import_start(user=None, path=path, fmt="jsonl", kind="document", dataset="bench", enqueue=False)
    t0 = time.perf_counter()
    job_execute(job_id=job.pk)
    out["import_s"] = time.perf_counter() - t0
    dataset = Dataset.objects.get(name="bench")
    out["n"] = Record.objects.filter(dataset=dataset).count()
    out["search_state_after_import"] = search_index.state(dataset)
    t0 = time.perf_counter()
    for ij in Job.objects.filter(kind=search_index.JOB_KIND, status="queued"):
        job_execute(job_id=ij.pk)
    out["index_s"] = time.perf_counter() - t0
    out["search_state"] = search_index.state(dataset)

    for fmt in ("jsonl", "parquet"):
        ej = export_start(user=None, dataset=dataset, fmt=fmt, enqueue=False)
        t0 = time.perf_counter()
        job_execute(job_id=ej.pk)
        out[f"export_{fmt}_s"] = time.perf_counter() - t0
        assert Export.objects.get(job_id=ej.pk).n_records == out["n"]
        t0 = time.perf_counter()
        _reference_export(connection, dataset.pk, fmt, Path(os.environ["MEDSTUDIO_VAR_DIR"]) / f"ref.{fmt}")
        out[f"ref_{fmt}_s"] = time.perf_counter() - t0
        if fmt == "jsonl":
            t0 = time.perf_counter()
            _reference_export(connection, dataset.pk, "jsonl-orjson", Path(os.environ["MEDSTUDIO_VAR_DIR"]) / "ref-orjson.jsonl")
            out["ref_jsonl_orjson_s"] = time.perf_counter() - t0
    print(json.dumps(out))


def _reference_export(connection, dataset_id: int, fmt: str, dest: Path) -> None:
    """One query for the exported columns, then the plainest writer of the same rows."""
    with connection.cursor() as cur:
        cur.execute("SELECT external_id, source, lang, content FROM datasets_record WHERE dataset_id = %s "
                    "ORDER BY id", [dataset_id])
        rows = [(ext, source, lang, json.loads(content)) for ext, source, lang, content in cur.fetchall()]
    if fmt == "jsonl":
        with dest.open("w", encoding="utf-8") as fh:
            for ext, source, lang, content in rows:
                fh.write(json.dumps({"id": ext, "source": source, "lang": lang, **content}, ensure_ascii=False) + "\n")
    elif fmt == "jsonl-orjson":  # the same with the export's own encoder: what is left is the export's overhead
        import orjson

        with dest.open("wb") as fh:
            for ext, source, lang, content in rows:
                fh.write(orjson.dumps({"id": ext, "source": source, "lang": lang, **content}) + b"\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        # the same seven columns as the export of a document dataset (title, system and meta are empty here)
        cols = {"id": [r[0] for r in rows], "source": [r[1] for r in rows], "lang": [r[2] for r in rows],
                "title": [r[3].get("title") for r in rows], "text": [r[3].get("text") for r in rows],
                "system": [r[3].get("system") for r in rows],
                "meta": [json.dumps(r[3]["meta"], ensure_ascii=False) if r[3].get("meta") else None for r in rows]}
        pq.write_table(pa.table(cols), dest)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_pg(base_url: str, sizes: list[int], runs: int) -> None:
    from statistics import median

    db_url = base_url.rstrip("/") + "/medstudio_bench_import"
    admin = base_url.rstrip("/") + "/postgres"
    print(uptime())
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            path = tmp / "docs.jsonl"
            make_file(path, n)
            results = []
            for i in range(runs):
                subprocess.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS medstudio_bench_import"], check=True)
                subprocess.run(["psql", admin, "-qc", "CREATE DATABASE medstudio_bench_import"], check=True)
                var = tmp / f"var{i}"
                var.mkdir()
                env = {**os.environ, "MEDSTUDIO_VAR_DIR": str(var), "DATABASE_URL": db_url, "MEDSTUDIO_LOG_LEVEL": "WARNING"}
                proc = subprocess.run([sys.executable, __file__, "--pg-child", str(path)], env=env, cwd=ROOT,
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                assert r["n"] == n, r
                results.append(r)
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in r.items()), flush=True)
            med = {k: median(r[k] for r in results) for k in results[0] if k.endswith("_s")}
            print(f"\n{n:,} documents, medians of {runs} runs ({uptime()})")
            print(f"  import {med['import_s']:.2f} s = {n / med['import_s']:,.0f} records/s; reference parse + plain COPY "
                  f"{med['copy_s']:.2f} s = {n / med['copy_s']:,.0f} records/s; import speed / reference "
                  f"{med['copy_s'] / med['import_s']:.2f}x (target >= 0.5)")
            print(f"  search index build afterwards: {med['index_s']:.2f} s (state right after import: "
                  f"{results[-1]['search_state_after_import']!r}, after the job: {results[-1]['search_state']!r})")
            for fmt in ("jsonl", "parquet"):
                print(f"  export {fmt}: {med[f'export_{fmt}_s']:.2f} s; one query + writer {med[f'ref_{fmt}_s']:.2f} s; "
                      f"ratio {med[f'export_{fmt}_s'] / med[f'ref_{fmt}_s']:.2f}x (target <= 1.2)")
            print(f"  export jsonl against the same query + orjson (the export's encoder): {med['ref_jsonl_orjson_s']:.2f} s; "
                  f"ratio {med['export_jsonl_s'] / med['ref_jsonl_orjson_s']:.2f}x")
            for key, ref in (("import_s", "copy_s"), ("export_jsonl_s", "ref_jsonl_s"), ("export_parquet_s", "ref_parquet_s")):
                ratios = sorted((r[ref] / r[key]) if key == "import_s" else (r[key] / r[ref]) for r in results)
                print(f"  per-run ratios {key.removesuffix('_s')}: {', '.join(f'{x:.2f}' for x in ratios)} "
                      f"(median {median(ratios):.2f})")
            subprocess.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS medstudio_bench_import"], check=True)


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
    ap.add_argument("--postgres", help="base URL of a PostgreSQL server (postgres://user@host:port)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-child")
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.pg_child:
        pg_child(args.pg_child)
        return
    if args.postgres:
        run_pg(args.postgres, args.sizes, args.runs)
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
