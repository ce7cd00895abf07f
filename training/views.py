"""Training pages: runs (list, new, detail with live curves, cancel) and the model registry.

Admins launch and cancel; curators and clinicians view (issue 8, point 8).
"""
from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from medstudio.accounts.permissions import Role, role_required

from . import selectors, services
from .charts import curve_options, run_label
from .forms import ModelRefForm, RunForm
from .models import ModelRef, TrainingRun
from .pipeline import launcher
from .pipeline.specs import NEXT_STAGE, STAGES, SpecError


@role_required(Role.CLINICIAN)
def run_list(request):
    return render(request, "training/runs.html", {"runs": selectors.runs_list()[:200]})


KEEP_ON_STAGE_CHANGE = ("name", "nodes", "gpus_per_node", "hosts", "launcher", "distributed")


@role_required(Role.ADMIN)
def run_new(request):
    """The launch form. GET ?stage=&base=&merge_base= pre-fills it (the "next stage" button)."""
    if request.method == "POST":
        form = RunForm(request.POST)
        if form.is_valid():
            d = form.cleaned_data
            try:
                run = services.training_run_start(
                    actor=request.user, spec=form.to_spec(), base_model=d["base_model"],
                    data_ref=d["data"], name=d["name"], merge_base=d.get("merge_base"))
            except SpecError as exc:
                form.add_spec_errors(exc.errors)
            else:
                messages.success(request, _("Run %(run)s launched.") % {"run": run.pk})
                return redirect("training:run_detail", pk=run.pk)
    else:
        stage = request.GET.get("stage") if request.GET.get("stage") in STAGES else "cpt-stable"
        initial = RunForm.initial_for(stage)
        # "base" from the next-stage links; "base_model" when the stage select reloads the form.
        for key, field in (("base", "base_model"), ("base_model", "base_model"), ("merge_base", "merge_base")):
            value = request.GET.get(key, "")
            ref = ModelRef.objects.filter(pk=value).first() if value.isdigit() else None
            if ref:
                initial[field] = ref.pk
        if request.GET.get("data"):
            initial["data"] = request.GET["data"]  # "type:id", from the pipeline board's next-step buttons
        # A stage change (HTMX) brings the stage's own defaults but keeps what is not stage-specific.
        for key in KEEP_ON_STAGE_CHANGE:
            if request.GET.get(key):
                initial[key] = request.GET[key]
        form = RunForm(initial=initial)
    template = "training/run_new.html#run-form" if request.htmx else "training/run_new.html"
    return render(request, template, {"form": form})


def _data_node(run: TrainingRun) -> dict | None:
    from medstudio.handoffs import lineage

    ref = run.data_ref or {}
    return lineage.node(lineage.node_id(ref["type"], ref["id"])) if ref.get("type") and ref.get("id") else None


def _shares(ref: dict) -> list[dict]:
    """Planned vs achieved token shares of a mixture run, by category and by language."""
    targets, achieved = ref.get("targets") or {}, ref.get("achieved") or {}
    rows = []
    for axis, label in (("categories", "category"), ("langs", "language")):
        want = targets.get(axis) or {}
        total = sum(want.values()) or 1
        for key in sorted(set(want) | set(achieved.get(axis) or {})):
            planned, got = want.get(key, 0) / total, (achieved.get(axis) or {}).get(key, 0.0)
            rows.append({"axis": label, "key": key, "planned": 100 * planned, "achieved": 100 * got, "diff": 100 * (got - planned)})
    return rows


def _compare_choices(run: TrainingRun):
    """Other runs that can be overlaid on this one: the same stage or the same base model, newest first."""
    from django.db.models import Q

    return (selectors.runs_list().filter(Q(stage=run.stage) | Q(base_model_id=run.base_model_id))
            .exclude(pk=run.pk).order_by("-pk")[:30])


def _data_type_word(kind: str) -> str:
    """A training data source type in the reader's language (the stored type stays a code)."""
    words = {"dataset": _("dataset"), "selection": _("selection"), "mixture": _("mixture"),
             "corpus_selection": _("corpus selection"), "preference_set": _("preference set")}
    return words.get(kind, kind.replace("_", " "))


