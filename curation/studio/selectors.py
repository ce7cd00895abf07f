"""Reads of the threshold studio: scopes, kept-counts (full or incremental), histograms, samples, diffs.

Every count is one SQL aggregate over the score matrix (curation/studio/models.py: one row per
record, one real column per scorer run, filter verdicts as bits), never a Python loop over records
and never a COUNT over JSON. A slider step (one side of one bound moved) is answered incrementally:
the previous counts come from the cache and only the records whose value lies between the old and
the new threshold are read, through the Score table's (run, value) index. See docs/BENCHMARKS.md.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BooleanField, Count, F, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Floor, Substr
from django.db.models.lookups import Exact

from medstudio.handoffs.models import Score
from medstudio.datasets.models import Dataset, Record

from .models import MatrixSlot, ScoreMatrix
from medstudio.handoffs.models import Mixture, Recipe, RecipeVersion, Selection, SelectionRecord
from .spec import Bound, BoundMove, Spec, diff_specs, single_bound_move

CACHE_SECONDS = 3600
# Above about this many records in the band, reading them one by one (a primary-key lookup each)
# costs more than one sequential scan of the matrix (measured at 1M records, docs/BENCHMARKS.md).
DELTA_MAX_ROWS = 20_000


@dataclass
class ScopeScorer:
    name: str
    kind: str  # value | flag
    slots: dict[int, int] = field(default_factory=dict)  # dataset id -> slot number
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # dataset id -> {run, version}
    lo: float | None = None
    hi: float | None = None
    n_values: int = 0


@dataclass
class Scope:
    """The datasets a curator looks at together, with the scorers their matrices hold."""

    datasets: list[Dataset]
    value: dict[str, ScopeScorer]
    flag: dict[str, ScopeScorer]
    version: str

    @property
    def dataset_ids(self) -> list[int]:
        return [d.pk for d in self.datasets]

    def runs_for(self, spec: Spec) -> list[dict[str, Any]]:
        """Which scorer run each condition resolved to, per dataset (recorded with every selection)."""
        out = []
        for name in spec.scorers():
            for kind in ("value", "flag"):
                sc = (self.value if kind == "value" else self.flag).get(name)
                if sc is None:
                    continue
                for ds_id, info in sc.runs.items():
                    out.append({"dataset": ds_id, "scorer": name, "kind": kind, **info})
        return out


def scope_load(dataset_ids: list[int]) -> Scope:
    datasets = list(Dataset.objects.filter(pk__in=dataset_ids).order_by("pk"))
    if len(datasets) != len(set(dataset_ids)):
        raise Dataset.DoesNotExist("unknown dataset id in scope")
    value: dict[str, ScopeScorer] = {}
    flag: dict[str, ScopeScorer] = {}
    parts = []
    for slot in MatrixSlot.objects.filter(dataset_id__in=dataset_ids).order_by("dataset_id", "kind", "slot"):
        target = value if slot.kind == MatrixSlot.Kind.VALUE else flag
        sc = target.setdefault(slot.scorer, ScopeScorer(name=slot.scorer, kind=slot.kind))
        sc.slots[slot.dataset_id] = slot.slot
        sc.runs[slot.dataset_id] = {"run": slot.run_id, "version": slot.version}
        sc.n_values += slot.n_values
        if slot.lo is not None:
            sc.lo = slot.lo if sc.lo is None else min(sc.lo, slot.lo)
            sc.hi = slot.hi if sc.hi is None else max(sc.hi, slot.hi)
        parts.append(f"{slot.dataset_id}{slot.kind[0]}{slot.slot}={slot.run_id}")
    version = "|".join([",".join(map(str, sorted(dataset_ids)))] + parts)
    return Scope(datasets=datasets, value=dict(sorted(value.items())), flag=dict(sorted(flag.items())), version=version)


# --------------------------------------------------------------------------------------------
# conditions -> SQL


def _bound_q(col: str, b: Bound) -> Q:
    q = Q()
    if b.min is not None:
        q &= Q(**{f"{col}__gte": b.min})
    if b.max is not None:
        q &= Q(**{f"{col}__lte": b.max})
    if b.min is None and b.max is None:
        q &= Q(**{f"{col}__isnull": False})
    if b.keep_unscored:
        q |= Q(**{f"{col}__isnull": True})
    return q


_NOTHING = Q(pk__in=[])


def kept_q(scope: Scope, spec: Spec, only: list[int] | None = None) -> Q:
    """The records a spec keeps, as one WHERE clause over the matrix (per dataset, its own columns)."""
    out = Q()
    first = True
    for ds_id in only or scope.dataset_ids:
        q = Q(dataset_id=ds_id)
        for b in spec.bounds:
            sc = scope.value.get(b.scorer)
            if sc is None or ds_id not in sc.slots:
                # no value from this scorer in this dataset: every record is unscored
                if not b.keep_unscored:
                    q &= _NOTHING
                continue
            q &= _bound_q(f"v{sc.slots[ds_id]}", b)
        mask = 0
        for name in spec.flags:
            sc = scope.flag.get(name)
            if sc is not None and ds_id in sc.slots:
                mask |= 1 << sc.slots[ds_id]
        if mask:
            q &= Q(Exact(F("drop_mask").bitand(mask), 0))
        out = q if first else (out | q)
        first = False
    return out


def _band_rows(scope: Scope, sc: "ScopeScorer", lo_v: float, hi_v: float) -> float:
    """Records with a value in [lo_v, hi_v]: from the page's cached histogram, else assuming uniform values."""
    hist = cache.get(f"studio:hist:{scope.version}:{sc.name}:30:None")
    if hist and hist.get("lo") is not None and hist["hi"] > hist["lo"]:
        width = (hist["hi"] - hist["lo"]) / hist["bins"]
        counts = [sum(col) for col in zip(*hist["series"].values())]
        total = 0.0
        for i, n in enumerate(counts):
            a, b = hist["lo"] + i * width, hist["lo"] + (i + 1) * width
            overlap = max(0.0, min(b, hi_v) - max(a, lo_v))
            total += n * overlap / width
        return total
    return sc.n_values * (hi_v - lo_v) / (sc.hi - sc.lo)


