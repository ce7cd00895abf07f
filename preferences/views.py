"""Preference pages: thin views (read the form, call one service, render)."""
from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.db import models
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _, ngettext

from medstudio.accounts.permissions import Role, role_required

from . import selectors, services
from .forms import BuildForm, DiversifyForm, FracForm, ReviewForm, SetForm, VoteForm
from .models import BuildRun, DiversifyRun, PreferenceExport, PreferencePair, ReviewRound, VoteRun
from medstudio.handoffs.models import PreferenceSet


def _back(pk: int) -> HttpResponse:
    return redirect(reverse("preferences:set_detail", args=[pk]))


@role_required(Role.CURATOR)
def index(request: HttpRequest) -> HttpResponse:
    form = SetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            s = services.preference_set_create(user=request.user, **form.cleaned_data)
            return _back(s.pk)
        except services.PreferenceError as exc:
            form.add_error(None, str(exc))
    return render(request, "preferences/index.html", {"sets": selectors.sets_list(), "form": form})


def strength_plot(vote: VoteRun | None) -> dict | None:
    """The strength histogram as an ECharts option; where voting flips and drops is marked by lines."""
    from django.db.models import Max, Min

    from medstudio.chart_options import histogram

    hist = ((vote.summary if vote else None) or {}).get("histogram") or {}
    counts, edges = hist.get("counts") or [], hist.get("edges") or []
    if not counts:
        return None
    cuts = PreferencePair.objects.filter(vote=vote).aggregate(
        flip=Max("strength", filter=models.Q(action="flip")), drop=Min("strength", filter=models.Q(action="drop")))
    marks, dropped = [], []
    if cuts["flip"] is not None:
        marks.append((cuts["flip"], f"flipped ≤ {cuts['flip']:.3g}"))
        dropped.append((None, cuts["flip"]))
    if cuts["drop"] is not None:
        marks.append((cuts["drop"], f"dropped ≥ {cuts['drop']:.3g}"))
        dropped.append((cuts["drop"], None))
    option = histogram(edges[0], edges[-1], {"pairs": counts}, marks=marks, dropped=dropped, x_name="strength")
    option["series"][0]["color"] = "#4a7bd0"
    return option


@role_required(Role.CURATOR)
def set_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    votes = list(selectors.votes_for(pref_set=pref_set))
    latest = next((v for v in votes if v.summary), None)
    ctx = {
        "set": pref_set,
        "counts": selectors.set_counts(pref_set=pref_set),
        "runs": selectors.runs_for(pref_set=pref_set),
        "votes": votes,
        "latest_vote": latest,
        "plot": strength_plot(latest),
        "reviews": selectors.reviews_for(pref_set=pref_set),
        "agreement": selectors.agreement(pref_set=pref_set),
        "exports": pref_set.exports.all()[:10],
        "build_form": BuildForm(),
        "vote_form": VoteForm(),
        "review_form": ReviewForm(),
    }
    return render(request, "preferences/set_detail.html", ctx)


@role_required(Role.CURATOR)
def pairs(request: HttpRequest, pk: int) -> HttpResponse:
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    f = {k: request.GET.get(k, "") for k in ("origin", "status", "action", "verdict")}
    qs = selectors.pairs_filtered(pref_set=pref_set, **f)
    try:
        after = int(request.GET.get("after") or 0)
    except ValueError:
        after = 0
    rows, next_after = selectors.pairs_page(qs=qs, after=after)
    ctx = {"set": pref_set, "pairs": rows, "next_after": next_after, "filters": f,
           "query": "&".join(f"{k}={v}" for k, v in f.items() if v)}
    template = "preferences/pairs.html#rows" if request.htmx else "preferences/pairs.html"
    return render(request, template, ctx)


@role_required(Role.CURATOR)
def pair_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pair = get_object_or_404(PreferencePair.objects.select_related("pref_set", "run", "record"), pk=pk)
    return render(request, "preferences/pair_detail.html", {"pair": pair})


@role_required(Role.CURATOR)
def build(request: HttpRequest, pk: int) -> HttpResponse:
    """Build pairs into a set. GET: the form (with HTMX: re-rendered for another builder, keeping what
    was typed); a refusal re-renders it with the typed values and what to change."""
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    if request.method != "POST":
        form = BuildForm(initial={k: v for k, v in request.GET.items() if v})
        template = "preferences/build.html#build-form" if request.htmx else "preferences/build.html"
        return render(request, template, {"set": pref_set, "build_form": form})
    form = BuildForm(request.POST)
    if form.is_valid():
        d = form.cleaned_data
        try:
            run = services.build_start(user=request.user, pref_set=pref_set, builder=d["builder"], dataset=d.get("dataset"),
                                       selection_id=d.get("selection_id"), path=(d.get("path") or "").strip(),
                                       params=form.build_params())
        except services.PreferenceError as exc:
            form.attach_error(str(exc))
        else:
            messages.success(request, _("Build run #%(run)s started.") % {"run": run.pk})
            return redirect(reverse("preferences:run_detail", args=[run.pk]))
    return render(request, "preferences/build.html", {"set": pref_set, "build_form": form}, status=400)


@role_required(Role.CURATOR)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BuildRun.objects.select_related("pref_set", "dataset", "job"), pk=pk)
    return render(request, "preferences/run_detail.html", {"run": run, "failures": run.failures.order_by("id")[:200]})


@role_required(Role.CURATOR)
@require_POST
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BuildRun, pk=pk)
    try:
        services.build_resume(user=request.user, run=run)
        messages.success(request, _("Run #%(id)s resumed.") % {"id": run.pk})
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("preferences:run_detail", args=[pk]))


