"""The `preference_set` training data source (registered with the platform in PreferencesConfig.ready).

A DPO run on a set trains on the set as it stands after reward-model voting and clinician review:
`pipeline.export.resolve` applies verdicts first (a clinician's word beats the judges), then
voting flips and drops; ties are left out. Counts by origin and what was left out are returned
with the file hash, so the run page can show what the model saw.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from medstudio.handoffs.models import PreferenceSet
from django.db.models import Count

from medstudio.handoffs.lineage import register_node
from medstudio.handoffs.sources import DataSourceError, RecordWriter, register_data_source

from .models import PreferencePair
from .pipeline.export import resolve


def _set(ref: dict) -> PreferenceSet:
    pref_set = PreferenceSet.objects.filter(pk=ref.get("id")).first()
    if pref_set is None:
        raise DataSourceError(f"preference set {ref.get('id')!r} does not exist")
    return pref_set


def _describe(ref: dict) -> dict:
    pref_set = _set(ref)
    return {"name": pref_set.name, "kind": "pair", "n_records": PreferencePair.objects.filter(pref_set=pref_set).count()}


def _export(ref: dict, path: Path) -> dict:
    pref_set = _set(ref)
    w = RecordWriter(path)
    by_origin, left_out, changed = Counter(), Counter(), Counter()
    pairs = PreferencePair.objects.filter(pref_set=pref_set).order_by("id")
    for p in pairs.iterator(chunk_size=1000):
        out = resolve(p.chosen, p.rejected, status=p.status, action=p.action, verdict=p.verdict)
        if out is None:
            left_out["clinician tie" if p.verdict else "dropped by voting" if p.action == "drop" else p.status] += 1
            continue
        chosen, rejected = out
        if (chosen, rejected) != (p.chosen, p.rejected):
            changed["swapped by clinician" if p.verdict else "flipped by voting"] += 1
        w.write("pair", {"prompt_turns": p.prompt_turns, "chosen": chosen, "rejected": rejected}, origin=p.origin)
        by_origin[p.origin] += 1
    info = w.close()
    return {"name": pref_set.name, "kind": "pair", **info, "by_origin": dict(by_origin), "left_out": dict(left_out),
            "swapped": dict(changed)}


def _options():
    for s in PreferenceSet.objects.annotate(n=Count("pairs")).order_by("name"):
        yield {"id": s.pk, "name": s.name, "kind": "pair", "n_records": s.n}


register_data_source("preference_set", label="Preference set", exporter=_export, describe=_describe, options=_options)


def _lineage(pk: int):
    """A set was built from datasets/selections and reviewed in clinician queues."""
    from django.urls import reverse

    from medstudio.handoffs.lineage import node_id

    from .models import BuildRun, ReviewRound

    pref_set = PreferenceSet.objects.filter(pk=pk).first()
    if pref_set is None:
        return None
    ups = []
    for ds_id, sel_id in BuildRun.objects.filter(pref_set=pref_set).values_list("dataset_id", "selection_id").distinct():
        if sel_id:
            ups.append(node_id("selection", sel_id))
        elif ds_id:
            ups.append(node_id("dataset", ds_id))
    ups += [node_id("queue", q) for q in ReviewRound.objects.filter(pref_set=pref_set, queue__isnull=False).values_list("queue_id", flat=True)]
    by_origin = dict(PreferencePair.objects.filter(pref_set=pref_set).values_list("origin").annotate(n=Count("id")).order_by())
    return {"type": "preference_set", "name": pref_set.name, "url": reverse("preferences:set_detail", args=[pk]),
            "by_origin": by_origin}, sorted(set(ups))


register_node("preference_set", _lineage)