def _band_q(scope: Scope, spec: Spec, move: BoundMove) -> tuple[Q, int] | None:
    """Records whose verdict flips when one threshold moves, and the sign (+1 gained, -1 lost)."""
    sc = scope.value.get(move.scorer)
    bound = spec.bound(move.scorer)
    if sc is None or bound is None:
        return None
    if move.side == "min":
        lost = move.old is None or (move.new is not None and move.new > move.old)
        vals = [v for v in (move.old, move.new) if v is not None]
    else:
        lost = move.old is None or (move.new is not None and move.new < move.old)
        vals = [v for v in (move.old, move.new) if v is not None]
    if sc.lo is not None and sc.hi is not None and sc.hi > sc.lo:
        lo_v = max(min(vals) if len(vals) == 2 else (sc.lo if move.side == "min" else vals[0]), sc.lo)
        hi_v = min(max(vals) if len(vals) == 2 else (vals[0] if move.side == "min" else sc.hi), sc.hi)
        if _band_rows(scope, sc, lo_v, hi_v) > DELTA_MAX_ROWS:
            return None
    others = kept_q(scope, spec.without(move.scorer))
    band = Q()
    first = True
    for ds_id, slot in sc.slots.items():
        # The band is read through the Score table's (run, value) index, then joined to the matrix
        # by primary key for the other conditions: no per-column index on the matrix is needed.
        rng = Q()
        if move.side == "min":
            rng &= Q(value__lt=max(vals))
            if len(vals) == 2:
                rng &= Q(value__gte=min(vals))
            if bound.max is not None:
                rng &= Q(value__lte=bound.max)
        else:
            rng &= Q(value__gt=min(vals))
            if len(vals) == 2:
                rng &= Q(value__lte=max(vals))
            if bound.min is not None:
                rng &= Q(value__gte=bound.min)
        ids = Score.objects.filter(rng, run_id=sc.runs[ds_id]["run"], value__isnull=False).values("record_id")
        if connection.vendor == "postgresql":
            # = ANY(ARRAY(...)) makes PostgreSQL probe the matrix's primary key once per band record
            # in one index scan instead of a nested loop: ~35% faster at 20k band records.
            sub_sql, sub_params = ids.query.sql_with_params()
            member = RawSQL(f'"{ScoreMatrix._meta.db_table}"."record_id" = ANY(ARRAY({sub_sql}))', sub_params,
                            output_field=BooleanField())
            q = Q(dataset_id=ds_id) & Q(member)
        else:
            q = Q(dataset_id=ds_id) & Q(record_id__in=ids)
        band = q if first else (band | q)
        first = False
    if first:
        return None
    return (band & others), (-1 if lost else 1)


