"""Pipeline-board step of preferences: the preference set that DPO trains on."""
from __future__ import annotations

from django.db.models import Count
from django.urls import reverse

from medstudio.handoffs.board import Step, register_step
from medstudio.handoffs.models import PreferenceSet


def _pairs(chain: dict):
    s = PreferenceSet.objects.annotate(n=Count("pairs")).filter(n__gt=0).order_by("-id").first()
    if s is None:
        return None
    return {"name": f"{s.name} ({s.n:,} pairs)", "url": reverse("preferences:set_detail", args=[s.pk]), "status": "ready",
            "id": s.pk, "ref": f"preference_set:{s.pk}"}


register_step(Step("pairs", "Preference pairs", 70, _pairs, lambda c: reverse("preferences:index"),
                   "Objective, subjective and sampled pairs; reward-model voting; clinician review."))
