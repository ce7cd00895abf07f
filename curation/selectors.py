"""Reads for curation pages: indexed aggregates over Score, never a count over JSON."""
from __future__ import annotations

from django.db.models import Count, Q

from curation.models import DuplicateCluster
from medstudio.handoffs.models import Score, ScorerRun
from medstudio.datasets.models import Record


def run_counts(*, run: ScorerRun) -> dict:
    return run.scores.aggregate(total=Count("id"), kept=Count("id", filter=Q(keep=True)),
                                dropped=Count("id", filter=Q(keep=False)),
                                unscored=Count("id", filter=Q(value__isnull=True)))


def run_drop_reasons(*, run: ScorerRun) -> list[dict]:
    """[{reason, n}] of dropped records, most frequent first (the (run, keep, reason) index)."""
    return list(run.scores.filter(keep=False).values("reason").annotate(n=Count("id")).order_by("-n", "reason"))


def run_dropped(*, run: ScorerRun, reason: str = "", limit: int = 25):
    qs = run.scores.filter(keep=False).select_related("record").order_by("record_id")
    if reason:
        qs = qs.filter(reason=reason)
    return qs[:limit]


def run_clusters(*, run: ScorerRun, limit: int = 20, offset: int = 0) -> list[dict]:
    """Largest clusters first, each with its member records (keeper first) and their scores."""
    clusters = list(DuplicateCluster.objects.filter(run=run).order_by("-size", "id")[offset: offset + limit])
    ids = {rid for c in clusters for rid in c.member_ids}
    records = Record.objects.select_related("dataset").in_bulk(ids)
    scores = {s.record_id: s for s in Score.objects.filter(run=run, record_id__in=ids)}
    return [{"cluster": c, "keeper": records.get(c.keeper_id),
             "members": [(records.get(rid), scores.get(rid)) for rid in c.member_ids[1:]]} for c in clusters]


def runs_for_dataset(*, dataset, scorer: str = ""):
    qs = ScorerRun.objects.filter(dataset=dataset)
    return qs.filter(scorer=scorer) if scorer else qs


def run_value_histogram(*, run: ScorerRun, bins: int = 30) -> dict | None:
    """Counts of a run's score values in equal-width bins, split kept / dropped (two GROUP BYs).

    None when the run has fewer than three distinct values (a pass/fail filter has nothing to plot).
    """
    from django.db.models import F, Max, Min
    from django.db.models.functions import Floor

    scored = run.scores.filter(value__isnull=False)
    span = scored.aggregate(lo=Min("value"), hi=Max("value"))
    lo, hi = span["lo"], span["hi"]
    if lo is None or hi is None or hi <= lo or scored.values("value").distinct()[:3].count() < 3:
        return None
    width = (hi - lo) / bins
    series = {"kept": [0] * bins, "dropped": [0] * bins, "scored": [0] * bins}  # "scored": no keep decision
    for r in scored.annotate(b=Floor((F("value") - lo) / width)).values("b", "keep").annotate(n=Count("id")).order_by():
        key = "scored" if r["keep"] is None else "kept" if r["keep"] else "dropped"
        series[key][min(max(int(r["b"]), 0), bins - 1)] += r["n"]
    return {"lo": lo, "hi": hi, "bins": bins, "series": {k: v for k, v in series.items() if any(v)}}