@contextmanager
def _hash_aggregation():
    """On PostgreSQL, make grouped counts hash-aggregate.

    The planner multiplies the selectivities of the conditions and expects a few hundred kept rows,
    so it sorts them for a GroupAggregate; with a third of a million rows the sort spills to disk.
    Measured at 1M records: 596-717 ms with the sort, 278-335 ms hashed (docs/BENCHMARKS.md).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET LOCAL enable_sort = off")
            cur.execute("SET LOCAL jit = off")  # compiling costs more than the scan it would speed up
        yield


def _groups(qs) -> dict[tuple[str, str], list[int]]:
    with _hash_aggregation():
        return {(r["lang"], r["source"]): [r["n"], r["t"] or 0]
                for r in qs.values("lang", "source").annotate(n=Count("pk"), t=Sum("n_tokens")).order_by()}


def scope_totals(scope: Scope) -> dict[tuple[str, str], list[int]]:
    key = f"studio:totals:{scope.version}"
    hit = cache.get(key)
    if hit is None:
        hit = _groups(ScoreMatrix.objects.filter(dataset_id__in=scope.dataset_ids))
        cache.set(key, hit, CACHE_SECONDS)
    return hit


def _counts_key(scope: Scope, spec_key: str) -> str:
    return f"studio:kept:{scope.version}:{spec_key}"


@dataclass
class Counts:
    spec_key: str
    mode: str  # full | delta | cached
    ms: float
    groups: dict[tuple[str, str], dict[str, int]]

    def _roll(self, idx: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key, g in self.groups.items():
            row = out.setdefault(key[idx] or "(none)", {"records": 0, "tokens": 0, "kept": 0, "kept_tokens": 0})
            for k in row:
                row[k] += g[k]
        for row in out.values():
            row["dropped"] = row["records"] - row["kept"]
            row["dropped_tokens"] = row["tokens"] - row["kept_tokens"]
        return dict(sorted(out.items()))

    @property
    def by_lang(self) -> dict[str, dict[str, int]]:
        return self._roll(0)

    @property
    def by_source(self) -> dict[str, dict[str, int]]:
        return self._roll(1)

    @property
    def total(self) -> dict[str, int]:
        t = {"records": 0, "tokens": 0, "kept": 0, "kept_tokens": 0}
        for g in self.groups.values():
            for k in t:
                t[k] += g[k]
        t["dropped"] = t["records"] - t["kept"]
        t["dropped_tokens"] = t["tokens"] - t["kept_tokens"]
        return t

    def as_dict(self) -> dict[str, Any]:
        return {"spec_key": self.spec_key, "mode": self.mode, "ms": round(self.ms, 2), "total": self.total,
                "by_lang": self.by_lang, "by_source": self.by_source}


def kept_counts(scope: Scope, spec: Spec, base_key: str | None = None, allow_delta: bool = True) -> Counts:
    """Records and tokens kept/dropped, in total and per (language, source).

    With `base_key` naming counts computed just before (the page sends it back), a single-threshold
    move is answered from those counts plus a read of the band between the two thresholds.
    """
    t0 = time.perf_counter()
    key = spec.key()
    kept = cache.get(_counts_key(scope, key))
    mode = "cached"
    if kept is None:
        kept = None
        if allow_delta and base_key:
            base = cache.get(_counts_key(scope, base_key))
            if base is not None:
                base_spec = Spec(bounds=tuple(Bound(**b) for b in base["spec"]["bounds"]), flags=tuple(base["spec"]["flags"]))
                move = single_bound_move(base_spec, spec)
                band = _band_q(scope, spec, move) if move else None
                if band is not None:
                    q, sign = band
                    delta = _groups(ScoreMatrix.objects.filter(dataset_id__in=scope.dataset_ids).filter(q))
                    kept = {k: list(v) for k, v in base["kept"].items()}
                    for k, (n, t) in delta.items():
                        row = kept.setdefault(k, [0, 0])
                        row[0] += sign * n
                        row[1] += sign * t
                    mode = "delta"
        if kept is None:
            kept = _groups(ScoreMatrix.objects.filter(dataset_id__in=scope.dataset_ids).filter(kept_q(scope, spec)))
            mode = "full"
        cache.set(_counts_key(scope, key), {"spec": spec.as_dict(), "kept": kept}, CACHE_SECONDS)
    else:
        kept = kept["kept"]
    totals = scope_totals(scope)
    groups = {}
    for k, (n, t) in totals.items():
        kn, kt = kept.get(k, [0, 0])
        groups[k] = {"records": n, "tokens": t, "kept": kn, "kept_tokens": kt}
    return Counts(spec_key=key, mode=mode, ms=(time.perf_counter() - t0) * 1000, groups=dict(sorted(groups.items())))


# --------------------------------------------------------------------------------------------
# distributions and samples


def histogram(scope: Scope, name: str, bins: int = 30, split: str | None = None) -> dict[str, Any]:
    """Counts per equal-width bin of one scorer's values (one GROUP BY per dataset), optionally per language/source."""
    sc = scope.value[name]
    cache_key = f"studio:hist:{scope.version}:{name}:{bins}:{split}"
    hit = cache.get(cache_key)
    if hit is not None:
        return hit
    lo, hi = sc.lo, sc.hi
    series: dict[str, list[int]] = {}
    unscored = 0
    if lo is not None:
        width = (hi - lo) / bins if hi > lo else 1.0
        for ds_id, slot in sc.slots.items():
            col = f"v{slot}"
            rows = ScoreMatrix.objects.filter(dataset_id=ds_id, **{f"{col}__isnull": False})
            fields = ["b"] + ([split] if split in ("lang", "source") else [])
            agg = rows.annotate(b=Floor((F(col) - lo) / width)).values(*fields).annotate(n=Count("pk")).order_by()
            for r in agg:
                label = (r.get(split) or "(none)") if split in ("lang", "source") else "all"
                b = min(max(int(r["b"]), 0), bins - 1)
                series.setdefault(label, [0] * bins)[b] += r["n"]
            unscored += ScoreMatrix.objects.filter(dataset_id=ds_id, **{f"{col}__isnull": True}).count()
    for ds in scope.datasets:
        if ds.pk not in sc.slots:
            unscored += ScoreMatrix.objects.filter(dataset_id=ds.pk).count()
    out = {"scorer": name, "lo": lo, "hi": hi, "bins": bins, "series": dict(sorted(series.items())), "unscored": unscored}
    cache.set(cache_key, out, CACHE_SECONDS)
    return out


