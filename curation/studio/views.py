"""Threshold studio pages: thin views over selectors (reads) and services (writes)."""
from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from medstudio.accounts.permissions import Role, role_required
from medstudio.datasets.convert import EXPORT_FORMATS as FORMATS
from medstudio.datasets.models import Dataset

from . import selectors, services
from .charts import histogram_option, plan_option
from .models import SelectionExport
from medstudio.handoffs.models import Mixture, Recipe, RecipeVersion, Selection
from .spec import Spec, SpecError, parse_spec

# Datasets up to this size get their score matrix refreshed while the page loads; larger ones by a job.
INLINE_SYNC_MAX_RECORDS = 200_000


def _dataset_ids(request) -> list[int]:
    data = request.POST if request.method == "POST" else request.GET
    ids = []
    for raw in data.getlist("ds"):
        for part in str(raw).split(","):
            if part.strip().isdigit():
                ids.append(int(part))
    return sorted(set(ids))


def _scope(request) -> selectors.Scope:
    ids = _dataset_ids(request)
    if not ids:
        raise Http404("No dataset given.")
    try:
        return selectors.scope_load(ids)
    except Dataset.DoesNotExist:
        raise Http404("Unknown dataset.") from None


def _spec_from_form(data, scope: selectors.Scope) -> Spec:
    """Form fields min.NAME / max.NAME / unscored.NAME / flag.NAME -> canonical conditions."""
    bounds = []
    for name in scope.value:
        lo, hi = data.get(f"min.{name}", "").strip(), data.get(f"max.{name}", "").strip()
        if lo or hi or data.get(f"require.{name}"):
            bounds.append({"scorer": name, "min": lo or None, "max": hi or None, "keep_unscored": bool(data.get(f"unscored.{name}"))})
    flags = [name for name in scope.flag if data.get(f"flag.{name}")]
    return parse_spec({"bounds": bounds, "flags": flags})


def _hist_cards(scope, spec: Spec, split: str | None) -> list[dict]:
    cards = []
    for name, sc in scope.value.items():
        hist = selectors.histogram(scope, name, split=split)
        b = spec.bound(name)
        step = ((sc.hi - sc.lo) / 200) if (sc.lo is not None and sc.hi is not None and sc.hi > sc.lo) else 0.01
        cards.append({"name": name, "sc": sc, "bound": b, "hist": hist, "step": f"{step:.6g}",
                      "chart": histogram_option(hist, b.min if b else None, b.max if b else None)})
    return cards


def _sync_if_needed(request, datasets) -> list:
    jobs = []
    from medstudio.jobs.services import job_create

    for ds in datasets:
        if services.matrix_is_current(dataset=ds):
            continue
        if ds.n_records <= INLINE_SYNC_MAX_RECORDS:
            try:
                services.matrix_sync(dataset=ds, actor=request.user)
            except services.StudioError as exc:
                messages.error(request, str(exc))
        else:
            from medstudio.jobs.models import Job, JobStatus

            running = Job.objects.filter(kind="studio.matrix_sync", params__dataset_id=ds.pk,
                                         status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).first()
            jobs.append(running or job_create(kind="studio.matrix_sync", params={"dataset_id": ds.pk}, user=request.user))
    return jobs


@role_required(Role.CURATOR)
def studio_home(request):
    return render(request, "studio/home.html", {
        "datasets": Dataset.objects.filter(helper_role=""), "recipes": selectors.recipes_list()[:50],
        "selections": selectors.selections_list()[:50], "mixtures": selectors.mixtures_list()[:20],
    })


