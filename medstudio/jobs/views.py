from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from medstudio.accounts.permissions import Role, role_required

from . import services
from .models import Job


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
    template = "jobs/detail.html#progress" if request.htmx else "jobs/detail.html"
    return render(request, template, {"job": job, "logs": logs})


@role_required(Role.CURATOR)
@require_POST
def job_cancel(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    if job.kind.startswith("training.") and not request.user.has_role(Role.ADMIN):
        raise PermissionDenied("Only admins cancel training runs.")
    services.job_cancel(job=job, user=request.user)
    messages.info(request, f"Cancel requested for job {job.pk}.")
    return redirect("jobs:detail", pk=job.pk)