def samples_near(scope: Scope, spec: Spec, name: str, k: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Records just inside and just outside each side of one scorer's bound (others' conditions held)."""
    sc = scope.value.get(name)
    bound = spec.bound(name)
    out: dict[str, list[dict[str, Any]]] = {}
    if sc is None or bound is None:
        return out
    for side in ("min", "max"):
        t = getattr(bound, side)
        if t is None:
            continue
        rows: dict[str, list[dict[str, Any]]] = {"inside": [], "outside": []}
        for ds_id, slot in sc.slots.items():
            col = f"v{slot}"
            others = kept_q(scope, spec.without(name), only=[ds_id])
            other_side = Q()
            if side == "min" and bound.max is not None:
                other_side = Q(**{f"{col}__lte": bound.max})
            if side == "max" and bound.min is not None:
                other_side = Q(**{f"{col}__gte": bound.min})
            base = ScoreMatrix.objects.filter(dataset_id=ds_id).filter(others & other_side)
            fields = ("record_id", "dataset_id", "lang", "source", "value", "snippet", "record__external_id")
            if side == "min":
                inside = base.filter(**{f"{col}__gte": t}).order_by(col)
                outside = base.filter(**{f"{col}__lt": t}).order_by(F(col).desc())
            else:
                inside = base.filter(**{f"{col}__lte": t}).order_by(F(col).desc())
                outside = base.filter(**{f"{col}__gt": t}).order_by(col)
            for label, qs in (("inside", inside), ("outside", outside)):
                rows[label] += list(qs.annotate(value=F(col), snippet=Substr("record__text", 1, 240)).values(*fields)[:k])
        for label in rows:
            rows[label].sort(key=lambda r: abs(r["value"] - t))
            out[f"{side}_{label}"] = rows[label][:k]
    return out


def drop_reasons(scope: Scope) -> dict[str, list[dict[str, Any]]]:
    """Records each filter dropped, by reason (indexed (run, keep, reason) on the Score table)."""
    out = {}
    for name, sc in scope.flag.items():
        run_ids = [info["run"] for info in sc.runs.values()]
        out[name] = list(Score.objects.filter(run_id__in=run_ids, keep=False).values("reason")
                         .annotate(n=Count("id")).order_by("-n", "reason"))
    return out


def duplicate_clusters(scope: Scope, limit: int = 10) -> dict[str, dict[str, Any]]:
    """Cluster sizes from dedup filters that store a cluster id in Score.detail['cluster'] (page view, not the count path)."""
    out = {}
    for name, sc in scope.flag.items():
        run_ids = [info["run"] for info in sc.runs.values()]
        qs = Score.objects.filter(run_id__in=run_ids, detail__has_key="cluster")
        if not qs.exists():
            continue
        sizes = list(qs.values("detail__cluster").annotate(n=Count("id")).filter(n__gt=1).order_by("-n")[:limit])
        out[name] = {"largest": [{"cluster": s["detail__cluster"], "size": s["n"]} for s in sizes],
                     "n_clusters": qs.values("detail__cluster").annotate(n=Count("id")).filter(n__gt=1).count()}
    return out


# --------------------------------------------------------------------------------------------
# recipes, selections, mixtures


def recipes_list():
    return Recipe.objects.prefetch_related("versions").order_by("name")


def version_spec(version: RecipeVersion) -> Spec:
    from .spec import parse_spec

    return parse_spec(version.conditions)


def recipe_diff(a: RecipeVersion, b: RecipeVersion, sample: int = 5) -> dict[str, Any]:
    """Conditions that changed from a to b, and the records gained and lost (one aggregate over the matrix)."""
    spec_a, spec_b = version_spec(a), version_spec(b)
    ids = sorted(set(a.datasets.values_list("id", flat=True)) | set(b.datasets.values_list("id", flat=True)))
    scope = scope_load(ids)
    qa = kept_q(scope, spec_a, only=sorted(a.datasets.values_list("id", flat=True))) if a.datasets.exists() else _NOTHING
    qb = kept_q(scope, spec_b, only=sorted(b.datasets.values_list("id", flat=True))) if b.datasets.exists() else _NOTHING
    rows = ScoreMatrix.objects.filter(dataset_id__in=ids)
    agg = rows.aggregate(
        kept_a=Count("pk", filter=qa), kept_b=Count("pk", filter=qb),
        gained=Count("pk", filter=qb & ~qa), gained_tokens=Sum("n_tokens", filter=qb & ~qa),
        lost=Count("pk", filter=qa & ~qb), lost_tokens=Sum("n_tokens", filter=qa & ~qb),
    )
    agg = {k: v or 0 for k, v in agg.items()}
    return {
        "conditions": diff_specs(spec_a, spec_b).as_dict(),
        "datasets_added": sorted(set(b.datasets.values_list("id", flat=True)) - set(a.datasets.values_list("id", flat=True))),
        "datasets_removed": sorted(set(a.datasets.values_list("id", flat=True)) - set(b.datasets.values_list("id", flat=True))),
        **agg,
        "gained_ids": list(rows.filter(qb & ~qa).order_by("record_id").values_list("record_id", flat=True)[:sample]),
        "lost_ids": list(rows.filter(qa & ~qb).order_by("record_id").values_list("record_id", flat=True)[:sample]),
    }


def selections_list():
    return Selection.objects.select_related("recipe_version__recipe").order_by("-created_at", "-id")




def mix_targets(data: dict[str, Any]):
    from curation.pipeline.mixing import MixTargets

    try:
        cats = {str(k): float(v) for k, v in (data.get("categories") or {}).items()}
        langs = {str(k): float(v) for k, v in (data.get("langs") or {}).items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"targets must map names to numbers: {exc}") from None
    return MixTargets(categories=cats, langs=langs)


def source_name(src: dict[str, Any]) -> str:
    """A mixture source's name in a plan: the selection id, or "d<dataset>" / "d<dataset>r<recipe version>"."""
    if src.get("selection"):
        return str(int(src["selection"]))
    return f"d{int(src['dataset'])}" + (f"r{int(src['recipe_version'])}" if src.get("recipe_version") else "")


