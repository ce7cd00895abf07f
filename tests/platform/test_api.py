"""The REST API: token auth, roles, import/export jobs, records, schema."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(django_user_model):
    def make(role):
        user = django_user_model.objects.create_user(username=f"api-{role}", password="x", role=role)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return client

    return make


def test_token_obtain_and_anonymous_denied(client, django_user_model):
    django_user_model.objects.create_user(username="t", password="pw", role="curator")
    token = client.post("/api/token/", {"username": "t", "password": "pw"}).json()["token"]
    assert APIClient().get("/api/datasets/").status_code == 401
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert c.get("/api/datasets/").status_code == 200


def test_import_list_records_and_export(api):
    curator = api("curator")
    f = SimpleUploadedFile("d.jsonl", b'{"id":"1","text":"hello world"}\n{"id":"2","text":"\xe5\xa4\xb4\xe7\x97\x9b"}\n')
    job = curator.post("/api/imports/", {"file": f, "dataset": "apids", "kind": "document"}, format="multipart")
    assert job.status_code == 202
    assert curator.get(f"/api/jobs/{job.json()['id']}/").json()["status"] == "succeeded"
    [ds] = curator.get("/api/datasets/").json()["results"]
    assert ds["n_records"] == 2 and ds["langs"] == {"en": 1, "zh": 1}
    recs = curator.get(f"/api/datasets/{ds['id']}/records/?lang=zh").json()["results"]
    assert [r["external_id"] for r in recs] == ["2"]
    exp = curator.post("/api/exports/", {"dataset": ds["id"], "format": "jsonl"}, format="json").json()
    export_id = curator.get(f"/api/jobs/{exp['id']}/").json()["result"]["export_id"]
    body = b"".join(curator.get(f"/api/exports/{export_id}/download/").streaming_content)
    assert body.count(b"\n") == 2


def test_import_with_bad_lines_via_api_fails_with_line_numbers(api):
    curator = api("curator")
    f = SimpleUploadedFile("d.jsonl", b'{"id":"1","text":"ok"}\nnope\n')
    job = curator.post("/api/imports/", {"file": f, "dataset": "bad", "kind": "document"}, format="multipart").json()
    detail = curator.get(f"/api/jobs/{job['id']}/").json()
    assert detail["status"] == "failed"
    assert detail["result"]["validation"]["errors"][0]["line"] == 2
    assert curator.get("/api/datasets/").json()["results"] == []


def test_clinician_reads_but_cannot_import_or_patch(api, make_dataset):
    ds = make_dataset("ro", "document", [{"id": "1", "text": "x"}])
    clin = api("clinician")
    assert clin.get(f"/api/datasets/{ds.pk}/").status_code == 200
    assert clin.patch(f"/api/datasets/{ds.pk}/", {"is_benchmark": True}, format="json").status_code == 403
    f = SimpleUploadedFile("d.jsonl", b'{"text":"x"}\n')
    assert clin.post("/api/imports/", {"file": f, "dataset": "n", "kind": "document"}, format="multipart").status_code == 403
    assert clin.get("/api/jobs/").status_code == 403
    assert api("curator").patch(f"/api/datasets/{ds.pk}/", {"is_benchmark": True}, format="json").json()["is_benchmark"]


def test_openapi_schema_lists_the_endpoints(api):
    schema = api("clinician").get("/api/schema/?format=json").json()
    for path in ("/api/datasets/", "/api/imports/", "/api/exports/", "/api/jobs/{id}/cancel/"):
        assert path in schema["paths"]
