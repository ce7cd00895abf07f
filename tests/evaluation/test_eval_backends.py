"""Evaluation runs on registry model backends picked in the run form (HTTP client, eager jobs, the fake
OpenAI server): generation and the consultation judge reach the backend's URL with its model (or the
one named in the form) and the key from the variable it names; the run stores no key; unknown or
disabled backends are form errors. The run form is admin-only (training/evaluation/views.py)."""
import json

import pytest
from django.urls import reverse

from medstudio.backends.services import backend_save
from medstudio.jobs.models import Job
from tests.fakes.openai_server import fake_openai_server
from training.evaluation import services
from training.evaluation.models import EvalRun

pytestmark = pytest.mark.django_db

KEY = "sk-eval-backend-456"
ROWS = [{"id": f"q{i}", "lang": "zh", "question": f"头痛{i}天了怎么办？", "answer": f"参考回答{i}"} for i in range(3)]


@pytest.fixture
def eval_env(settings, monkeypatch):
    settings.MEDSTUDIO_CHAT_URL = ""  # the judge, too, can only come from the backend
    settings.MEDSTUDIO_CHAT_API_KEY = "settings-key"
    monkeypatch.setenv("MEDSTUDIO_TEST_KEY", KEY)
    return settings


def server(req):
    if req["model"] == "judge-x":
        return json.dumps({"fluency": 5, "relevance": 4, "completeness": 3, "proficiency": 4})
    return "建议多休息，必要时就医。"


def make_backend(url, name="lab-judge", **kw):
    return backend_save(actor=None, name=name, base_url=url, model="judge-x", api_key_env="MEDSTUDIO_TEST_KEY", **kw)


def test_consultation_generation_and_judge_on_backends_picked_in_the_form(make_dataset, client_for, eval_env):
    ds = make_dataset("qa-eval-b", "qa", ROWS)
    c = client_for("admin")
    with fake_openai_server(chat=server) as url:
        make_backend(url)
        page = c.get(reverse("evaluation:run_new"), {"kind": "consultation", "backend": "openai"}).content.decode()
        assert "lab-judge (judge-x)" in page
        # Generation on the backend with another model it serves; the judge on its own model.
        resp = c.post(reverse("evaluation:run_new"), {
            "kind": "consultation", "dataset": ds.pk, "backend": "openai", "chat_backend": "lab-judge",
            "remote_model": "gen-m", "judge_backend": "lab-judge", "model_name": "gen-m on lab"})
        assert resp.status_code == 302, resp.content.decode()[:3000]
    run = EvalRun.objects.get()
    assert run.status == "succeeded", run.error
    reqs = url.chat_requests()
    models = [r["json"]["model"] for r in reqs]
    assert models.count("gen-m") == 3 and models.count("judge-x") == 3
    assert {r["headers"]["authorization"] for r in reqs} == {f"Bearer {KEY}"}
    assert run.summary["judged"] == 3
    assert run.model_spec == {"backend": "openai", "base_url": url, "model": "gen-m", "model_backend": "lab-judge",
                              "api_key_env": "MEDSTUDIO_TEST_KEY", "timeout": 60.0, "max_retries": 3,
                              "max_workers": 8}
    assert run.params["judge"]["backend"] == "lab-judge" and run.params["judge"]["model"] == "judge-x"
    assert KEY not in json.dumps(run.model_spec) + json.dumps(run.params)


def test_repeat_keeps_the_resolved_endpoint_even_after_the_backend_changes(make_dataset, admin_user, eval_env):
    ds = make_dataset("qa-eval-r", "qa", ROWS)
    with fake_openai_server(chat=server) as url:
        b = make_backend(url)
        run = services.eval_run_start(user=admin_user, kind="consultation", dataset=ds, model_name="m",
                                      model_spec={"backend": "openai", "chat_backend": "lab-judge"},
                                      params={"judge": {"chat_backend": "lab-judge"}})
        backend_save(actor=None, backend=b, model="renamed")  # an admin edits the backend afterwards
        again = services.eval_run_repeat(user=admin_user, run=EvalRun.objects.get(pk=run.pk))
    again.refresh_from_db()
    assert again.status == "succeeded", again.error
    assert again.model_spec == EvalRun.objects.get(pk=run.pk).model_spec and again.model_spec["model"] == "judge-x"
    assert {r["json"]["model"] for r in url.chat_requests()} == {"judge-x"}