def dataset_source(src: dict[str, Any]) -> tuple[Dataset, RecipeVersion | None]:
    """The dataset (and recipe version, if any) a dataset source names; ValueError when they do not fit."""
    try:
        ds = Dataset.objects.get(pk=int(src["dataset"]))
    except (KeyError, TypeError, ValueError, Dataset.DoesNotExist):
        raise ValueError(f"unknown dataset {src.get('dataset')!r}") from None
    version = None
    if src.get("recipe_version"):
        try:
            version = RecipeVersion.objects.select_related("recipe").get(pk=int(src["recipe_version"]))
        except (TypeError, ValueError, RecipeVersion.DoesNotExist):
            raise ValueError(f"unknown recipe version {src.get('recipe_version')!r}") from None
        if not version.datasets.filter(pk=ds.pk).exists():
            raise ValueError(f"recipe {version} was not made for dataset {ds.name}; save it for that dataset in the studio first")
    return ds, version


def dataset_source_tokens(ds: Dataset, version: RecipeVersion | None) -> dict[str, int]:
    """Tokens per language a dataset source would freeze: all its records, or what the recipe keeps
    (read from the score matrix, which the caller has brought up to date)."""
    if version is None:
        rows = Record.objects.filter(dataset=ds).values("lang").annotate(t=Sum("n_tokens")).order_by()
    else:
        scope = scope_load([ds.pk])
        q = kept_q(scope, version_spec(version), only=[ds.pk])
        rows = ScoreMatrix.objects.filter(dataset_id=ds.pk).filter(q).values("lang").annotate(t=Sum("n_tokens")).order_by()
    return {r["lang"]: int(r["t"] or 0) for r in rows}