@role_required(Role.CURATOR)
def studio(request):
    ids = _dataset_ids(request)
    version = None
    if vid := request.GET.get("version"):
        version = get_object_or_404(RecipeVersion.objects.select_related("recipe"), pk=vid)
        ids = ids or sorted(version.datasets.values_list("id", flat=True))
    datasets = list(Dataset.objects.filter(pk__in=ids))
    if not datasets:
        messages.error(request, _("Pick at least one dataset."))
        return redirect("studio:home")
    sync_jobs = _sync_if_needed(request, datasets)
    scope = selectors.scope_load([d.pk for d in datasets])
    spec = selectors.version_spec(version) if version else Spec()
    split = request.GET.get("split") if request.GET.get("split") in ("lang", "source") else None
    counts = selectors.kept_counts(scope, spec)
    return render(request, "studio/studio.html", {
        "scope": scope, "datasets": datasets, "ds_ids": ",".join(str(d.pk) for d in datasets), "spec": spec,
        "cards": _hist_cards(scope, spec, split), "split": split or "", "counts": counts, "version": version,
        "flags": [{"name": n, "sc": sc, "on": n in spec.flags} for n, sc in scope.flag.items()],
        "reasons": selectors.drop_reasons(scope), "clusters": selectors.duplicate_clusters(scope), "sync_jobs": sync_jobs,
        "recipe_name": version.recipe.name if version else "",
    })


@role_required(Role.CURATOR)
@require_POST
def studio_counts(request):
    scope = _scope(request)
    try:
        spec = _spec_from_form(request.POST, scope)
    except SpecError as exc:
        return render(request, "studio/studio.html#results", {"error": str(exc), "scope": scope})
    counts = selectors.kept_counts(scope, spec, base_key=request.POST.get("base") or None)
    split = request.POST.get("split") if request.POST.get("split") in ("lang", "source") else None
    return render(request, "studio/studio.html#results", {
        "scope": scope, "spec": spec, "counts": counts, "cards": _hist_cards(scope, spec, split), "oob": True,
        "ds_ids": ",".join(map(str, scope.dataset_ids)),
    })


@role_required(Role.CURATOR)
@require_POST
def studio_samples(request):
    scope = _scope(request)
    try:
        spec = _spec_from_form(request.POST, scope)
    except SpecError as exc:
        return HttpResponse(f'<p class="error">{exc}</p>')
    samples = []
    for b in spec.bounds:
        if b.scorer in scope.value:
            rows = selectors.samples_near(scope, spec, b.scorer)
            labelled = {f"just {k.split('_')[1]} {k.split('_')[0]}": v for k, v in rows.items()}
            samples.append({"name": b.scorer, "bound": b, "rows": labelled})
    return render(request, "studio/studio.html#samples", {"samples": samples})


@role_required(Role.CURATOR)
@require_POST
def recipe_save(request):
    scope = _scope(request)
    try:
        spec = _spec_from_form(request.POST, scope)
        version = services.recipe_version_create(user=request.user, name=request.POST.get("recipe_name", ""),
                                                 datasets=scope.datasets, conditions=spec.as_dict(),
                                                 note=request.POST.get("note", ""))
    except (SpecError, services.StudioError) as exc:
        return render(request, "studio/studio.html#saved", {"save_error": str(exc)})
    return render(request, "studio/studio.html#saved", {"saved": version})


@role_required(Role.CURATOR)
def recipe_detail(request, pk: int):
    recipe = get_object_or_404(Recipe, pk=pk)
    versions = list(recipe.versions.prefetch_related("datasets").order_by("-number"))
    diff = None
    a_id, b_id = request.GET.get("a"), request.GET.get("b")
    if a_id and b_id:
        a = get_object_or_404(RecipeVersion, pk=a_id, recipe=recipe)
        b = get_object_or_404(RecipeVersion, pk=b_id, recipe=recipe)
        diff = {"a": a, "b": b, **selectors.recipe_diff(a, b)}
    elif len(versions) >= 2:
        a_id, b_id = versions[1].pk, versions[0].pk
    return render(request, "studio/recipe.html", {"recipe": recipe, "versions": versions, "diff": diff,
                                                  "a_id": int(a_id) if a_id else None, "b_id": int(b_id) if b_id else None})


