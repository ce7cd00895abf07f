"""Helper datasets: sets a stage makes for a side task (a preference review round, a clinician check
of judge scores) rather than as training or evaluation data. They are hidden from the main dataset
list and listed under their owner, the top-level dataset they were made about."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from medstudio.audit.services import audit_log

from .models import Dataset

# role -> how the list names it; stages pass one of these (a new role reads as itself)
ROLES = {
    "preference_review": _("preference review round"),
    "judge_review": _("clinician check of judge scores"),
}


def role_label(role: str) -> str:
    return str(ROLES.get(role, role.replace("_", " ")))


def dataset_mark_helper(*, dataset: Dataset, role: str, owner: Dataset | None = None, actor=None) -> Dataset:
    """Mark `dataset` as a helper (`role`) of `owner` (None: no single dataset owns it; it is still hidden)."""
    if not role:
        raise ValueError("a helper dataset needs a role")
    if owner is not None and (owner.pk == dataset.pk or owner.helper_role):
        owner = owner.helper_of  # helpers hang under a top-level dataset, never under another helper
    Dataset.objects.filter(pk=dataset.pk).update(helper_role=role[:32], helper_of=owner)
    dataset.helper_role, dataset.helper_of = role[:32], owner
    audit_log(actor=actor, action="datasets.mark_helper", target=dataset,
              data={"role": role, "owner": owner.pk if owner else None})
    return dataset


def top_level(qs: QuerySet | None = None) -> QuerySet:
    """Datasets that are not helpers, each annotated with `n_helpers`."""
    qs = Dataset.objects.all() if qs is None else qs
    return qs.filter(helper_role="").annotate(n_helpers=Count("helpers", filter=~Q(helpers__helper_role="")))


def helpers_of(dataset: Dataset) -> QuerySet:
    return Dataset.objects.filter(helper_of=dataset).exclude(helper_role="").order_by("-created_at", "-id")
