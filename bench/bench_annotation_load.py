"""Load generator for the labelling screen: N simulated clinicians against a running server on
PostgreSQL. Prints the p50/p95 *server* time of fetching the next item and of submitting a label,
and the number of acknowledged labels that are missing or wrong in the database (must be 0).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/medstudio_bench_annot \
    .venv/bin/python bench/bench_annotation_load.py --clinicians 50 --seconds 60

What it does:
1. creates the database if needed, migrates, imports general_zh.jsonl from the shared data
   (MEDSTUDIO_SHARED_DATA) as documents, and builds a rating queue (2 annotators per item);
2. starts gunicorn (sync workers by default) on a free port with a WSGI wrapper that adds `X-Server-Ms` (time from
   request to response headers inside the server, so client-side queueing on this shared 2-core
   machine is not counted as server time; client round trips are printed too);
3. runs one thread per clinician: GET the next item (HTMX partial), think, POST the answer; 10% of
   submits are sent twice (a double click / a retry after a lost reply), 5% are skipped;
4. compares every label the server acknowledged with the database: lost = acknowledged but
   missing or different; duplicates = more than one label per (item, annotator) or more than N per
   item.
Soak (issue 14): `--import-records 1000000` generates that many documents and imports them with
`manage.py import_records` in a separate process while the clinicians label; the labelling window
lasts until the import ends (at least `--seconds`), and the import's own time and rate are printed.
Reference in the same run: the login page (a template render with no database work) under the
same load, so the ratio shows what the annotation views add on top of Django itself.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRACE = float(os.environ.get("BENCH_TRACE_MS", "0"))  # log requests slower than this
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/medstudio_bench_annot"


def timed_app():
    """gunicorn entry point (`bench_annotation_load:timed_app()`): Django plus a server-time header."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")
    from django.core.wsgi import get_wsgi_application

    from django.db import connection

    app = get_wsgi_application()

    def wrapped(environ, start_response):
        t0, c0 = time.perf_counter(), time.thread_time()
        db = [0.0, 0]
        trace = []

        def timer(execute, sql, params, many, context):
            q0 = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                dt = time.perf_counter() - q0
                db[0] += dt
                db[1] += 1
                if TRACE:
                    trace.append((round(dt * 1000, 1), round((q0 - t0) * 1000, 1), sql[:70]))

        def sr(status, headers, exc_info=None):
            # wall time in the server, this worker's CPU time, and time waiting on PostgreSQL
            headers.append(("X-Server-Ms", f"{(time.perf_counter() - t0) * 1000:.3f}"))
            headers.append(("X-Cpu-Ms", f"{(time.thread_time() - c0) * 1000:.3f}"))
            headers.append(("X-Db-Ms", f"{db[0] * 1000:.3f}"))
            headers.append(("X-Db-Queries", str(db[1])))
            if TRACE and (time.perf_counter() - t0) * 1000 > TRACE:
                with open(f"/tmp/bench_trace.{os.getpid()}", "a") as fh:
                    fh.write(json.dumps({"t": time.time(), "hx": environ.get("HTTP_HX_REQUEST"), "path": environ.get("PATH_INFO"), "ms": (time.perf_counter() - t0) * 1000,
                                         "cpu": (time.thread_time() - c0) * 1000, "q": trace}) + "\n")
            return start_response(status, headers, exc_info)

        with connection.execute_wrapper(timer):
            return app(environ, sr)

    return wrapped


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def ensure_db(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup(n_clinicians: int, per_item: int, n_docs: int) -> dict:
    """Fresh queue + users; returns ids and session cookies (created server-side, no login POSTs)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from medstudio.annotation import services
    from medstudio.datasets.models import Dataset
    from medstudio.datasets.services import import_start
    from medstudio.jobs.services import job_execute

    call_command("migrate", verbosity=0)
    User = get_user_model()
    curator, _ = User.objects.get_or_create(username="bench-curator", defaults={"role": "curator"})
    ds = Dataset.objects.filter(name="bench-general-zh").first()
    if ds is None:
        src = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")) / "general_zh.jsonl"
        tmp = Path(settings.VAR_DIR) / "bench_general_zh.jsonl"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        lines = src.read_text(encoding="utf-8").splitlines()[:n_docs]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        job = import_start(user=curator, path=tmp, fmt="jsonl", kind="document", dataset="bench-general-zh",
                           enqueue=False)
        job_execute(job_id=job.pk)
        ds = Dataset.objects.get(name="bench-general-zh")
    question = services.question_create(user=curator, name="bench quality", kind="rating")
    queue = services.queue_create(user=curator, name=f"bench {time.time():.0f}", dataset=ds, question=question,
                                  annotators_per_item=per_item)
    cookies = []
    for i in range(n_clinicians):
        u, _ = User.objects.get_or_create(username=f"bench-dr{i:02d}", defaults={"role": "clinician"})
        s = SessionStore()
        s[SESSION_KEY] = str(u.pk)
        s[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        s[HASH_SESSION_KEY] = u.get_session_auth_hash()
        s.create()
        cookies.append((u.pk, s.session_key))
    from django.db import connection

    connection.close()
    return {"queue": queue.pk, "items": queue.n_items, "per_item": per_item, "cookies": cookies}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RE_A = re.compile(rb'name="assignment" value="(\d+)"')
RE_R = re.compile(rb'name="revision" value="(\d+)"')
RE_CSRF = re.compile(rb'"X-CSRFToken": "([^"]+)"')


class Clinician(threading.Thread):
    def __init__(self, port, queue_id, session, deadline, think, seed, out, delay=0.0):
        super().__init__(daemon=True)
        self.delay = delay
        self.port, self.queue_id, self.session = port, queue_id, session
        self.deadline, self.think, self.rng, self.out = deadline, think, random.Random(seed), out
        self.csrf = ""
        self.conn = None

    def request(self, method, path, body=None, hx=True):
        headers = {"Cookie": f"sessionid={self.session}; csrftoken={self.csrf}", "Connection": "keep-alive"}
        if hx:
            headers["HX-Request"] = "true"
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["X-CSRFToken"] = self.csrf
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                t0 = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                rt = (time.perf_counter() - t0) * 1000
                for k, v in resp.getheaders():
                    if k.lower() == "set-cookie" and v.startswith("csrftoken="):
                        self.csrf = v.split(";", 1)[0].split("=", 1)[1]
                self.last = {k: float(resp.getheader(h) or "nan") for k, h in
                             (("cpu", "X-Cpu-Ms"), ("db", "X-Db-Ms"), ("queries", "X-Db-Queries"))}
                return resp.status, data, float(resp.getheader("X-Server-Ms") or "nan"), rt
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")

    def run(self):
        from urllib.parse import urlencode

        base = f"/annotate/q/{self.queue_id}/"
        o = self.out
        time.sleep(self.delay)  # ramp-up: clinicians arrive over --ramp seconds, as a shift starts
        try:
            st, data, _, _ = self.request("GET", base, hx=False)  # full page once: CSRF token
            m = RE_CSRF.search(data)
            self.csrf = m.group(1).decode() if m else self.csrf
            while time.time() < self.deadline:
                st, data, sms, rt = self.request("GET", base)
                o["next_server"].append(sms)
                o["next_rt"].append(rt)
                o["next_cpu"].append(self.last["cpu"])
                o["next_db"].append(self.last["db"])
                o["next_q"].append(self.last["queries"])
                a, r = RE_A.search(data), RE_R.search(data)
                if st != 200:
                    o["errors"].append(f"next {st}")
                    break
                if a is None:
                    break  # nothing left for this clinician
                time.sleep(self.rng.uniform(*self.think))
                aid, rev = int(a.group(1)), int(r.group(1))
                if self.rng.random() < 0.05:
                    st, data, sms, rt = self.request("POST", base + "skip/", urlencode({"assignment": aid, "revision": rev}))
                    o["skips"] += 1
                    continue
                score = self.rng.randint(0, 5)
                body = urlencode({"assignment": aid, "revision": rev, "score": score, "duration_ms": 1000})
                st, data, sms, rt = self.request("POST", base + "submit/", body)
                o["submit_server"].append(sms)
                o["submit_rt"].append(rt)
                o["submit_cpu"].append(self.last["cpu"])
                o["submit_db"].append(self.last["db"])
                o["submit_q"].append(self.last["queries"])
                if st == 200 and (b"Saved." in data or b"Already saved" in data):
                    o["acked"][aid] = score
                else:
                    o["errors"].append(f"submit {st}")
                if self.rng.random() < 0.10:  # the same POST again (double click / retry)
                    st, data, sms, rt = self.request("POST", base + "submit/", body)
                    o["submit_server"].append(sms)
                    o["submit_rt"].append(rt)
                    o["resubmits"] += 1
                    if not (st == 200 and b"Already saved" in data):
                        o["errors"].append(f"resubmit {st} {data[:80]!r}")
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            o["errors"].append(f"{type(exc).__name__}: {exc}")


def reference_load(port, cookies, seconds, n_threads):
    """The login page under the same concurrency: Django's own floor on this machine."""
    out = []
    stop = time.time() + seconds

    def loop():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.time() < stop:
            conn.request("GET", "/accounts/login/")
            resp = conn.getresponse()
            resp.read()
            out.append(float(resp.getheader("X-Server-Ms") or "nan"))
            time.sleep(random.uniform(0.2, 0.6))

    ts = [threading.Thread(target=loop, daemon=True) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def check_db(info, acked) -> dict:
    from collections import Counter

    from django.db import connection

    from medstudio.annotation.models import Label

    connection.close()
    labels = {a: v for a, v in Label.objects.filter(queue_id=info["queue"]).values_list("assignment_id", "values")}
    lost = sum(1 for aid, score in acked.items() if labels.get(aid, {}).get("score") != score)
    per_pair = Counter(Label.objects.filter(queue_id=info["queue"]).values_list("item_id", "annotator"))
    per_item = Counter(Label.objects.filter(queue_id=info["queue"]).values_list("item_id", flat=True))
    dup = sum(1 for c in per_pair.values() if c > 1) + sum(1 for c in per_item.values() if c > info["per_item"])
    return {"labels_in_db": len(labels), "acknowledged": len(acked), "lost": lost, "duplicates": dup}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clinicians", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think", type=float, nargs=2, default=(0.2, 0.8), help="seconds between seeing and submitting")
    ap.add_argument("--per-item", type=int, default=2)
    ap.add_argument("--docs", type=int, default=1147)
    # sync workers: one request at a time per process, so "server time" is the time a request is
    # worked on, not time spent waiting for the GIL behind other threads of the same worker.
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8, help="gthread only")
    ap.add_argument("--reference-seconds", type=float, default=15)
    ap.add_argument("--ramp", type=float, default=5.0,
                    help="seconds over which the clinicians start (locust's spawn rate); 0 = all at once")
    ap.add_argument("--import-records", type=int, default=0,
                    help="soak: import this many generated documents while the clinicians label")
    ap.add_argument("--target-ms", type=float, default=50, help="p95 target for next and submit (server time)")
    ap.add_argument("--cache-url", default="redis://127.0.0.1:6379/13",
                    help="MEDSTUDIO_CACHE_URL for the server (sessions cached in Redis); '' = database sessions")
    args = ap.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    if args.cache_url:
        os.environ["MEDSTUDIO_CACHE_URL"] = args.cache_url
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        sys.exit("This benchmark is for PostgreSQL: set DATABASE_URL=postgres://...")
    ensure_db(os.environ["DATABASE_URL"])
    # The machine may be shared: the load average is printed so figures can be read in context.
    load_before = os.getloadavg()[0]
    info = setup(args.clinicians, args.per_item, args.docs)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "bench_annotation_load:timed_app()", "-b", f"127.0.0.1:{port}",
         "-k", args.worker_class, "-w", str(args.workers), "--threads", str(args.threads), "--backlog", "512",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        # Warm every worker (imports, URL resolver, template cache) before measuring anything.
        for _ in range(4 * args.workers):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/accounts/login/")
            conn.getresponse().read()
            conn.close()
        ref = reference_load(port, info["cookies"], args.reference_seconds, args.clinicians)
        out = {f"{a}_{b}": [] for a in ("next", "submit") for b in ("server", "rt", "cpu", "db", "q")}
        out.update({"acked": {}, "errors": [], "skips": 0, "resubmits": 0})
        importer = None
        if args.import_records:
            sys.path.insert(0, str(ROOT / "bench"))
            from bench_import import make_file

            soak_file = ROOT / "var" / f"bench_soak_{args.import_records}.jsonl"
            soak_file.parent.mkdir(parents=True, exist_ok=True)
            if not soak_file.exists():
                make_file(soak_file, args.import_records)
            soak_name = f"bench-soak-{time.time():.0f}"
            imp_t0 = time.time()
            importer = subprocess.Popen([sys.executable, "manage.py", "import_records", str(soak_file), "--dataset",
                                         soak_name, "--kind", "document"], cwd=ROOT, env=os.environ.copy(),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # the clinicians label for as long as the import runs: the deadline moves with it
            out_deadline = [time.time() + args.seconds]
        deadline = time.time() + args.seconds if importer is None else float("inf")
        t0 = time.time()
        n = len(info["cookies"])
        threads = [Clinician(port, info["queue"], sess, deadline, args.think, i, out, delay=args.ramp * i / n)
                   for i, (_, sess) in enumerate(info["cookies"])]
        for t in threads:
            t.start()
        if importer is not None:
            imp_log = importer.communicate()[0]
            imp_wall = time.time() - imp_t0
            time.sleep(max(0.0, out_deadline[0] - time.time()))
            for t in threads:
                t.deadline = time.time()
        for t in threads:
            t.join()
        wall = time.time() - t0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    db = check_db(info, out["acked"])
    n_req = len(out["next_server"]) + len(out["submit_server"])
    print(f"clinicians={args.clinicians} seconds={wall:.1f} items={info['items']} per_item={info['per_item']} "
          f"ramp={args.ramp:g}s gunicorn {args.worker_class} workers={args.workers} cpu_count={os.cpu_count()} "
          f"sessions={'redis+db' if args.cache_url else 'db'} "
          f"loadavg(1m) before={load_before:.1f} after={os.getloadavg()[0]:.1f}")
    print(f"requests={n_req} ({n_req / wall:.1f}/s) submits={len(out['submit_server'])} resubmits={out['resubmits']} "
          f"skips={out['skips']} errors={len(out['errors'])}")
    for name in ("next", "submit"):
        s, r = out[f"{name}_server"], out[f"{name}_rt"]
        print(f"{name:>6}: server p50={pct(s, 50):.1f} ms p95={pct(s, 95):.1f} ms max={max(s or [0]):.1f} ms | "
              f"round trip p50={pct(r, 50):.1f} ms p95={pct(r, 95):.1f} ms (n={len(s)})")
        print(f"{'':>8}in server: worker CPU p50={pct(out[f'{name}_cpu'], 50):.1f} ms p95={pct(out[f'{name}_cpu'], 95):.1f} ms"
              f" | waiting on PostgreSQL p50={pct(out[f'{name}_db'], 50):.1f} ms p95={pct(out[f'{name}_db'], 95):.1f} ms"
              f" | queries p50={pct(out[f'{name}_q'], 50):.0f}")
    print(f"reference (login page, no DB): server p50={pct(ref, 50):.1f} ms p95={pct(ref, 95):.1f} ms (n={len(ref)})")
    if ref:
        print(f"ratio p50 next/reference={pct(out['next_server'], 50) / pct(ref, 50):.2f} "
              f"submit/reference={pct(out['submit_server'], 50) / pct(ref, 50):.2f}")
    print(f"labels in db={db['labels_in_db']} acknowledged={db['acknowledged']} LOST={db['lost']} "
          f"DUPLICATES={db['duplicates']}")
    if out["errors"]:
        print("first errors:", json.dumps(out["errors"][:5], ensure_ascii=False))
    if importer is not None:
        from medstudio.datasets.models import Dataset

        got = Dataset.objects.filter(name=soak_name).values_list("n_records", flat=True).first() or 0
        from django.conf import settings as dj_settings

        print(f"soak import at niceness {dj_settings.JOB_NICE} (MEDSTUDIO_JOB_NICE; the web workers at 0): "
              f"{got}/{args.import_records} records in {imp_wall:.1f} s "
              f"({got / imp_wall:.0f} records/s), exit={importer.returncode}; last line: "
              f"{(imp_log.strip().splitlines() or [''])[-1][:200]}")
    verdict = pct(out["next_server"], 95) < args.target_ms and pct(out["submit_server"], 95) < args.target_ms
    print(f"target p95 < {args.target_ms:g} ms: {'met' if verdict else 'NOT met'}; lost labels: {db['lost']}")


if __name__ == "__main__":
    main()
