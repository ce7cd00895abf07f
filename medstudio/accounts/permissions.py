"""Role checks for views and API endpoints. Every view uses one of these (tests walk all URLs)."""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from .models import Role

__all__ = ["Role", "role_required", "IsClinician", "IsCurator", "IsAdmin", "user_has_role"]


def user_has_role(user, role: str) -> bool:
    return bool(user and user.is_authenticated and user.has_role(role))


def role_required(role: str) -> Callable:
    """Anonymous users go to the login page; authenticated users below `role` get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_role(role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorator


class _HasRole(BasePermission):
    role: str = Role.ADMIN

    def has_permission(self, request, view) -> bool:
        return user_has_role(request.user, self.role)


class IsClinician(_HasRole):
    role = Role.CLINICIAN


class IsCurator(_HasRole):
    role = Role.CURATOR


class IsAdmin(_HasRole):
    role = Role.ADMIN


class ReadClinicianWriteCurator(BasePermission):
    """Clinicians may read; writes need a curator."""

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return user_has_role(request.user, Role.CLINICIAN)
        return user_has_role(request.user, Role.CURATOR)
