"""Threshold-change latency at 1M records x 5 scores on PostgreSQL (issue 5, item 7).

    .venv/bin/python bench/bench_thresholds.py [--records 1000000] [--steps 200] [--rebuild]

Creates (once) the database medstudio_bench on postgres://postgres@127.0.0.1:5432/ (override with
BENCH_DATABASE_URL), migrates it, loads N records and 5 scorer runs with COPY (4 value scorers and
one rule filter with keep/reason), builds the score matrix, then measures:

  1. slider steps  - one side of one bound moves by 0.5-3% of its range, as a curator dragging a
                     slider does; answered incrementally (cached counts + the band read by index);
  2. full recounts - a new set of conditions with no usable previous answer (cache cleared);
  3. the same slider steps through the HTTP view (/studio/counts/, template and SVG included);
  4. the reference - the same counts straight from the Score table (one EXISTS per condition),
                     i.e. what the page would cost without the matrix.
Every 10th slider answer is checked against a full recount. Prints medians, p95 and ratios.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/medstudio_bench")
os.environ["DATABASE_URL"] = DB_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "medstudio.settings")

SCORERS = {  # name: (lo, hi) of the value the bench draws
    "b_rater": (0.0, 5.0),
    "b_deita": (1.0, 36.0),
    "b_confilter": (0.3, 1.6),
    "b_ppl": (1.0, 60.0),
}
SOURCES = ["huatuo", "toyhom", "cmtmedqa", "pubmed", "wiki_en", "wiki_zh", "cmrc", "xquad"]


def ensure_database() -> None:
    import psycopg

    base, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def load(n: int) -> int:
    """COPY n records and 5 scorer runs; returns the dataset id."""
    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from medstudio.handoffs.models import ScorerRun
    from medstudio.datasets.models import Dataset

    rng = np.random.default_rng(0)
    ds = Dataset.objects.create(name="bench-1m", kind="document", n_records=n)
    now = timezone.now().isoformat()
    lang = np.where(rng.random(n) < 0.4, "zh", "en")
    src = rng.integers(0, len(SOURCES), n)
    ntok = rng.integers(50, 2000, n)
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        with cur.connection.cursor().copy(
            "COPY datasets_record (dataset_id, external_id, lang, source, subset, content, text, text_hash, n_tokens, created_at) FROM STDIN"
        ) as cp:
            for i in range(n):
                cp.write_row((ds.pk, f"r{i}", lang[i], SOURCES[src[i]], "", '{"text": "bench"}', "bench record text",
                              f"{i:064x}", int(ntok[i]), now))
    print(f"COPY {n:,} records: {time.perf_counter() - t0:.1f} s")
    first_id = Dataset.objects.get(pk=ds.pk).records.order_by("id").values_list("id", flat=True).first()
    ids = np.arange(first_id, first_id + n)
    runs = {}
    for name in [*SCORERS, "b_rules"]:
        runs[name] = ScorerRun.objects.create(dataset=ds, scorer=name, version="1", status="succeeded", finished_at=timezone.now())
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        with cur.connection.cursor().copy("COPY curation_score (run_id, record_id, value, keep, reason, detail) FROM STDIN") as cp:
            for name, (lo, hi) in SCORERS.items():
                vals = lo + (hi - lo) * rng.beta(2.0, 2.0, n)
                unscored = rng.random(n) < 0.01  # a few records the scorer could not score
                rid = runs[name].pk
                for i in range(n):
                    cp.write_row((rid, int(ids[i]), None if unscored[i] else float(vals[i]), None, "", "{}"))
            reasons = rng.random(n)
            rid = runs["b_rules"].pk
            for i in range(n):
                r = reasons[i]
                drop = "too_short" if r < 0.05 else ("special_chars" if r < 0.08 else ("pii" if r < 0.10 else ""))
                cp.write_row((rid, int(ids[i]), float(ntok[i]), not drop, drop, "{}"))
    print(f"COPY {5 * n:,} scores: {time.perf_counter() - t0:.1f} s")
    with connection.cursor() as cur:
        cur.execute("ANALYZE datasets_record; ANALYZE curation_score;")
    return ds.pk


def reference_counts(ds_id: int, spec, runs: dict[str, int]) -> tuple[int, int]:
    """Counts straight from the Score table: one EXISTS (index probe) per condition."""
    from django.db import connection

    where, params = ["r.dataset_id = %s"], [ds_id]
    for b in spec.bounds:
        cond = ["s.run_id = %s", "s.record_id = r.id", "s.value IS NOT NULL"]
        params.append(runs[b.scorer])
        if b.min is not None:
            cond.append("s.value >= %s")
            params.append(b.min)
        if b.max is not None:
            cond.append("s.value <= %s")
            params.append(b.max)
        where.append(f"EXISTS (SELECT 1 FROM curation_score s WHERE {' AND '.join(cond)})")
    for f in spec.flags:
        where.append("NOT EXISTS (SELECT 1 FROM curation_score s WHERE s.run_id = %s AND s.record_id = r.id AND s.keep = false)")
        params.append(runs[f])
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*), coalesce(sum(r.n_tokens), 0) FROM datasets_record r WHERE {' AND '.join(where)}", params)
        return cur.fetchone()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--full", type=int, default=30)
    ap.add_argument("--reference", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="reload records and scores")
    ap.add_argument("--rebuild-matrix", action="store_true", help="drop and rebuild the score matrix (timed)")
    args = ap.parse_args()

    ensure_database()
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection

    from curation.studio.models import MatrixSlot
    from curation.studio.selectors import kept_counts, scope_load
    from curation.studio.services import matrix_sync
    from curation.studio.spec import parse_spec
    from medstudio.datasets.models import Dataset

    call_command("migrate", verbosity=0)
    ds = Dataset.objects.filter(name="bench-1m").first()
    if ds is not None and (args.rebuild or ds.n_records != args.records):
        with connection.cursor() as cur:  # Django's cascade would walk 6M rows in Python
            cur.execute("DELETE FROM studio_scorematrix WHERE dataset_id = %s", [ds.pk])
            cur.execute("DELETE FROM studio_matrixslot WHERE dataset_id = %s", [ds.pk])
            cur.execute("DELETE FROM curation_score WHERE run_id IN (SELECT id FROM curation_scorerrun WHERE dataset_id = %s)", [ds.pk])
            cur.execute("DELETE FROM curation_scorerrun WHERE dataset_id = %s", [ds.pk])
            cur.execute("DELETE FROM datasets_record WHERE dataset_id = %s", [ds.pk])
            cur.execute("DELETE FROM datasets_dataset WHERE id = %s", [ds.pk])
        ds = None
    if ds is None:
        ds = Dataset.objects.get(pk=load(args.records))
    if args.rebuild_matrix:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM studio_scorematrix WHERE dataset_id = %s", [ds.pk])
            cur.execute("DELETE FROM studio_matrixslot WHERE dataset_id = %s", [ds.pk])
            cur.execute("VACUUM FULL studio_scorematrix")
    if not MatrixSlot.objects.filter(dataset=ds).exists():
        t0 = time.perf_counter()
        summary = matrix_sync(dataset=ds)
        print(f"matrix build (one INSERT ... SELECT, a LEFT JOIN per scorer run): {time.perf_counter() - t0:.1f} s {summary['slots']}")
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE studio_scorematrix")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_size_pretty(pg_relation_size('studio_scorematrix'))")
        print(f"matrix table size: {cur.fetchone()[0]}")
    with connection.cursor() as cur:
        cur.execute("SELECT version(), current_setting('max_parallel_workers_per_gather'), current_setting('shared_buffers')")
        ver, par, sb = cur.fetchone()
    print(f"{ver.split(',')[0]} · parallel workers/gather {par} · shared_buffers {sb} · {os.cpu_count()} CPU(s)")
    # Yardstick for the machine's state: the cheapest possible full pass over the matrix.
    yard = []
    for _ in range(5):
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM studio_scorematrix WHERE dataset_id = %s", [ds.pk])
        yard.append((time.perf_counter() - t0) * 1000)
    print(f"load average {os.getloadavg()[0]:.1f} · yardstick SELECT count(*) over the matrix: p50 {statistics.median(yard):.0f} ms")
    scope = scope_load([ds.pk])
    n_rows = sum(v[0] for v in __import__("curation.studio.selectors", fromlist=["scope_totals"]).scope_totals(scope).values())
    print(f"dataset {ds.name}: {n_rows:,} records · value scorers {list(scope.value)} · filters {list(scope.flag)}")
    runs = {name: sc.runs[ds.pk]["run"] for name, sc in {**scope.value, **scope.flag}.items()}

    rng = random.Random(1)
    rngs = {name: (scope.value[name].lo, scope.value[name].hi) for name in SCORERS}
    state = {"b_rater": {"min": 2.0}, "b_deita": {"min": 6.0, "max": 32.0}, "b_confilter": {"min": 0.6, "max": 1.3},
             "b_ppl": {"max": 50.0}}

    def spec_of(st):
        return parse_spec({"bounds": [{"scorer": k, **v} for k, v in st.items()], "flags": ["b_rules"]})

    def step(st):
        name = rng.choice(list(st))
        side = rng.choice(list(st[name]))
        lo, hi = rngs[name]
        delta = (hi - lo) * rng.uniform(0.005, 0.03) * rng.choice([-1, 1])
        v = min(hi, max(lo, st[name][side] + delta))
        other = st[name].get("max" if side == "min" else "min")
        if other is not None and ((side == "min" and v > other) or (side == "max" and v < other)):
            v = st[name][side] - delta
        st[name][side] = round(v, 4)

    # 0. what opening the page computes once per scope: totals per (language, source), histograms
    from curation.studio.selectors import histogram, scope_totals

    cache.clear()
    t0 = time.perf_counter()
    scope_totals(scope)
    for name in scope.value:
        histogram(scope, name)
    print(f"page open: totals + {len(scope.value)} histograms: {(time.perf_counter() - t0) * 1000:.0f} ms (then cached)")

    # 1. slider steps through the selector (what the view calls), scope resolution included
    first = kept_counts(scope, spec_of(state))
    print(f"first answer (full scan): {first.ms:.0f} ms, kept {first.total['kept']:,}")
    base = first.spec_key
    times, modes, checked, by_mode = [], {}, 0, {}
    for i in range(args.steps):
        step(state)
        t0 = time.perf_counter()
        sc = scope_load([ds.pk])
        got = kept_counts(sc, spec_of(state), base_key=base)
        times.append((time.perf_counter() - t0) * 1000)
        modes[got.mode] = modes.get(got.mode, 0) + 1
        by_mode.setdefault(got.mode, []).append(times[-1])
        base = got.spec_key
        if i % 10 == 0:
            cache.delete(f"studio:kept:{sc.version}:{got.spec_key}")
            full = kept_counts(sc, spec_of(state), allow_delta=False)
            assert full.total == got.total, (full.total, got.total)
            checked += 1
    print(f"slider steps    n={len(times)}  p50 {statistics.median(times):7.1f} ms  p95 {pct(times, 95):7.1f} ms  "
          f"modes {modes}  ({checked} checked equal to a full recount)")
    for mode, xs in sorted(by_mode.items()):
        print(f"   of which {mode:6s} n={len(xs):3d}  p50 {statistics.median(xs):7.1f} ms  p95 {pct(xs, 95):7.1f} ms")
    slider_p50 = statistics.median(times)

    # 2. full recounts (no previous answer)
    full_times = []
    for _ in range(args.full):
        cache.clear()
        scope_totals(scope)  # computed once when the page opens, not per change
        st = {k: dict(v) for k, v in state.items()}
        for _ in range(3):
            step(st)
        t0 = time.perf_counter()
        kept_counts(scope_load([ds.pk]), spec_of(st))
        full_times.append((time.perf_counter() - t0) * 1000)
    print(f"full recounts   n={len(full_times)}  p50 {statistics.median(full_times):7.1f} ms  p95 {pct(full_times, 95):7.1f} ms")

    # 3. slider steps through the HTTP view (form parsing, counts, template, SVG histograms)
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.filter(username="bench-curator").first() or get_user_model().objects.create_user(
        username="bench-curator", password="x", role="curator")
    client = Client()
    client.force_login(user)
    page_t0 = time.perf_counter()
    assert client.get(f"/studio/open/?ds={ds.pk}").status_code == 200
    print(f"studio page, first open (histograms computed): {(time.perf_counter() - page_t0) * 1000:.0f} ms")

    def form(st, base_key):
        data = {"ds": str(ds.pk), "flag.b_rules": "on", "base": base_key or ""}
        for k, v in st.items():
            for side, x in v.items():
                data[f"{side}.{k}"] = str(x)
        return data

    base = kept_counts(scope_load([ds.pk]), spec_of(state)).spec_key
    view_times = []
    for _ in range(max(10, args.steps // 4)):
        step(state)
        t0 = time.perf_counter()
        r = client.post("/studio/counts/", form(state, base), HTTP_HX_REQUEST="true")
        view_times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
        base = spec_of(state).key()
    print(f"view (HTTP)     n={len(view_times)}  p50 {statistics.median(view_times):7.1f} ms  p95 {pct(view_times, 95):7.1f} ms")

    # 4. reference: straight from the Score table
    ref_times = []
    for _ in range(args.reference):
        st = {k: dict(v) for k, v in state.items()}
        step(st)
        spec = spec_of(st)
        t0 = time.perf_counter()
        n, tok = reference_counts(ds.pk, spec, runs)
        ref_times.append((time.perf_counter() - t0) * 1000)
        mine = kept_counts(scope_load([ds.pk]), spec, allow_delta=False).total
        assert (mine["kept"], mine["kept_tokens"]) == (n, tok), (mine, n, tok)
    ref_p50 = statistics.median(ref_times)
    print(f"reference (Score table, EXISTS per condition) n={len(ref_times)}  p50 {ref_p50:7.1f} ms  (same counts as the matrix)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"ratios: reference / slider step = {ref_p50 / slider_p50:.1f}x · reference / full recount = "
          f"{ref_p50 / statistics.median(full_times):.1f}x · target p50 < 150 ms: "
          f"{'met' if slider_p50 < 150 else 'NOT met'} for slider steps, "
          f"{'met' if statistics.median(full_times) < 150 else 'NOT met'} for full recounts")


if __name__ == "__main__":
    main()
