"""No 500s from the REST API: format-suffix routes, bad or unknown ids, a missing export file, and
every route the routers and the studio API publish; and a schema that generates without warnings."""
import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from medstudio.datasets.models import Export

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_dataset, django_user_model):
    """A curator with a token, a dataset with records, an export, and an open annotation queue."""
    from medstudio.annotation import services as annotation
    from medstudio.datasets.services import export_start
    from medstudio.jobs.services import job_execute

    curator = django_user_model.objects.create_user(username="api-curator", password="x", role="curator")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=curator).key}")
    ds = make_dataset("docs", "document", [{"id": str(i), "text": f"document number {i}"} for i in range(4)])
    job = export_start(user=curator, dataset=ds, fmt="jsonl", enqueue=False)
    job_execute(job_id=job.pk)
    export = Export.objects.get()
    q = annotation.question_create(user=curator, name="quality", kind="rating")
    queue = annotation.queue_create(user=curator, name="docs queue", dataset=ds, question=q, annotators_per_item=1,
                                    assignees=[curator])
    return {"client": client, "dataset": ds, "export": export, "queue": queue, "job": job}


def _ok(resp, what):
    assert resp.status_code < 500, f"{what}: {resp.status_code} {resp.content[:300]!r}"
    return resp


def test_format_suffix_routes_answer(world):
    c, ds, queue = world["client"], world["dataset"], world["queue"]
    base = f"/api/annotation/queues/{queue.pk}"
    r = _ok(c.get(f"/api/datasets/{ds.pk}/records.json"), "records.json")
    assert r.status_code == 200 and len(r.json()["results"]) == 4
    assert _ok(c.get("/api/annotation/queues.json"), "queues.json").status_code == 200
    work = _ok(c.get(f"{base}/next.json"), "next.json").json()
    assert work["assignment"]
    r = _ok(c.post(f"{base}/submit.json", {"assignment": work["assignment"], "revision": work["revision"],
                                            "answer": {"score": 4}}, format="json"), "submit.json")
    assert r.status_code == 201, r.content
    assert _ok(c.post(f"{base}/undo.json", {}, format="json"), "undo.json").status_code == 200
    work = c.get(f"{base}/next/").json()
    r = _ok(c.post(f"{base}/skip.json", {"assignment": work["assignment"], "revision": work["revision"]}, format="json"),
            "skip.json")
    assert r.status_code == 200
    assert _ok(c.get(f"{base}/labels.json"), "labels.json").status_code == 200
    assert _ok(c.get(f"/api/exports/{world['export'].pk}/download.json"), "download.json").status_code == 200
    assert _ok(c.post(f"/api/jobs/{world['job'].pk}/cancel.json"), "cancel.json").status_code == 200
    assert _ok(c.post("/api/imports.json", {}, format="multipart"), "imports.json").status_code == 400
    assert _ok(c.post("/api/exports.json", {}, format="json"), "exports.json").status_code == 400


def test_bad_ids_and_a_missing_export_file_are_404(world):
    c = world["client"]
    for url in ("/api/exports/abc/download/", "/api/exports/999999/download/", "/api/datasets/abc/records/",
                "/api/datasets/abc/", "/api/records/abc/", "/api/jobs/abc/", "/api/annotation/queues/abc/next/"):
        assert c.get(url).status_code == 404, url
    export = world["export"]
    body = b"".join(c.get(f"/api/exports/{export.pk}/download/").streaming_content)
    assert body.count(b"\n") == 4
    Path(export.path).unlink()
    assert c.get(f"/api/exports/{export.pk}/download/").status_code == 404


def _routes(resolver, prefix=""):
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def _fill(route: str, value: str) -> str | None:
    """A concrete path for a route, every parameter set to `value` and a format suffix to json."""
    path = route.replace("^", "").replace("$", "").replace("/?", "").replace("\\.", ".")
    path = path.replace("<drf_format_suffix:format>", ".json")
    path = re.sub(r"\(\?P<format>[^)]*\)", "json", path)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", value, path)
    path = re.sub(r"<(?:\w+:)?\w+>", value, path)
    if re.search(r"[()\[\]?*+\\<>]", path):
        return None
    return "/" + path


def test_every_api_route_answers_below_500(world):
    """GET and POST (empty body) every /api/ and /studio/api/ route, suffixed ones included, with a
    real id, a non-number and an unknown number."""
    c = world["client"]
    routes = sorted({r for r in _routes(get_resolver()) if r.startswith(("api/", "studio/api/"))})
    urls = {u for r in routes for v in (str(world["dataset"].pk), "abc", "987654") if (u := _fill(r, v))}
    assert "/api/annotation/queues.json" in urls and f"/api/datasets/{world['dataset'].pk}/records.json" in urls
    assert len(urls) > 80
    for url in sorted(urls):
        _ok(c.get(url), f"GET {url}")
        _ok(c.post(url, {}, format="json"), f"POST {url}")


def test_the_openapi_schema_generates_without_warnings(tmp_path, capsys):
    from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats

    reset_generator_stats()
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn", stdout=io.StringIO())
    err = capsys.readouterr().err
    assert "Warning" not in err and "Error" not in err, err
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache
    text = out.read_text()
    assert "/studio/api/recipes/{id}/" in text and "studio_api_recipes_list" in text
    # operationIds are unique: no numeral suffixes added to resolve collisions
    assert not re.search(r"operationId: \S+_\d+\n", text)
