"""Writes to accounts: every change of people and roles is audited."""
from __future__ import annotations

import secrets

from django.db import transaction

from medstudio.audit.services import audit_log

from .models import Role, User


@transaction.atomic
def user_create(*, actor: User | None, username: str, role: str, password: str | None = None,
                email: str = "") -> tuple[User, str]:
    """Create a user; returns it with the password (generated when none is given)."""
    password = password or secrets.token_urlsafe(12)
    user = User.objects.create_user(username=username, email=email, password=password, role=Role(role))
    audit_log(actor=actor, action="accounts.user_create", target=user, data={"role": role})
    return user, password


@transaction.atomic
def user_update(*, actor: User, user: User, role: str, is_active: bool) -> User:
    before = {"role": user.role, "is_active": user.is_active}
    user.role = Role(role)
    user.is_active = is_active
    user.save(update_fields=["role", "is_active"])
    audit_log(actor=actor, action="accounts.user_update", target=user,
              data={"before": before, "after": {"role": user.role, "is_active": is_active}})
    return user


@transaction.atomic
def user_set_password(*, actor: User, user: User, password: str | None = None) -> str:
    password = password or secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_log(actor=actor, action="accounts.user_set_password", target=user)
    return password


@transaction.atomic
def admin_ensure(*, username: str, password: str | None) -> tuple[User, str | None]:
    """Create the first admin if missing. Returns the password only when it was just created."""
    existing = User.objects.filter(username=username).first()
    if existing:
        if password:
            existing.set_password(password)
            existing.role = Role.ADMIN
            existing.save(update_fields=["password", "role"])
        return existing, None
    password = password or secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password)
    user.role = Role.ADMIN
    user.save(update_fields=["role"])
    audit_log(actor=None, action="accounts.admin_create", target=user)
    return user, password


@transaction.atomic
def api_token_rotate(*, user: User, reuse: bool = False) -> tuple[str, bool]:
    """The user's API token: a new one replacing any old one, or (reuse) the existing one.

    Returns (key, created). Creating and revoking tokens is audited; the key itself never is.
    """
    from rest_framework.authtoken.models import Token

    if reuse and (existing := Token.objects.filter(user=user).first()):
        return existing.key, False
    revoked = Token.objects.filter(user=user).delete()[0]
    token = Token.objects.create(user=user)
    if revoked:
        audit_log(actor=user, action="accounts.api_token_revoke", target=user)
    audit_log(actor=user, action="accounts.api_token_create", target=user)
    return token.key, True


@transaction.atomic
def api_token_revoke(*, user: User) -> bool:
    from rest_framework.authtoken.models import Token

    revoked = bool(Token.objects.filter(user=user).delete()[0])
    if revoked:
        audit_log(actor=user, action="accounts.api_token_revoke", target=user)
    return revoked