def _run_cause(run) -> str:
    """A failed run's cause in one plain line in the reader's language, worked out again at display
    time from the log tail (the stored error is the worker's English words)."""
    from medstudio.jobs.errors import plain_cause

    if run.status != "failed":
        return ""
    return (plain_cause(launcher.clean_console(run.log_tail or ""), first_line=False, translate=_)
            or plain_cause(run.error or "", translate=_))


@role_required(Role.CLINICIAN)
def run_detail(request, pk: int):
    run = get_object_or_404(selectors.runs_list(), pk=pk)
    series = selectors.run_series(run)
    choices = list(_compare_choices(run))
    wanted = {int(x) for x in request.GET.getlist("compare") if x.isdigit()}
    compared = [r for r in choices if r.pk in wanted]
    others = [(run_label(r.pk), selectors.run_series(r)) for r in compared]
    charts = []
    for title, names in selectors.CHARTS:
        option = curve_options(title, names, series, others)
        if option is not None:
            option["title"]["text"] = _(title)
            charts.append({"title": _(title), "option": option})
    final = run.checkpoints.filter(is_final=True).select_related("model_ref").first()
    context = {
        "data_node": _data_node(run), "shares": _shares(run.data_ref or {}),
        "data_type": _data_type_word(str((run.data_ref or {}).get("type", ""))),
        "run": run, "charts": charts, "compare_choices": choices, "compared": {r.pk for r in compared}, "checkpoints": selectors.run_checkpoints(run),
        "latest": {n: pts[-1][1] for n, pts in series.items() if pts},
        "next_stage": NEXT_STAGE.get(run.stage), "final": final,
        "log_tail": launcher.clean_console(run.log_tail),  # stored before control codes were stripped
        "cause": _run_cause(run),
        "logs": run.job.logs.order_by("-at", "-id")[:30] if run.job else [],
        # The training process's own output (read from the run directory when this host can see it).
        "train_log": launcher.log_tail(Path(run.run_dir) / "train.log", 25) if run.run_dir else "",
    }
    template = "training/run_detail.html#live" if request.htmx else "training/run_detail.html"
    return render(request, template, context)


@role_required(Role.ADMIN)
@require_POST
def run_cancel(request, pk: int):
    run = get_object_or_404(TrainingRun, pk=pk)
    services.training_run_cancel(actor=request.user, run=run)
    messages.info(request, _("Cancel requested for run %(id)s.") % {"id": run.pk})
    return redirect("training:run_detail", pk=run.pk)


@role_required(Role.CLINICIAN)
def model_list(request):
    form = ModelRefForm()
    return render(request, "training/models.html", {"models": selectors.models_list()[:300], "form": form})


@role_required(Role.ADMIN)
@require_POST
def model_register(request):
    form = ModelRefForm(request.POST)
    if form.is_valid():
        try:
            ref = services.model_ref_create(actor=request.user, **form.cleaned_data)
        except SpecError as exc:
            for key, msg in exc.errors.items():
                form.add_error(key if key in form.fields else None, msg)
        else:
            messages.success(request, _("Model %(name)s registered.") % {"name": ref.name})
            return redirect("training:model_detail", pk=ref.pk)
    return render(request, "training/models.html", {"models": selectors.models_list()[:300], "form": form}, status=400)


@role_required(Role.CLINICIAN)
def model_detail(request, pk: int):
    ref = get_object_or_404(selectors.models_list(), pk=pk)
    next_stage = NEXT_STAGE.get(ref.stage) if ref.stage else "cpt-stable"
    # DPO with merging needs theta_base: the model the SFT run started from.
    merge_base = ref.parent if next_stage == "dpo" else None
    from medstudio.handoffs import lineage

    graph = lineage.graph(lineage.node_id("model", ref.pk))
    return render(request, "training/model_detail.html", {
        "model": ref, "lineage": ref.lineage(), "next_stage": next_stage, "merge_base": merge_base,
        "graph": lineage.layout(graph), "graph_types": sorted({n["type"] for n in graph["nodes"]}),
        "runs": ref.runs.all()[:20], "children": ref.children.all()[:20],
    })
