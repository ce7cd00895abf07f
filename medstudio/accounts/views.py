from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _

from . import services
from .forms import UserCreateForm, UserUpdateForm
from .models import Role, User
from .permissions import role_required


@role_required(Role.ADMIN)
def user_list(request):
    form = UserCreateForm(request.POST or None)
    created_password = None
    if request.method == "POST" and form.is_valid():
        user, created_password = services.user_create(
            actor=request.user, username=form.cleaned_data["username"], role=form.cleaned_data["role"],
            password=form.cleaned_data["password"] or None, email=form.cleaned_data["email"],
        )
        messages.success(request, _("Created %(name)s.") % {"name": user.username})
        if form.cleaned_data["password"]:
            created_password = None
        form = UserCreateForm()
    users = User.objects.order_by("username")
    return render(request, "accounts/users.html", {"form": form, "users": users, "roles": Role.choices,
                                                   "created_password": created_password})


@role_required(Role.ADMIN)
@require_POST
def user_update(request, pk: int):
    user = get_object_or_404(User, pk=pk)
    form = UserUpdateForm(request.POST)
    if form.is_valid():
        if user == request.user and form.cleaned_data["role"] != Role.ADMIN:
            messages.error(request, _("You cannot remove your own admin role."))
        else:
            services.user_update(actor=request.user, user=user, role=form.cleaned_data["role"],
                                 is_active=form.cleaned_data["is_active"])
            messages.success(request, _("Updated %(name)s.") % {"name": user.username})
    else:
        messages.error(request, _("Invalid role."))
    return redirect("accounts:users")


@role_required(Role.CLINICIAN)
def profile(request):
    from .services import api_token_revoke, api_token_rotate

    token = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            if api_token_revoke(user=request.user):
                messages.success(request, _("API token revoked."))
        else:
            token, _created = api_token_rotate(user=request.user)
            messages.success(request, _("New API token created. Copy it now: it is shown once."))
    return render(request, "accounts/profile.html", {"token": token})
