from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from medstudio.accounts.permissions import Role, role_required

from . import services
from .formats import FileError, detect_format
from .forms import ExportForm, ImportForm
from .models import Dataset, Export, Record
from .selectors import records_page


@role_required(Role.CLINICIAN)
def dataset_list(request):
    """Top-level datasets, each with a count of its helper datasets; ?helpers=1 lists the helpers too."""
    from django.db.models import Count, Q

    from .helpers import role_label

    show_helpers = request.GET.get("helpers") == "1"
    datasets = Dataset.objects.select_related("helper_of").annotate(
        n_helpers=Count("helpers", filter=~Q(helpers__helper_role="")))
    if not show_helpers:
        datasets = datasets.filter(helper_role="")
    if kind := request.GET.get("kind"):
        datasets = datasets.filter(kind=kind)
    datasets = list(datasets)
    for d in datasets:
        d.helper_label = role_label(d.helper_role) if d.helper_role else ""
    n_hidden = 0 if show_helpers else Dataset.objects.exclude(helper_role="").count()
    return render(request, "datasets/list.html", {"datasets": datasets, "kind": kind or "", "show_helpers": show_helpers,
                                                  "n_hidden": n_hidden})


@role_required(Role.CURATOR)
def dataset_import(request):
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            fmt = form.cleaned_data["format"] or detect_format(upload.name)
        except FileError as exc:
            form.add_error("file", str(exc))
        else:
            existing = Dataset.objects.filter(name=form.cleaned_data["dataset"]).first()
            kind = form.cleaned_data["kind"]
            if existing is None and kind == "auto":
                form.add_error("kind", _("A new dataset needs a kind."))
            elif existing is not None and kind not in ("auto", existing.kind):
                form.add_error("kind", _("%(name)s holds %(kind)s records.") % {"name": existing.name, "kind": existing.kind})
            else:
                path = services.upload_store(uploaded_file=upload)
                job = services.import_start(user=request.user, path=path, fmt=fmt, kind=kind,
                                            dataset=form.cleaned_data["dataset"], skip_bad=form.cleaned_data["skip_bad"],
                                            description=form.cleaned_data["description"],
                                            benchmark=form.cleaned_data["benchmark"], file_name=upload.name)
                messages.info(request, _("Import of %(file)s started.") % {"file": upload.name})
                return redirect("jobs:detail", pk=job.pk)
    return render(request, "datasets/import.html", {"form": form})


@role_required(Role.CLINICIAN)
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    from medstudio.jobs.models import Job

    from .helpers import helpers_of, role_label

    helpers = list(helpers_of(dataset))  # review rounds, clinician checks... made about this dataset
    for h in helpers:
        h.helper_label = role_label(h.helper_role)

    from .search_index import state as search_index_state

    context = {"dataset": dataset, "export_form": ExportForm(), "exports": dataset.exports.all()[:10],
               "search_state": search_index_state(dataset)}
    if request.user.has_role(Role.CURATOR):
        from medstudio.handoffs.scorers import scorers

        context["scorers"] = [s for s in scorers().values() if not s.kinds or dataset.kind in s.kinds]
        if context["scorers"]:
            from medstudio.handoffs.scorer_forms import ScorerRunForm

            context["scorer_form"] = ScorerRunForm(dataset=dataset)
        context["runs"] = dataset.scorer_runs.all()[:20]
        context["jobs"] = Job.objects.filter(params__dataset_id=dataset.pk)[:10]
    context.update(helpers=helpers, helper_label=role_label(dataset.helper_role) if dataset.helper_role else "")
    return render(request, "datasets/detail.html", context)


@role_required(Role.CLINICIAN)
def record_list(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    filters = {k: request.GET.get(k, "").strip() for k in ("lang", "q", "subset")}
    after = request.GET.get("after")
    before = request.GET.get("before")
    rows, has_more = records_page(dataset=dataset, after=int(after) if after and after.isdigit() else None,
                                  before=int(before) if before and before.isdigit() else None, **filters)
    context = {"dataset": dataset, "records": rows, "has_more": has_more, "filters": filters,
               "langs": sorted(dataset.langs or {}), "paged": bool(after or before)}
    template = "datasets/records.html#results" if request.htmx else "datasets/records.html"
    return render(request, template, context)


@role_required(Role.CLINICIAN)
def record_detail(request, pk: int):
    record = get_object_or_404(Record.objects.select_related("dataset"), pk=pk)
    scores = []
    if request.user.has_role(Role.CURATOR):
        scores = record.scores.select_related("run").order_by("-run_id")[:50]
    prev_id = Record.objects.filter(dataset_id=record.dataset_id, id__lt=record.pk).order_by("-id").values_list("id", flat=True).first()
    next_id = Record.objects.filter(dataset_id=record.dataset_id, id__gt=record.pk).order_by("id").values_list("id", flat=True).first()
    return render(request, "datasets/record.html", {"record": record, "dataset": record.dataset, "c": record.content,
                                                     "scores": scores, "prev_id": prev_id, "next_id": next_id})


@role_required(Role.CURATOR)
@require_POST
def dataset_export(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    form = ExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Invalid export request."))
        return redirect("datasets:detail", pk=pk)
    filters = {k: form.cleaned_data[k] for k in ("lang", "q") if form.cleaned_data[k]}
    job = services.export_start(user=request.user, dataset=dataset, fmt=form.cleaned_data["format"], filters=filters)
    return redirect("jobs:detail", pk=job.pk)


@role_required(Role.CURATOR)
def export_download(request, pk: int):
    export = get_object_or_404(Export, pk=pk)
    try:
        return FileResponse(open(export.path, "rb"), as_attachment=True, filename=export.path.rsplit("/", 1)[-1])
    except FileNotFoundError:
        raise Http404("The export file is gone.") from None


@role_required(Role.CURATOR)
@require_POST
def dataset_flag(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    services.dataset_update(actor=request.user, dataset=dataset, is_benchmark=request.POST.get("is_benchmark") == "1")
    return redirect("datasets:detail", pk=pk)


@role_required(Role.ADMIN)
@require_POST
def dataset_delete(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    services.dataset_delete(actor=request.user, dataset=dataset)
    messages.info(request, _("Deleted %(name)s.") % {"name": dataset.name})
    return redirect("datasets:list")
