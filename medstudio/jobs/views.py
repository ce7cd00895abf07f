from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from medstudio.accounts.permissions import Role, role_required

from . import services
from .errors import plain_cause
from .models import Job, JobStatus
from .readable import readable_fields
from .registry import job_result_links, kind_label


@role_required(Role.CURATOR)
def job_list(request):
    jobs = Job.objects.select_related("created_by")
    if status := request.GET.get("status"):
        jobs = jobs.filter(status=status)
    if kind := request.GET.get("kind"):
        jobs = jobs.filter(kind__startswith=kind)
    return render(request, "jobs/list.html", {"jobs": jobs[:200], "status": status or "", "kind": kind or ""})


@role_required(Role.CURATOR)
def job_detail(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    logs = list(job.logs.order_by("-id")[:200])[::-1]
    return render(request, "jobs/detail.html#progress" if request.htmx else "jobs/detail.html", job_page_context(job, logs))


def job_page_context(job: Job, logs: list) -> dict:
    links = job_result_links(job) if job.status in (JobStatus.SUCCEEDED, JobStatus.PARTIAL) else []
    cause = ""
    if job.status in (JobStatus.FAILED, JobStatus.PARTIAL):
        errors = "\n".join(l.message for l in logs if l.level == "error")
        cause = plain_cause(job.error, errors, translate=_)
    # ids that the links already name are not repeated as numbers
    hide = {k for k in (job.result or {}) if k.endswith("_id")} if links else set()
    # Field names and link texts in the reader's language where the catalogue has them (values are data).
    links = [(_(text), url) for text, url in links]
    result_fields = [(_(k), v) for k, v in readable_fields(job.result, hide=hide)]
    param_fields = [(_(k), v) for k, v in readable_fields(job.params, hide={"path"} if "file_name" in (job.params or {}) else set())]
    return {"job": job, "logs": logs, "kind_label": kind_label(job.kind), "result_links": links,
            "result_fields": result_fields, "param_fields": param_fields,
            "cause": cause, "error_detail": job.error if job.error and job.error.strip() != cause else ""}


@role_required(Role.CURATOR)
@require_POST
def job_cancel(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    if job.kind.startswith("training.") and not request.user.has_role(Role.ADMIN):
        raise PermissionDenied("Only admins cancel training runs.")
    services.job_cancel(job=job, user=request.user)
    messages.info(request, _("Cancel requested for job %(id)s.") % {"id": job.pk})
    return redirect("jobs:detail", pk=job.pk)


@role_required(Role.CURATOR)
def job_watch(request, pk: int):
    """A small live panel any page of a running thing includes (`jobs/_watch.html`): it polls here
    every 2 s and, once the job has ended, tells HTMX to reload the page so it shows the result."""
    job = get_object_or_404(Job, pk=pk)
    response = render(request, "jobs/_watch.html", {"job": job})
    if job.is_finished and request.htmx:
        response["HX-Refresh"] = "true"
    return response
