"""Evaluation pages: runs (launch, detail with prompts and raw outputs, repeat), MCQ leaderboard,
pairwise comparison, memorisation hits. Thin: forms in, one service or selector, render."""
from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _, ngettext

from medstudio.accounts.permissions import Role, role_required
from medstudio.datasets.models import Dataset

from . import selectors, services
from .forms import EvalRunForm, HarnessRunForm, HitReviewForm, RiskCheckForm
from .models import EvalKind, EvalRun, HighRiskStore, HitStatus, MemorizationHit


@role_required(Role.CURATOR)
def home(request):
    return render(request, "evaluation/home.html", _home_context(request))


def _home_context(request, *, harness_form=None, tasks=None) -> dict:
    kind = request.GET.get("kind") or ""
    run_list = selectors.runs(kind=kind or None)[:200]
    benchmarks = Dataset.objects.filter(eval_runs__kind=EvalKind.MCQ).distinct().order_by("name")
    tasks = selectors.harness_tasks() if tasks is None else tasks
    return {"runs": run_list, "kind": kind, "kinds": EvalKind.choices, "benchmarks": benchmarks,
            "open_hits": selectors.hits(status=HitStatus.OPEN).count(),
            "harness_tasks": tasks, "harness_board": selectors.harness_leaderboard(),
            "harness_form": harness_form or HarnessRunForm(tasks=tasks), "harness_open": harness_form is not None,
            "datasets_dir": services.eval_datasets_dir()}


@role_required(Role.ADMIN)
def harness_new(request):
    """Start an lm-evaluation-harness run on local task copies (the form is on the evaluation page).
    GET with HTMX: the form again for another backend; a refusal re-renders the evaluation page with
    the form open, what was typed and the field to change."""
    tasks = selectors.harness_tasks()
    if request.method != "POST":
        if not request.htmx:
            return redirect(reverse("evaluation:home") + "#harness")
        form = HarnessRunForm(initial={k: v for k, v in request.GET.items()}, tasks=tasks)
        return render(request, "evaluation/home.html#harness-form", {"harness_form": form, "is_admin": True})
    form = HarnessRunForm(request.POST, tasks=tasks)
    if form.is_valid():
        spec, params = form.spec_and_params()
        try:
            run = services.harness_run_start(user=request.user, tasks=form.cleaned_data["tasks"],
                                             model_name=form.cleaned_data.get("model_name") or "", model_spec=spec, params=params)
        except services.EvalConfigError as exc:
            form.attach_error(str(exc), exc.field)
        else:
            messages.info(request, _("lm-eval run #%(id)s started.") % {"id": run.pk})
            return redirect("evaluation:run", pk=run.pk)
    return render(request, "evaluation/home.html", _home_context(request, harness_form=form, tasks=tasks), status=400)


@role_required(Role.ADMIN)
def run_new(request):
    """The launch form. GET ?kind=&dataset=&model_ref= pre-fills it (the pipeline board's next step
    after DPO); with HTMX (the kind or backend select changed) it returns the form with only that
    kind's and backend's fields, keeping what was typed."""
    if request.method != "POST":
        initial = {k: v for k, v in request.GET.items() if v}
        initial.setdefault("kind", EvalKind.MCQ)
        form = EvalRunForm(initial=initial)
        template = "evaluation/run_new.html#eval-form" if request.htmx else "evaluation/run_new.html"
        return render(request, template, {"form": form})
    form = EvalRunForm(request.POST)
    if form.is_valid():
        spec, params = form.spec_and_params()
        try:
            run = services.eval_run_start(user=request.user, kind=form.cleaned_data["kind"], dataset=form.cleaned_data["dataset"],
                                          model_name=form.cleaned_data.get("model_name") or "", model_spec=spec, params=params,
                                          model_ref=form.cleaned_data.get("model_ref"))
        except services.EvalConfigError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.info(request, _("Evaluation #%(id)s started.") % {"id": run.pk})
            return redirect("evaluation:run", pk=run.pk)
    return render(request, "evaluation/run_new.html", {"form": form}, status=400 if form.errors else 200)


@role_required(Role.CURATOR)
def run_detail(request, pk: int):
    run = get_object_or_404(EvalRun.objects.select_related("dataset", "job"), pk=pk)
    only = request.GET.get("only", "")
    page = Paginator(selectors.items(run=run, only=only), 25).get_page(request.GET.get("page"))
    ctx = {"run": run, "page": page, "only": only, "hits": selectors.hits(run=run)[:200] if run.kind == EvalKind.MEMORIZATION else [],
           "store": getattr(run, "high_risk_store", None) if run.kind == EvalKind.MEMORIZATION else None,
           "others": selectors.runs(kind=run.kind, dataset_id=run.dataset_id).exclude(pk=run.pk)[:50],
           "per_subject": sorted((run.summary.get("per_subject") or {}).items())}
    if request.htmx and not request.GET.get("live"):  # live=1: the page polls itself while the run is going
        return render(request, "evaluation/run_detail.html#items", ctx)
    if run.kind == EvalKind.MCQ:
        ctx["invalid_groups"] = selectors.invalid_extractions(runs=[run])
    if run.kind == EvalKind.CONSULTATION:
        ctx["reviews"] = [(r, selectors.judge_clinician_agreement(r))
                          for r in run.clinician_reviews.select_related("queue", "dataset")[:20]]
    return render(request, "evaluation/run_detail.html", ctx)


