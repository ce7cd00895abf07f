from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from medstudio.accounts.permissions import Role, role_required

from . import services
from .forms import BackendForm
from .models import ModelBackend


@role_required(Role.ADMIN)
def backend_list(request):
    form = BackendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        b = services.backend_save(actor=request.user, **form.cleaned_data)
        messages.success(request, _("Added backend %(name)s. Check it to see that it answers.") % {"name": b.name})
        return redirect("backends:list")
    return render(request, "backends/list.html", {"form": form, "backends": ModelBackend.objects.all()})


@role_required(Role.ADMIN)
def backend_edit(request, pk: int):
    backend = get_object_or_404(ModelBackend, pk=pk)
    # The form validates on a copy: ModelForm writes the posted values into its instance, and the
    # service needs the untouched row to audit what changed.
    form = BackendForm(request.POST or None, instance=ModelBackend.objects.get(pk=pk))
    if request.method == "POST" and form.is_valid():
        services.backend_save(actor=request.user, backend=backend, **form.cleaned_data)
        messages.success(request, _("Saved %(name)s.") % {"name": form.cleaned_data["name"]})
        return redirect("backends:list")
    return render(request, "backends/edit.html", {"form": form, "backend": backend})


@role_required(Role.ADMIN)
@require_POST
def backend_delete(request, pk: int):
    backend = get_object_or_404(ModelBackend, pk=pk)
    services.backend_delete(actor=request.user, backend=backend)
    messages.success(request, _("Removed %(name)s. Jobs already launched keep the URL and model they stored.") % {"name": backend.name})
    return redirect("backends:list")


@role_required(Role.ADMIN)
@require_POST
def backend_check(request, pk: int):
    backend = services.backend_check(actor=request.user, backend=get_object_or_404(ModelBackend, pk=pk))
    if request.htmx:
        return render(request, "backends/list.html#row", {"b": backend})
    (messages.success if backend.last_check_ok else messages.error)(request, f"{backend.name}: {backend.last_check_detail}")
    return redirect("backends:list")
