"""Writes for curation. Scores are written through curation.scoring.scores_write."""
from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext

from curation.scoring import scorer_run_start  # noqa: F401  (the public write path)
from medstudio.handoffs.services import scorer_run_update, scores_write  # noqa: F401
from medstudio.audit.services import audit_log


@transaction.atomic
def pii_redaction_start(*, user, dataset, target_name: str = "", types: list[str] | None = None):
    """Create the (empty) redacted dataset now, so its name is taken, and a job that fills it.

    The original dataset is only read; the copy keeps external ids and points back via `parent`.
    """
    from curation.pipeline.pii import PII_TYPES
    from medstudio.datasets.models import Dataset
    from medstudio.datasets.services import dataset_create
    from medstudio.jobs.services import job_create

    target_name = (target_name or f"{dataset.name}-redacted").strip()
    if Dataset.objects.filter(name=target_name).exists():
        raise ValueError(gettext("A dataset named %(target_name)s already exists; choose another name.") % {"target_name": repr(target_name)})
    types = list(types or PII_TYPES)
    unknown = set(types) - set(PII_TYPES)
    if unknown:
        raise ValueError(gettext("Unknown PII types %(types)s; known: %(items)s.") % {"types": sorted(unknown), "items": ', '.join(PII_TYPES)})
    target = dataset_create(actor=user, name=target_name, kind=dataset.kind, parent=dataset, licence=dataset.licence,
                            description=f"PII-redacted copy of {dataset.name} ({', '.join(types)}).")
    job = job_create(kind="curation.pii_redact", params={"dataset_id": dataset.pk, "target_id": target.pk,
                                                         "types": types}, user=user)
    audit_log(actor=user, action="curation.pii_redaction_start", target=target,
              data={"source": dataset.pk, "types": types, "job": job.pk})
    return job


def scorer_run_summarize(*, run) -> dict:
    """Per-rule failure counts (all failed rules, not only the first) and PII totals per type.

    Needs one pass over the run's Score.detail, so it is done once, when the run has finished,
    and cached in run.summary; the page's other counts are indexed SQL aggregates.
    """
    if run.status != "succeeded" or "per_rule" in (run.summary or {}):
        return run.summary or {}
    per_rule: dict[str, int] = {}
    pii: dict[str, int] = {}
    pii_records = 0
    # value > 0: rules = number of failed rules, pii = number of spans (kept ones too, when max_hits > 0)
    for detail in run.scores.filter(value__gt=0).values_list("detail", flat=True).iterator(chunk_size=2000):
        for rule in detail.get("failed", []):
            per_rule[rule] = per_rule.get(rule, 0) + 1
        counts = detail.get("counts") or (detail.get("measures") or {}).get("pii") or {}
        pii_records += bool(counts)
        for k, v in counts.items():
            pii[k] = pii.get(k, 0) + int(v)
    summary = {**(run.summary or {}), "per_rule": dict(sorted(per_rule.items(), key=lambda kv: -kv[1])),
               "pii_totals": dict(sorted(pii.items(), key=lambda kv: -kv[1])), "pii_records": pii_records}
    scorer_run_update(run=run, summary=summary)
    run.summary = summary
    return summary


def duplicate_clusters_write(*, run, clusters: list[dict]) -> int:
    """Store a MinHash run's clusters: [{keeper_id, member_ids (keeper first), stage, max_similarity}]."""
    from curation.models import DuplicateCluster

    objs = [DuplicateCluster(run=run, keeper_id=c["keeper_id"], size=len(c["member_ids"]), member_ids=c["member_ids"],
                             stage=c["stage"], max_similarity=c["max_similarity"]) for c in clusters]
    DuplicateCluster.objects.bulk_create(objs, batch_size=500)
    return len(objs)


def scorer_run_summary_set(*, run, summary: dict) -> None:
    """Record what a corpus-level run found (shown on its page); merged into any existing summary."""
    run.summary = {**(run.summary or {}), **summary}
    scorer_run_update(run=run, summary=run.summary)