@pytest.mark.parametrize("field", ["chat_backend", "judge_backend"])
@pytest.mark.parametrize("name", ["nope", "switched-off"])
def test_unknown_or_disabled_backend_is_a_form_error_and_starts_nothing(make_dataset, client_for, eval_env, field, name):
    ds = make_dataset("qa-eval-x", "qa", ROWS)
    make_backend("http://gpu1:8000/v1", name="switched-off", enabled=False)
    c = client_for("admin")
    assert "switched-off" not in c.get(reverse("evaluation:run_new")).content.decode()
    data = {"kind": "consultation", "dataset": ds.pk, "backend": "openai", "base_url": "http://gpu1.lab:8000/v1",
            "remote_model": "m", field: name}
    if field == "chat_backend":
        data.pop("base_url")
    resp = c.post(reverse("evaluation:run_new"), data)
    assert resp.status_code == 400 and f"No enabled model backend named {name}" in resp.content.decode()
    assert not EvalRun.objects.exists() and not Job.objects.filter(kind__startswith="evaluation.").exists()


def test_backend_with_a_local_generation_backend_or_a_url_is_refused(make_dataset, client_for, admin_user, eval_env):
    ds = make_dataset("qa-eval-y", "qa", ROWS)
    make_backend("http://gpu1:8000/v1")
    c = client_for("admin")
    resp = c.post(reverse("evaluation:run_new"), {"kind": "consultation", "dataset": ds.pk, "backend": "vllm",
                                                  "path": "/models/x", "chat_backend": "lab-judge"})
    assert resp.status_code == 400 and "OpenAI-compatible endpoint" in resp.content.decode()
    resp = c.post(reverse("evaluation:run_new"), {"kind": "consultation", "dataset": ds.pk, "backend": "openai",
                                                  "chat_backend": "lab-judge", "base_url": "http://other.lab:8000/v1"})
    assert resp.status_code == 400 and "not both" in resp.content.decode()
    with pytest.raises(services.EvalConfigError, match="No enabled model backend"):
        services.eval_run_start(user=admin_user, kind="consultation", dataset=ds, model_name="m",
                                model_spec={"backend": "openai", "chat_backend": "gone"})
    assert not EvalRun.objects.exists()


def test_url_path_unchanged_and_default_backend_only_fills_what_is_missing(make_dataset, admin_user, eval_env):
    ds = make_dataset("qa-eval-d", "qa", ROWS)
    with fake_openai_server(chat=server) as url, fake_openai_server(chat=server) as other:
        make_backend(url, is_default=True)
        # An explicit endpoint and judge URL: used as given, with MEDSTUDIO_CHAT_API_KEY, as before.
        run = services.eval_run_start(user=admin_user, kind="consultation", dataset=ds, model_name="m",
                                      model_spec={"backend": "openai", "base_url": other, "model": "gen-m"},
                                      params={"judge": {"base_url": other, "model": "judge-x"}})
        run.refresh_from_db()
        assert run.status == "succeeded" and "model_backend" not in run.model_spec, run.error
        assert {r["headers"]["authorization"] for r in other.chat_requests()} == {"Bearer settings-key"}
        assert not url.chat_requests()
        # No endpoint and no judge anywhere: the registry's default backend serves both.
        run = services.eval_run_start(user=admin_user, kind="consultation", dataset=ds, model_name="d",
                                      model_spec={"backend": "openai"})
        run.refresh_from_db()
        assert run.status == "succeeded" and run.model_spec["model_backend"] == "lab-judge", run.error
        assert run.summary["judged"] == 3
        assert {r["headers"]["authorization"] for r in url.chat_requests()} == {f"Bearer {KEY}"}
