"""The OpenAPI schema documents the errors the API answers, and the API answers them as documented
(what tests/fuzz/run_schemathesis.py checks against a live server, in a few fast cases)."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_user(username="schema-admin", password="x", role="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_every_operation_documents_400_401_403_404(api):
    schema = api.get("/api/schema/?format=json").json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            missing = {"400", "401", "403", "404"} - set(op["responses"])
            assert not missing, f"{method.upper()} {path} lacks {sorted(missing)}"


@pytest.mark.parametrize("value", ["abc", "null", "0", "-3"])
def test_a_bad_page_size_is_a_400(api, value):
    assert api.get(f"/api/datasets/?page_size={value}").status_code == 400


def test_a_good_page_size_still_pages(api):
    assert api.get("/api/datasets/?page_size=5").status_code == 200


def test_an_unrouted_api_url_is_a_json_404(api):
    resp = api.get("/api/datasets/%C2%84/records/")
    assert resp.status_code == 404
    assert resp["Content-Type"].startswith("application/json")


def test_a_studio_body_that_violates_its_schema_is_a_400(api):
    resp = api.post("/studio/api/mixtures/", {"name": "m", "budget_tokens": 10, "sources": ["-666", "true"]}, format="json")
    assert resp.status_code == 400
    resp = api.post("/studio/api/mixtures/", "sources=true&sources=-666&name=x", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400
