from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from medstudio.accounts.permissions import Role, role_required
from medstudio.datasets.models import Dataset

from .scoring import scorer_run_start


@role_required(Role.CURATOR)
@require_POST
def run_start(request, pk: int):
    """Dataset page -> "Run scorer": params come as a JSON object."""
    import json

    dataset = get_object_or_404(Dataset, pk=pk)
    try:
        params = json.loads(request.POST.get("params") or "{}")
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        run = scorer_run_start(user=request.user, dataset=dataset, scorer=request.POST.get("scorer", ""),
                               params=params, shards=int(request.POST.get("shards") or 1))
    except (ValueError, LookupError) as exc:
        messages.error(request, f"Cannot start the scorer: {exc}")
        return redirect("datasets:detail", pk=pk)
    messages.info(request, f"Scorer {run.scorer} started (run {run.pk}).")
    return redirect("jobs:detail", pk=run.job_id)