@role_required(Role.CURATOR)
def vote(request: HttpRequest, pk: int) -> HttpResponse:
    """Vote on a set's pairs. GET: the form (with HTMX: re-rendered for the other voting method,
    keeping what was typed); a refusal re-renders it with the typed values."""
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    if request.method != "POST":
        form = VoteForm(initial={k: v for k, v in request.GET.items() if v})
        template = "preferences/vote.html#vote-form" if request.htmx else "preferences/vote.html"
        return render(request, template, {"set": pref_set, "vote_form": form})
    form = VoteForm(request.POST)
    if form.is_valid():
        try:
            v = services.vote_start(user=request.user, pref_set=pref_set, method=form.cleaned_data["method"],
                                    params=form.vote_params(), flip_frac=form.cleaned_data["flip_frac"],
                                    drop_frac=form.cleaned_data["drop_frac"])
        except services.PreferenceError as exc:
            low = str(exc).lower()
            field = "judges" if "judge" in low and "judges" in form.fields else "k" if low.startswith("k ") and "k" in form.fields else None
            form.add_error(field, str(exc))
        else:
            messages.success(request, _("Vote #%(vote)s started.") % {"vote": v.pk})
            return _back(pk)
    return render(request, "preferences/vote.html", {"set": pref_set, "vote_form": form}, status=400)


@role_required(Role.CURATOR)
@require_POST
def vote_apply(request: HttpRequest, pk: int) -> HttpResponse:
    v = get_object_or_404(VoteRun, pk=pk)
    form = FracForm(request.POST)
    if form.is_valid():
        try:
            services.vote_apply(user=request.user, vote=v, **form.cleaned_data)
            messages.success(request, _("Flip / drop fractions applied."))
        except services.PreferenceError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, _("Fractions must be numbers between 0 and 1."))
    return _back(v.pref_set_id)


@role_required(Role.CURATOR)
@require_POST
def vote_resume(request: HttpRequest, pk: int) -> HttpResponse:
    v = get_object_or_404(VoteRun, pk=pk)
    try:
        services.vote_resume(user=request.user, vote=v)
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
    return _back(v.pref_set_id)


@role_required(Role.CURATOR)
@require_POST
def review(request: HttpRequest, pk: int) -> HttpResponse:
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Review:") + " " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return _back(pk)
    try:
        r = services.review_send(user=request.user, pref_set=pref_set, **form.cleaned_data)
        messages.success(request, ngettext("%(n)s pair sent to clinician queue %(queue)s.", "%(n)s pairs sent to clinician queue %(queue)s.",
                                          r.n_pairs) % {"n": r.n_pairs, "queue": r.queue.name})
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
    return _back(pk)


@role_required(Role.CURATOR)
@require_POST
def review_sync(request: HttpRequest, pk: int) -> HttpResponse:
    r = get_object_or_404(ReviewRound, pk=pk)
    try:
        out = services.review_sync(user=request.user, review=r)
        messages.success(request, _("%(verdicts)s verdict(s) applied; %(unresolved)s split decision(s) left open.") % out)
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
    return _back(r.pref_set_id)


@role_required(Role.CURATOR)
@require_POST
def export(request: HttpRequest, pk: int) -> HttpResponse:
    pref_set = get_object_or_404(PreferenceSet, pk=pk)
    try:
        job = services.export_start(user=request.user, pref_set=pref_set)
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
        return _back(pk)
    return redirect(reverse("jobs:detail", args=[job.pk]))


@role_required(Role.CURATOR)
def export_download(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    e = get_object_or_404(PreferenceExport, pk=pk)
    path = (e.files or {}).get(fmt)
    if not path or not Path(path).is_file():
        raise Http404("No such export file.")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=Path(path).name)


@role_required(Role.CURATOR)
def diversify(request: HttpRequest) -> HttpResponse:
    """The diversification form (GET with HTMX: the form again for another target, keeping what was
    typed); a refusal re-renders it with what was typed and the field to change."""
    if request.method != "POST":
        form = DiversifyForm(initial={k: v for k, v in request.GET.items()} if request.htmx else None)
        if request.htmx:
            return render(request, "preferences/diversify.html#diversify-form", {"form": form})
    else:
        form = DiversifyForm(request.POST)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        params = {k: d[k] for k in ("rounds", "m", "n", "k", "seed")}
        params.update({k: d[k].strip() for k in ("backend", "base_url", "model") if d.get(k)})
        try:
            run = services.diversify_start(user=request.user, seeds=d["seeds"].splitlines(), source=d.get("source"),
                                           output_name=d.get("output_name") or "", params=params)
            return redirect(reverse("preferences:diversify_detail", args=[run.pk]))
        except services.PreferenceError as exc:
            form.add_error("seeds" if "seed instruction" in str(exc) else None, str(exc))
    return render(request, "preferences/diversify.html", {"form": form, "runs": selectors.diversify_runs()[:20]})


@role_required(Role.CURATOR)
def diversify_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(DiversifyRun.objects.select_related("source", "output", "job"), pk=pk)
    state = run.state or {}
    return render(request, "preferences/diversify_detail.html",
                  {"run": run, "accepted": state.get("accepted", []), "log": state.get("log", []),
                   "banks": state.get("banks", {})})


@role_required(Role.CURATOR)
@require_POST
def diversify_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(DiversifyRun, pk=pk)
    try:
        services.diversify_resume(user=request.user, run=run)
    except services.PreferenceError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("preferences:diversify_detail", args=[pk]))