@role_required(Role.CURATOR)
@require_POST
def recipe_apply(request, pk: int):
    version = get_object_or_404(RecipeVersion, pk=pk)
    sel = services.selection_apply_start(user=request.user, version=version, name=request.POST.get("name", ""))
    messages.info(request, _("Applying %(version)s as selection #%(id)s.") % {"version": version, "id": sel.pk})
    return redirect("studio:selection", pk=sel.pk)


@role_required(Role.CURATOR)
def selection_detail(request, pk: int):
    sel = get_object_or_404(Selection.objects.select_related("recipe_version__recipe", "job"), pk=pk)
    return render(request, "studio/selection.html", {"sel": sel, "formats": FORMATS, "exports": sel.exports.all(),
                                                     "datasets": sel.datasets.all()})


@role_required(Role.CURATOR)
@require_POST
def selection_export(request, pk: int):
    sel = get_object_or_404(Selection, pk=pk)
    try:
        export = services.selection_export_start(user=request.user, selection=sel, fmt=request.POST.get("format", ""))
    except services.StudioError as exc:
        messages.error(request, str(exc))
        return redirect("studio:selection", pk=sel.pk)
    export.refresh_from_db()
    if export.status != "succeeded" and export.job_id:
        return redirect("jobs:detail", pk=export.job_id)
    return redirect(reverse("studio:selection", args=[sel.pk]) + f"#export-{export.pk}")


def _serve(folder: str, files: list, name: str):
    if name not in (files or []):
        raise Http404("No such file in this export.")
    path = Path(folder) / name
    try:
        return FileResponse(open(path, "rb"), as_attachment=True, filename=name)
    except FileNotFoundError:
        raise Http404("The file is gone.") from None


@role_required(Role.CURATOR)
def export_file(request, pk: int, name: str):
    export = get_object_or_404(SelectionExport, pk=pk)
    return _serve(export.path, export.files, name)


# Language names for plan warnings; other codes are shown as they are.
LANG_NAMES = {"zh": gettext_lazy("Chinese"), "en": gettext_lazy("English")}


def plan_warnings(plan: dict) -> list[str]:
    """What a plan could not have, in words: a target language no source holds (docs/METHODS.md 1.6)."""
    out = []
    for m in (plan or {}).get("missing") or []:
        out.append(gettext("No %(lang)s available: 0 of %(tokens)s tokens planned (target share %(share)s); "
                           "the other languages' ratios are renormalised.") % {
            "lang": LANG_NAMES.get(m["lang"], m["lang"]), "tokens": intcomma(m["tokens"]),
            "share": f"{float(m['share']):.1%}"})
    return out


def _dataset_choices() -> tuple[list, dict[int, list]]:
    """Datasets a mixture may draw from (helper datasets such as review rounds left out) and the recipe
    versions made for each, newest first."""
    datasets = list(Dataset.objects.filter(helper_role="").order_by("name")[:200])
    versions: dict[int, list] = {d.pk: [] for d in datasets}
    through = RecipeVersion.datasets.through
    pairs = through.objects.filter(dataset_id__in=list(versions)).values_list("dataset_id", "recipeversion_id")
    by_id = RecipeVersion.objects.select_related("recipe").in_bulk({v for _d, v in pairs})
    for ds_id, v_id in sorted(pairs, key=lambda p: -p[1]):
        if len(versions[ds_id]) < 20:
            versions[ds_id].append(by_id[v_id])
    return datasets, versions


