"""Every URL pattern of the project, for anonymous, clinician, curator and admin."""
from __future__ import annotations

import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.url_roles import URL_ROLES

RANK = {"anon": 0, "clinician": 1, "curator": 2, "admin": 3}
DUMMY = {"int": "999999", "str": "x", "slug": "x", "path": "x", "uuid": str(uuid.UUID(int=1))}


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{prefix}{p.namespace}:" if p.namespace else prefix
            yield from _walk(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield f"{prefix}{p.name}", p


def _all_urls() -> dict[str, str]:
    urls: dict[str, str] = {}
    for name, pattern in _walk(get_resolver().url_patterns):
        converters = getattr(pattern.pattern, "converters", {}) or {}
        groups = pattern.pattern.regex.groupindex
        if "format" in groups:
            continue  # DRF's format-suffix twin of a pattern already walked
        kwargs = {}
        for group in groups:
            conv = converters.get(group)
            kind = type(conv).__name__.replace("Converter", "").lower() if conv else "int"
            kwargs[group] = DUMMY.get(kind, "999999")
        urls[name] = reverse(name, kwargs=kwargs or None)
    return urls


def test_every_url_has_a_declared_role():
    missing = sorted(set(_all_urls()) - set(URL_ROLES))
    assert not missing, f"URL names with no entry in tests/url_roles.py: {missing}"


def _denied(response, role: str) -> bool:
    if role == "anon":
        if response.status_code in (401, 403):
            return True
        return response.status_code == 302 and "/accounts/login/" in response["Location"]
    return response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["anon", "clinician", "curator", "admin"])
def test_every_url_enforces_its_role(role, client, django_user_model):
    if role != "anon":
        user = django_user_model.objects.create_user(username=f"walk-{role}", password="x", role=role)
        client.force_login(user)
    wrong = []
    for name, url in sorted(_all_urls().items()):
        need = URL_ROLES.get(name)
        if need is None:
            continue  # reported by test_every_url_has_a_declared_role
        response = client.get(url)
        if need == "public":
            ok = not (response.status_code == 403)
        elif need == "anon-redirect":
            ok = _denied(response, role) if role == "anon" else response.status_code != 403
        elif RANK[role] >= RANK[need]:
            ok = not _denied(response, role) and response.status_code < 500
        else:
            post = client.post(url, {})
            ok = _denied(response, role) and _denied(post, role)
            if not ok:
                wrong.append(f"{name} {url}: GET {response.status_code}, POST {post.status_code} (needs {need})")
                continue
        if not ok:
            wrong.append(f"{name} {url}: GET {response.status_code} (needs {need})")
    assert not wrong, f"as {role}:\n" + "\n".join(wrong)