def mix_sources(sources: list[dict[str, Any]]):
    """MixSources from [{'selection': id, 'category': tag}] (token totals per language from the frozen
    stats) or [{'dataset': id, 'recipe_version': id | None, 'category': tag}] (counted as they would freeze)."""
    from curation.pipeline.mixing import MixSource

    if not sources:
        raise ValueError("a mixture needs at least one source (a selection or a dataset)")
    out = []
    for src in sources:
        if not isinstance(src, dict) or not (src.get("selection") or src.get("dataset")):
            raise ValueError(f"a source names a selection or a dataset, got {src!r}")
        if src.get("selection"):
            try:
                sel = Selection.objects.get(pk=int(src["selection"]))
            except (TypeError, ValueError, Selection.DoesNotExist):
                raise ValueError(f"unknown selection {src.get('selection')!r}") from None
            if sel.status != Selection.Status.READY:
                raise ValueError(f"selection {sel} is not ready")
            label = str(sel)
            tokens = {lang: int(v["tokens"]) for lang, v in (sel.stats.get("by_lang") or {}).items()}
        else:
            ds, version = dataset_source(src)
            label = f"dataset {ds.name}" + (f" ({version})" if version else "")
            tokens = dataset_source_tokens(ds, version)
        cat = str(src.get("category") or "").strip()
        if not cat:
            raise ValueError(f"{label} needs a category tag (medical, general, sft...)")
        out.append(MixSource(name=source_name(src), category=cat, tokens_by_lang=tokens))
    return out


def source_labels(sources: list[dict[str, Any]]) -> dict[str, str]:
    """Plan source name -> what a curator calls it (selection name, or dataset name and recipe)."""
    sel_ids = [int(s["selection"]) for s in sources if s.get("selection")]
    ds_ids = [int(s["dataset"]) for s in sources if s.get("dataset")]
    sels = dict(Selection.objects.filter(pk__in=sel_ids).values_list("id", "name"))
    dss = dict(Dataset.objects.filter(pk__in=ds_ids).values_list("id", "name"))
    versions = {v.pk: str(v) for v in RecipeVersion.objects.select_related("recipe").filter(
        pk__in=[int(s["recipe_version"]) for s in sources if s.get("recipe_version")])}
    out = {}
    for s in sources:
        if s.get("selection"):
            out[source_name(s)] = sels.get(int(s["selection"]), f"#{s['selection']}")
        else:
            name = dss.get(int(s["dataset"]), f"dataset #{s['dataset']}")
            out[source_name(s)] = name + (f" ({versions.get(int(s['recipe_version']), '')})" if s.get("recipe_version") else "")
    return out


def mixtures_list():
    return Mixture.objects.order_by("-created_at", "-id")
