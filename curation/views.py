import json

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from medstudio.accounts.permissions import Role, role_required
from medstudio.datasets.models import Dataset

from . import selectors, services
from medstudio.handoffs.models import ScorerRun
from .scoring import scorer_run_start


@role_required(Role.CURATOR)
@require_POST
def run_start(request, pk: int):
    """Dataset page -> "Run scorer": params come as a JSON object."""
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


def _bars(rows: list[dict], width: int = 320) -> list[dict]:
    """Rows with a bar length for the inline SVG chart (drawn server-side: the pages run offline)."""
    top = max((r["n"] for r in rows), default=0) or 1
    return [{**r, "w": max(1, round(width * r["n"] / top)), "y": i * 22} for i, r in enumerate(rows)]


@role_required(Role.CURATOR)
@require_GET
def run_detail(request, pk: int):
    """What a scorer run kept and dropped, and why: reasons, PII counts, clusters, contamination hits."""
    run = get_object_or_404(ScorerRun.objects.select_related("dataset", "job"), pk=pk)
    reason = request.GET.get("reason", "")
    try:
        offset = max(0, int(request.GET.get("offset") or 0))
    except ValueError:
        offset = 0
    summary = services.scorer_run_summarize(run=run) if run.scorer in ("rules", "pii") else (run.summary or {})
    reasons = _bars(selectors.run_drop_reasons(run=run))
    per_rule = _bars([{"reason": k, "n": v} for k, v in (summary.get("per_rule") or {}).items()])
    context = {
        "run": run, "dataset": run.dataset, "counts": selectors.run_counts(run=run), "reasons": reasons,
        "reasons_height": 22 * len(reasons) + 4, "per_rule": per_rule, "per_rule_height": 22 * len(per_rule) + 4,
        "summary": summary, "reason": reason, "dropped": selectors.run_dropped(run=run, reason=reason),
        "params_json": json.dumps(run.params, ensure_ascii=False),
    }
    if run.scorer == "minhash":
        context["clusters"] = selectors.run_clusters(run=run, offset=offset)
        context["offset"], context["next_offset"] = offset, offset + 20
        context["prev_offset"] = max(0, offset - 20)
    if request.htmx and request.GET.get("part") == "clusters":
        return render(request, "curation/run_detail.html#clusters", context)
    if request.htmx and request.GET.get("part") == "dropped":
        return render(request, "curation/run_detail.html#dropped", context)
    return render(request, "curation/run_detail.html", context)


@role_required(Role.CURATOR)
@require_POST
def redact_start(request, pk: int):
    """Write a PII-redacted copy of a dataset as a new dataset (the original is never changed)."""
    dataset = get_object_or_404(Dataset, pk=pk)
    try:
        job = services.pii_redaction_start(user=request.user, dataset=dataset,
                                           target_name=request.POST.get("target", ""),
                                           types=request.POST.getlist("types") or None)
    except ValueError as exc:
        messages.error(request, f"Cannot redact: {exc}")
        back = request.POST.get("next", "")
        return redirect(back) if back.startswith("/") and not back.startswith("//") else redirect("datasets:detail", pk=pk)
    messages.info(request, "Redaction started: the copy fills as the job runs.")
    return redirect("jobs:detail", pk=job.pk)
