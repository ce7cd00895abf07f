import json

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from medstudio.accounts.permissions import Role, role_required
from medstudio.chart_options import bars, histogram
from medstudio.datasets.models import Dataset

from . import selectors, services
from medstudio.handoffs.models import ScorerRun
from .scoring import scorer_run_start


@role_required(Role.CURATOR)
def run_start(request, pk: int):
    """"Run scorer" on a dataset: the scorer's own settings as typed fields (GET: the form, or with
    HTMX the form re-rendered for another scorer or mode). A refusal (a bad value, a model or
    setting that is missing) re-renders the form with what was typed and says what to change;
    no job starts."""
    from medstudio.handoffs.scorer_forms import ScorerRunForm

    dataset = get_object_or_404(Dataset, pk=pk)
    if request.method != "POST":
        form = ScorerRunForm.initial_from(request.GET, dataset=dataset)
        template = "curation/scorer_new.html#scorer-form" if request.htmx else "curation/scorer_new.html"
        return render(request, template, {"form": form, "dataset": dataset})
    form = ScorerRunForm(request.POST, dataset=dataset)
    if form.is_valid():
        try:
            run = scorer_run_start(user=request.user, dataset=dataset, scorer=form.cleaned_data["scorer"],
                                   params=form.scorer_settings(), shards=form.cleaned_data["shards"] or 1)
        except (ValueError, LookupError) as exc:
            form.attach_error(str(exc))
        else:
            messages.info(request, _("Scorer %(scorer)s started (run %(run)s).") % {"scorer": run.scorer, "run": run.pk})
            return redirect("jobs:detail", pk=run.job_id)
    return render(request, "curation/scorer_new.html", {"form": form, "dataset": dataset}, status=400)


def _bars(rows: list[dict], title: str, color: str) -> dict | None:
    """Horizontal bars of records per reason (an ECharts option; None when there is nothing to draw)."""
    if not rows:
        return None
    option = bars([r["reason"] or "(none)" for r in rows], {"records": [r["n"] for r in rows]}, horizontal=True)
    option["series"][0].update(color=color, label={"show": True, "position": "right"})
    option["title"] = {"show": False}
    option["aria"] = {"enabled": True, "label": {"description": title}}
    return option


def _value_histogram(run: ScorerRun) -> dict | None:
    """Score values, kept vs dropped; a scorer with a similarity threshold (MinHash) shows it as a line."""
    hist = selectors.run_value_histogram(run=run)
    if not hist:
        return None
    marks = []
    threshold = ((run.summary or {}).get("config") or {}).get("threshold", (run.params or {}).get("threshold"))
    if isinstance(threshold, (int, float)):
        marks.append((float(threshold), f"threshold {threshold:g}"))
    return histogram(hist["lo"], hist["hi"], hist["series"], marks=marks)


def _bars_height(rows: list) -> str:
    return f"{40 + 26 * len(rows)}px"


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
    reasons = selectors.run_drop_reasons(run=run)
    per_rule = [{"reason": k, "n": v} for k, v in (summary.get("per_rule") or {}).items()]
    context = {
        "run": run, "dataset": run.dataset, "counts": selectors.run_counts(run=run), "reasons": reasons,
        "reasons_chart": _bars(reasons, "drops by reason", "#64748b"), "reasons_height": _bars_height(reasons),
        "per_rule": per_rule, "per_rule_chart": _bars(per_rule, "failures per rule", "#0f766e"),
        "per_rule_height": _bars_height(per_rule), "value_chart": _value_histogram(run),
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
        messages.error(request, _("Cannot redact: %(error)s") % {"error": exc})
        back = request.POST.get("next", "")
        return redirect(back) if back.startswith("/") and not back.startswith("//") else redirect("datasets:detail", pk=pk)
    messages.info(request, _("Redaction started: the copy fills as the job runs."))
    return redirect("jobs:detail", pk=job.pk)