@role_required(Role.ADMIN)
@require_POST
def run_repeat(request, pk: int):
    run = get_object_or_404(EvalRun, pk=pk)
    try:
        new = services.eval_run_repeat(user=request.user, run=run)
    except services.EvalConfigError as exc:  # the model or dataset is gone since: say so, no 500
        messages.error(request, str(exc))
        return redirect("evaluation:run", pk=run.pk)
    messages.info(request, _("Evaluation #%(new)s repeats #%(old)s with the same settings.") % {"new": new.pk, "old": run.pk})
    return redirect("evaluation:run", pk=new.pk)


@role_required(Role.CURATOR)
def leaderboard(request, dataset_id: int):
    dataset = get_object_or_404(Dataset, pk=dataset_id)
    board = selectors.leaderboard(dataset_id=dataset.pk)
    return render(request, "evaluation/leaderboard.html", {"dataset": dataset, **board,
                                                           "harness_board": selectors.harness_leaderboard()})


@role_required(Role.CURATOR)
def compare(request):
    try:
        a = get_object_or_404(EvalRun, pk=int(request.GET.get("a", "")))
        b = get_object_or_404(EvalRun, pk=int(request.GET.get("b", "")))
    except ValueError:
        raise Http404("Pick two runs to compare (?a=ID&b=ID).") from None
    if a.dataset_id != b.dataset_id or a.kind != b.kind:
        messages.error(request, _("Only runs of the same kind on the same dataset can be compared."))
        return redirect("evaluation:run", pk=a.pk)
    return render(request, "evaluation/compare.html", {"a": a, "b": b, "cmp": selectors.compare(a=a, b=b)})


@role_required(Role.CURATOR)
def hit_list(request):
    status = request.GET.get("status", HitStatus.OPEN)
    page = Paginator(selectors.hits(status=status), 50).get_page(request.GET.get("page"))
    return render(request, "evaluation/hits.html", {"page": page, "status": status, "statuses": HitStatus.choices})


@role_required(Role.CURATOR)
@require_POST
def hit_review(request, pk: int):
    hit = get_object_or_404(MemorizationHit, pk=pk)
    form = HitReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Unknown review status."))
    else:
        services.memorization_hit_review(user=request.user, hit=hit, status=form.cleaned_data["status"])
    if request.htmx:
        return render(request, "evaluation/hits.html#hit_row", {"hit": hit, "statuses": HitStatus.choices})
    nxt = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
        return redirect(nxt)
    return redirect("evaluation:hits")


@role_required(Role.CURATOR)
@require_POST
def store_check(request, pk: int):
    store = get_object_or_404(HighRiskStore, pk=pk)
    form = RiskCheckForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Give a prompt to check."))
        return redirect("evaluation:run", pk=store.run_id)
    try:
        job = services.high_risk_check_start(user=request.user, store=store, prompt=form.cleaned_data["prompt"],
                                             threshold=form.cleaned_data.get("threshold"))
    except services.EvalConfigError as exc:
        messages.error(request, str(exc))
        return redirect("evaluation:run", pk=store.run_id)
    return redirect("jobs:detail", pk=job.pk)


@role_required(Role.CURATOR)
def models_compare(request):
    """Two or more models side by side: MCQ accuracy per subject with spread over seeds, consultation
    judge scores per turn, win/tie/loss against the first model; ?format=csv downloads the numbers."""
    import csv

    from django.http import HttpResponse

    from . import charts

    names = charts.model_names()
    picked = [m for m in dict.fromkeys(request.GET.getlist("m")) if m in names]
    mcq_sets = Dataset.objects.filter(eval_runs__kind=EvalKind.MCQ).distinct().order_by("name")
    con_sets = Dataset.objects.filter(eval_runs__kind=EvalKind.CONSULTATION).distinct().order_by("name")

    def pick(qs, key):
        try:
            wanted = int(request.GET.get(key) or 0)
        except ValueError:
            wanted = 0
        ids = [d.pk for d in qs]
        return wanted if wanted in ids else (ids[0] if ids else None)

    mcq_id, con_id = pick(mcq_sets, "mcq"), pick(con_sets, "consult")
    data = charts.comparison(models=picked, mcq_dataset_id=mcq_id, consult_dataset_id=con_id) if len(picked) >= 2 else None
    if data is not None and request.GET.get("format") == "csv":
        resp = HttpResponse(content_type="text/csv; charset=utf-8")
        resp["Content-Disposition"] = 'attachment; filename="model_comparison.csv"'
        csv.writer(resp).writerows(charts.csv_rows(data))
        return resp
    ctx = {"names": names, "picked": picked, "mcq_sets": mcq_sets, "con_sets": con_sets, "mcq_id": mcq_id, "con_id": con_id,
           "data": data}
    if data is not None:
        ctx.update(acc_option=charts.accuracy_option(data), turns_option=charts.turns_option(data),
                   wtl_option=charts.wtl_option(data), csv_query=request.GET.urlencode())
    return render(request, "evaluation/models_compare.html", ctx)


@role_required(Role.CURATOR)
@require_POST
def clinician_review_new(request, pk: int):
    """Send a sample of this consultation run's judge-scored replies to a clinician rating queue."""
    run = get_object_or_404(EvalRun, pk=pk)

    def num(key, default, lo, hi):
        try:
            return min(hi, max(lo, int(request.POST.get(key) or default)))
        except ValueError:
            return default

    try:
        review = services.clinician_review_send(user=request.user, run=run, n=num("n", 30, 1, 2000),
                                                seed=num("seed", 0, 0, 10**6), annotators_per_item=num("annotators", 1, 1, 20))
    except services.EvalConfigError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, ngettext("%(n)s judged reply sent to clinician queue %(queue)s.",
                                          "%(n)s judged replies sent to clinician queue %(queue)s.", review.n_items)
                         % {"n": review.n_items, "queue": review.queue.name})
    return redirect("evaluation:run", pk=run.pk)
