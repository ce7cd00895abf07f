"""Reads for preference pages: sets, pair pages, counts (SQL aggregates), agreement."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from .models import BuildRun, DiversifyRun, PairStatus, PreferencePair, ReviewRound, Verdict, VoteRun
from medstudio.handoffs.models import PreferenceSet


def sets_list() -> QuerySet[PreferenceSet]:
    return PreferenceSet.objects.annotate(
        n_pairs=Count("pairs"), n_ok=Count("pairs", filter=Q(pairs__status=PairStatus.OK))
    ).order_by("-created_at", "-id")


def set_counts(*, pref_set: PreferenceSet) -> dict[str, Any]:
    qs = PreferencePair.objects.filter(pref_set=pref_set)
    by = lambda field: dict(qs.values_list(field).annotate(c=Count("id")).order_by())  # noqa: E731
    return {"total": qs.count(), "origin": by("origin"), "status": by("status"), "action": by("action"),
            "verdict": by("verdict")}


def pairs_filtered(*, pref_set: PreferenceSet, origin: str = "", status: str = "", action: str = "",
                   verdict: str = "") -> QuerySet[PreferencePair]:
    qs = PreferencePair.objects.filter(pref_set=pref_set)
    for field, value in (("origin", origin), ("status", status), ("action", action), ("verdict", verdict)):
        if value:
            qs = qs.filter(**{field: "" if value == "none" else value})
    return qs.order_by("id")


def pairs_page(*, qs: QuerySet[PreferencePair], after: int | None, size: int = 25) -> tuple[list[PreferencePair], int | None]:
    """Keyset page by id; returns the rows and the id to continue after (None at the end)."""
    if after:
        qs = qs.filter(id__gt=after)
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more and rows else None)


def runs_for(*, pref_set: PreferenceSet) -> QuerySet[BuildRun]:
    return BuildRun.objects.filter(pref_set=pref_set).select_related("dataset", "job")


def votes_for(*, pref_set: PreferenceSet) -> QuerySet[VoteRun]:
    return VoteRun.objects.filter(pref_set=pref_set).select_related("job")


def reviews_for(*, pref_set: PreferenceSet) -> QuerySet[ReviewRound]:
    return ReviewRound.objects.filter(pref_set=pref_set).select_related("queue", "dataset")


def diversify_runs() -> QuerySet[DiversifyRun]:
    return DiversifyRun.objects.select_related("source", "output", "job")


def agreement(*, pref_set: PreferenceSet) -> list[dict[str, Any]]:
    """Judge (builder order) vs clinician verdicts, per origin; and how the vote's flips fared.

    The builder's order is the judge's (or the answer key's) verdict, so "agree" = the clinician
    picked the stored chosen answer.
    """
    rows = (PreferencePair.objects.filter(pref_set=pref_set).exclude(verdict="")
            .values("origin").annotate(
                n=Count("id"),
                agree=Count("id", filter=Q(verdict=Verdict.CHOSEN, status=PairStatus.OK)),
                disagree=Count("id", filter=Q(verdict=Verdict.REJECTED, status=PairStatus.OK)),
                clinician_tie=Count("id", filter=Q(verdict=Verdict.TIE)),
                judge_tie=Count("id", filter=Q(status=PairStatus.TIE)),
                flipped=Count("id", filter=Q(action="flip")),
                flip_confirmed=Count("id", filter=Q(action="flip", verdict=Verdict.REJECTED)),
            ).order_by("origin"))
    out = []
    for r in rows:
        decided = r["agree"] + r["disagree"]
        r["agree_pct"] = round(100 * r["agree"] / decided, 1) if decided else None
        out.append(r)
    return out
