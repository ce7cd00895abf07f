"""Production hardening: HTTPS settings behind MEDSTUDIO_PRODUCTION, login rate limiting, audited API tokens."""
import os
import subprocess
import sys

import pytest
from django.urls import reverse

from medstudio.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _deploy_check(extra_env: dict) -> str:
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 20 + "Q9-long-random-production-key-" + "z" * 30,
           "DJANGO_ALLOWED_HOSTS": "medstudio.example.org", **extra_env}
    env.pop("DJANGO_DEBUG", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser-test fixtures, never in a deployment
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], capture_output=True, text=True, env=env, timeout=120)
    return out.stdout + out.stderr


def test_production_mode_turns_on_https_settings():
    plain = _deploy_check({"MEDSTUDIO_PRODUCTION": "0"})
    assert "security.W004" in plain and "security.W008" in plain  # HSTS and SSL redirect off by default (127.0.0.1)
    prod = _deploy_check({"MEDSTUDIO_PRODUCTION": "1"})
    assert "System check identified no issues" in prod, prod  # security and drf-spectacular alike


def test_repeated_wrong_passwords_lock_that_login_only(client, django_user_model, settings):
    django_user_model.objects.create_user(username="nurse", password="right-pw", role="clinician")
    django_user_model.objects.create_user(username="other", password="other-pw", role="clinician")
    url = reverse("accounts:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        r = client.post(url, {"username": "nurse", "password": "wrong"})
        assert r.status_code in (200, 429)
    r = client.post(url, {"username": "nurse", "password": "right-pw"})
    assert r.status_code == 429 and "Too many failed sign-ins" in r.content.decode()
    assert "_auth_user_id" not in client.session
    r = client.post(url, {"username": "other", "password": "other-pw"})  # another account is unaffected
    assert r.status_code == 302 and client.session.get("_auth_user_id")


def test_api_tokens_are_audited(client, django_user_model):
    user = django_user_model.objects.create_user(username="cur", password="pw-cur", role="curator")
    r = client.post("/api/token/", {"username": "cur", "password": "pw-cur"})
    key = r.json()["token"]
    assert client.post("/api/token/", {"username": "cur", "password": "pw-cur"}).json()["token"] == key  # reused
    assert list(AuditEvent.objects.filter(action__startswith="accounts.api_token").values_list("action", flat=True)) == \
        ["accounts.api_token_create"]
    client.force_login(user)
    client.post(reverse("accounts:profile"))
    client.post(reverse("accounts:profile"), {"action": "revoke"})
    actions = list(AuditEvent.objects.filter(action__startswith="accounts.api_token").order_by("id").values_list("action", flat=True))
    assert actions == ["accounts.api_token_create", "accounts.api_token_revoke", "accounts.api_token_create",
                       "accounts.api_token_revoke"]
    assert all(key not in str(e.data) for e in AuditEvent.objects.all())