@role_required(Role.CURATOR)
def mixture_new(request):
    from curation.pipeline.mixing import PRESETS

    selections = list(Selection.objects.filter(status=Selection.Status.READY).order_by("-id")[:100])
    datasets, versions = _dataset_choices()
    data = request.POST if request.method == "POST" else request.GET
    stage = data.get("stage") or "stable"
    preset = PRESETS.get(stage, PRESETS["stable"])
    form = {
        "name": request.POST.get("name", ""), "stage": stage, "budget": request.POST.get("budget", "1000000"),
        "strategy": request.POST.get("strategy", "independent"), "shard_tokens": request.POST.get("shard_tokens", "50000000"),
        "categories": request.POST.get("categories") or ",".join(f"{k}={v:g}" for k, v in preset.categories.items()),
        "langs": request.POST.get("langs") or ",".join(f"{k}={v:g}" for k, v in preset.langs.items()),
    }
    # GET ?cat.<id>=tag pre-tags a selection (the pipeline board's "next step" from a selection),
    # ?dcat.<id>=tag a dataset (whole, or through ?drecipe.<id>=<recipe version id>).
    tags = {x.pk: data.get(f"cat.{x.pk}", "") for x in selections}
    ds_rows = [{"ds": d, "versions": versions.get(d.pk, []), "tag": data.get(f"dcat.{d.pk}", ""),
                "recipe": data.get(f"drecipe.{d.pk}", "")} for d in datasets]
    context = {"selections": selections, "form": form, "tags": tags, "ds_rows": ds_rows, "stages": list(PRESETS) + ["custom"]}
    if request.method == "POST":
        try:
            targets = {"categories": _pairs(form["categories"]), "langs": _pairs(form["langs"])}
            sources = [{"selection": pk, "category": tag.strip()} for pk, tag in tags.items() if tag.strip()]
            for row in ds_rows:
                if row["tag"].strip():
                    rv = row["recipe"].strip()
                    if rv and not rv.isdigit():
                        raise ValueError(gettext("Pick a recipe version or the whole dataset for %(name)s.") % {"name": row["ds"].name})
                    sources.append({"dataset": row["ds"].pk, "recipe_version": int(rv) if rv else None,
                                    "category": row["tag"].strip()})
            if request.POST.get("action") == "build":
                mix = services.mixture_create(user=request.user, name=form["name"], stage=stage, budget_tokens=int(form["budget"]),
                                              targets=targets, sources=sources, strategy=form["strategy"],
                                              shard_tokens=int(form["shard_tokens"]))
                return redirect("studio:mixture", pk=mix.pk)
            _mt, plan = services.mixture_plan(sources=sources, targets=targets, budget_tokens=int(form["budget"]),
                                              strategy=form["strategy"])
            context["plan"] = plan.as_dict()
            names = selectors.source_labels(sources)
            context["plan_names"] = names
            context["plan_warnings"] = plan_warnings(context["plan"])
            context["plan_chart"] = plan_option(context["plan"], names)
        except (ValueError, services.StudioError) as exc:
            context["error"] = str(exc)
    return render(request, "studio/mixture_new.html", context)


def _pairs(text: str) -> dict[str, float]:
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"write ratios as name=weight, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = float(v)
    return out


@role_required(Role.CURATOR)
def mixture_detail(request, pk: int):
    mix = get_object_or_404(Mixture, pk=pk)
    sources = [x for x in (mix.sources or []) if isinstance(x, dict)]
    names = selectors.source_labels(sources)
    dss = {d.pk: d for d in Dataset.objects.filter(pk__in=[int(x["dataset"]) for x in sources if x.get("dataset")])}
    rows = [{"src": x, "name": names.get(selectors.source_name(x), ""), "dataset": dss.get(int(x["dataset"])) if x.get("dataset") else None}
            for x in sources]
    return render(request, "studio/mixture.html", {"mix": mix, "source_rows": rows, "plan_names": names,
                                                   "plan_warnings": plan_warnings(mix.plan),
                                                   "plan_chart": plan_option(mix.plan, names)})


@role_required(Role.CURATOR)
def mixture_file(request, pk: int, name: str):
    mix = get_object_or_404(Mixture, pk=pk)
    return _serve(mix.path, mix.files, name)
