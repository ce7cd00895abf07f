"""Sessions kept in Redis in front of the database (MEDSTUDIO_CACHE_URL), as in docker/compose.yaml
and the annotation load benchmark: a request reads its session from Redis, and a logout reaches
every web process (the cache is shared, unlike a per-process one)."""
from __future__ import annotations

import os

import pytest
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.urls import reverse

from .conftest import _reachable

URL = os.environ.get("MEDSTUDIO_CACHE_URL") or "redis://127.0.0.1:6379/15"
REDIS = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": URL,
                     "KEY_PREFIX": "medstudio-test-sessions"}}


@pytest.fixture
def redis_cache():
    if not _reachable(URL):
        if os.environ.get("MEDSTUDIO_REQUIRE_SERVICES"):
            pytest.fail(f"Redis unreachable at {URL}")
        pytest.skip(f"Redis unreachable at {URL}")
    with override_settings(CACHES=REDIS, SESSION_ENGINE="django.contrib.sessions.backends.cached_db"):
        from django.core.cache import caches

        caches["default"].clear()
        yield caches["default"]
        caches["default"].clear()


@pytest.mark.integration
@pytest.mark.django_db
def test_session_is_served_from_redis_and_logout_ends_it_everywhere(redis_cache, django_user_model):
    django_user_model.objects.create_user("dr_redis", password="pw-123456", role="clinician")
    web1, web2 = Client(), Client()  # two web processes would share only Redis and the database
    assert web1.post(reverse("accounts:login"), {"username": "dr_redis", "password": "pw-123456"}).status_code == 302
    key = web1.cookies["sessionid"].value
    web2.cookies["sessionid"] = key
    assert redis_cache.get(f"django.contrib.sessions.cached_db{key}") is not None
    # The database row is only the fallback: with it gone, the session still reads from Redis.
    Session.objects.filter(session_key=key).delete()
    assert web2.get(reverse("annotation:home")).status_code == 200
    # A logout through one process ends the session for the other one too.
    web1.post(reverse("accounts:logout"))
    assert redis_cache.get(f"django.contrib.sessions.cached_db{key}") is None
    r = web2.get(reverse("annotation:home"))
    assert r.status_code == 302 and reverse("accounts:login") in r["Location"]
