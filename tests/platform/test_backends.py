"""Model-backend registry: admins register chat endpoints, check them, and curators pick them by name."""
from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from medstudio.audit.models import AuditEvent
from medstudio.backends import services
from medstudio.backends.models import ModelBackend
from medstudio.backends.resolve import BackendChoiceError, chat_client, chat_params
from tests.annotation.helpers import login, rating_queue
from tests.fakes.openai_server import Status, fake_openai_server

pytestmark = pytest.mark.django_db


def _backend(name="qwen-box", url="http://gpu1:8000/v1", **kw):
    return services.backend_save(actor=None, name=name, base_url=url, model=kw.pop("model", "Qwen/Qwen2.5-72B-Instruct"), **kw)


def test_chat_params_prefers_the_named_backend_and_lets_a_model_override_it(settings):
    settings.MEDSTUDIO_CHAT_URL = "http://settings:1/v1"
    _backend(api_key_env="QWEN_KEY", timeout=30, max_retries=1, concurrency=32)
    p = chat_params(backend="qwen-box")
    assert p == {"backend": "qwen-box", "base_url": "http://gpu1:8000/v1", "model": "Qwen/Qwen2.5-72B-Instruct",
                 "api_key_env": "QWEN_KEY", "timeout": 30.0, "max_retries": 1, "concurrency": 32}
    assert chat_params(backend=ModelBackend.objects.get().pk, model="other")["model"] == "other"
    assert chat_params(base_url="http://x:2/v1", model="m")["backend"] == ""  # an explicit endpoint, no backend
    with pytest.raises(BackendChoiceError, match="not both"):
        chat_params(backend="qwen-box", base_url="http://x:2/v1")
    with pytest.raises(BackendChoiceError, match="No enabled model backend named 'nope'"):
        chat_params(backend="nope")


def test_defaults_default_backend_then_settings_then_a_clear_error(settings):
    settings.MEDSTUDIO_CHAT_URL, settings.MEDSTUDIO_CHAT_MODEL = "http://settings:1/v1", "settings-model"
    assert chat_params() == {"backend": "", "base_url": "http://settings:1/v1", "model": "settings-model",
                             "api_key_env": "", "timeout": 60.0, "max_retries": 3, "concurrency": 4}
    _backend("a")
    _backend("b", is_default=True)
    assert chat_params()["backend"] == "b"
    services.backend_save(actor=None, backend=ModelBackend.objects.get(name="b"), enabled=False)
    assert chat_params()["base_url"] == "http://settings:1/v1"  # a disabled default is not used
    with pytest.raises(BackendChoiceError):
        chat_params(backend="b")
    settings.MEDSTUDIO_CHAT_URL = ""
    with pytest.raises(BackendChoiceError, match="MEDSTUDIO_CHAT_URL"):
        chat_params()


def test_one_default_at_a_time_every_change_audited_and_bad_env_names_refused(admin_user):
    a = services.backend_save(actor=admin_user, name="a", base_url="http://a:1/v1", model="m", is_default=True)
    b = services.backend_save(actor=admin_user, name="b", base_url="http://b:1/v1", model="m", is_default=True)
    a.refresh_from_db()
    assert b.is_default and not a.is_default
    services.backend_save(actor=admin_user, backend=a, model="m2")
    change = AuditEvent.objects.filter(action="backends.update").get()
    assert change.actor == admin_user and change.data["changed"] == {"model": ["m", "m2"]}
    with pytest.raises(ValidationError):
        services.backend_save(actor=admin_user, name="c", base_url="http://c:1/v1", model="m", api_key_env="my key")
    assert not ModelBackend.objects.filter(name="c").exists()


def test_check_records_a_live_answer_and_a_failure(admin_user, monkeypatch):
    monkeypatch.setenv("MEDSTUDIO_TEST_KEY", "sk-secret-1")
    with fake_openai_server(chat=["ok", Status(500)]) as url:
        b = _backend(url=url, model="judge-x", api_key_env="MEDSTUDIO_TEST_KEY")
        b = services.backend_check(actor=admin_user, backend=b)
        assert b.last_check_ok is True and "'ok'" in b.last_check_detail and b.last_check_ms is not None
        sent = url.chat_requests()[0]
        assert sent["json"]["model"] == "judge-x" and sent["headers"]["authorization"] == "Bearer sk-secret-1"
        b = services.backend_check(actor=admin_user, backend=b)
        assert b.last_check_ok is False and "HTTP 500" in b.last_check_detail
        assert len(url.chat_requests()) == 2  # a probe never retries
    assert AuditEvent.objects.filter(action="backends.check").count() == 2


def test_admin_pages_add_check_edit_and_remove(admin_user, curator):
    c = login(admin_user)
    r = c.post(reverse("backends:list"), {"name": "box", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                          "api_key_env": "", "timeout": "5", "max_retries": "0", "concurrency": "8", "enabled": "on"})
    assert r.status_code == 302
    b = ModelBackend.objects.get(name="box")
    assert b.created_by == admin_user and b.timeout == 5
    r = c.post(reverse("backends:list"), {"name": "box", "base_url": "not a url", "model": "m", "timeout": "5", "concurrency": "8",
                                          "max_retries": "0"})
    assert r.status_code == 200 and b"already exists" in r.content and ModelBackend.objects.count() == 1
    # a second backend can take over the default mark through the form
    c.post(reverse("backends:list"), {"name": "first", "base_url": "http://a:1/v1", "model": "m", "timeout": "5", "concurrency": "8",
                                      "max_retries": "0", "enabled": "on", "is_default": "on"})
    r = c.post(reverse("backends:list"), {"name": "second", "base_url": "http://gpu1:8000/v1", "model": "m", "timeout": "5", "concurrency": "8",
                                          "max_retries": "0", "enabled": "on", "is_default": "on"})
    assert r.status_code == 302
    assert list(ModelBackend.objects.filter(is_default=True).values_list("name", flat=True)) == ["second"]
    ModelBackend.objects.filter(name__in=["first", "second"]).delete()
    # Check by HTMX: the row comes back with the failure (nothing listens on port 9)
    r = c.post(reverse("backends:check", args=[b.pk]), HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and b"failed" in r.content and b"<html" not in r.content
    assert f'id="backend-{b.pk}"'.encode() in r.content
    r = c.post(reverse("backends:edit", args=[b.pk]), {"name": "box", "base_url": "http://127.0.0.1:9/v1", "model": "m2",
                                                         "timeout": "5", "max_retries": "0", "concurrency": "8", "enabled": "on"})
    assert r.status_code == 302 and ModelBackend.objects.get().model == "m2"
    assert b"box" in c.get(reverse("backends:list")).content
    assert login(curator).get(reverse("backends:list")).status_code == 403
    assert c.post(reverse("backends:delete", args=[b.pk])).status_code == 302
    assert not ModelBackend.objects.exists()


def test_chat_client_reads_the_key_from_the_named_variable(monkeypatch, settings):
    settings.MEDSTUDIO_CHAT_API_KEY = "from-settings"
    monkeypatch.setenv("OTHER_KEY", "from-env")
    params = {"base_url": "http://h:1/v1", "model": "m", "api_key_env": "OTHER_KEY", "timeout": 7, "max_retries": 2}
    client = chat_client(params)
    assert client._api_key == "from-env" and client.timeout == 7 and client.max_retries == 2
    assert chat_client({**params, "api_key_env": ""})._api_key == "from-settings"
    assert "from-env" not in repr(client)


def test_a_curator_runs_the_annotation_judge_through_a_registered_backend(make_dataset, curator, monkeypatch, settings):
    settings.MEDSTUDIO_CHAT_URL = ""
    monkeypatch.setenv("MEDSTUDIO_TEST_KEY", "sk-judge")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1, name="docs")
    with fake_openai_server(chat=[json.dumps({"score": 4})]) as url:
        _backend("judge-box", url=url, model="judge-x", api_key_env="MEDSTUDIO_TEST_KEY")
        page = login(curator).get(reverse("annotation:queue_detail", args=[queue.pk]))
        assert b'value="judge-box"' in page.content and b"no default: register a backend" in page.content
        r = login(curator).post(reverse("annotation:judge", args=[queue.pk]),
                                {"backend": "judge-box", "passes": "1", "temperature": "0"})
        assert r.status_code == 302
        seen = url.chat_requests()
    from medstudio.annotation.models import Label
    from medstudio.jobs.models import Job

    job = Job.objects.get(kind="annotation.judge")
    assert job.status == "succeeded" and job.params["backend"] == "judge-box" and job.params["base_url"] == url
    assert "sk-judge" not in json.dumps(job.params)  # the key stays in the environment
    assert len(seen) == 3 and {s["headers"]["authorization"] for s in seen} == {"Bearer sk-judge"}
    assert set(Label.objects.filter(queue=queue).values_list("annotator", flat=True)) == {"model:judge-x#1"}
    r = login(curator).post(reverse("annotation:judge", args=[queue.pk]), {"backend": "gone", "passes": "1"}, follow=True)
    assert b"No enabled model backend named" in r.content and Job.objects.filter(kind="annotation.judge").count() == 1


def test_endpoint_field_takes_in_cluster_hosts_and_refuses_what_is_not_a_url():
    from medstudio.backends.forms import EndpointField

    f = EndpointField(required=False)
    assert f.clean("http://gpu1:8000/v1") == "http://gpu1:8000/v1"  # Django's URLField refuses this host
    assert f.clean("https://api.example.com/v1") == "https://api.example.com/v1"
    for bad in ("gpu1:8000/v1", "ftp://gpu1/v1", "http://:8000/v1", "http://gpu1:port/v1"):
        with pytest.raises(ValidationError):
            f.clean(bad)


def test_a_backend_s_concurrency_caps_the_judge_calls_in_flight(make_dataset, curator):
    import threading
    import time

    from medstudio.annotation import services as annotation

    queue = rating_queue(make_dataset, curator, n_docs=8, per_item=1, name="docs8")
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow_judge(req):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return json.dumps({"score": 3})

    with fake_openai_server(chat=slow_judge) as url:
        _backend("narrow", url=url, model="judge-x", concurrency=3)
        annotation.judge_start(queue=queue, user=curator, backend="narrow")
    assert 2 <= state["max"] <= 3  # parallel, but never more than the backend allows
    from medstudio.annotation.models import Label

    assert Label.objects.filter(queue=queue, annotator="model:judge-x#1").count() == 8


def test_backends_command_adds_updates_checks_lists_and_removes():
    from io import StringIO

    from django.core.management import CommandError, call_command

    def run(*args):
        out = StringIO()
        call_command("backends", *args, stdout=out)
        return out.getvalue()

    with fake_openai_server(chat=["ok"]) as url:
        assert "Added backend vllm-local" in run("add", "vllm-local", "--base-url", str(url), "--model", "m1", "--default")
        assert "Updated backend vllm-local" in run("add", "vllm-local", "--base-url", str(url), "--model", "m2",
                                                    "--concurrency", "32", "--default")
        b = ModelBackend.objects.get()
        assert (b.model, b.concurrency, b.is_default) == ("m2", 32, True)
        assert "answers" in run("check", "vllm-local")
    assert "vllm-local" in run("list") and "answers" in run("list")
    with pytest.raises(CommandError, match="base_url"):
        run("add", "bad", "--base-url", "gpu1:8000", "--model", "m")
    with pytest.raises(CommandError, match="No model backend named 'nope'"):
        run("check", "nope")
    run("remove", "vllm-local")
    assert not ModelBackend.objects.exists()


def test_a_judge_job_whose_key_variable_is_missing_on_the_worker_fails_at_once_naming_it(make_dataset, curator,
                                                                                       monkeypatch):
    from medstudio.annotation import services as annotation
    from medstudio.annotation.models import Assignment
    from medstudio.jobs.models import Job

    monkeypatch.delenv("MEDSTUDIO_UNSET_KEY", raising=False)
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1, name="nokey")
    with fake_openai_server(chat=[json.dumps({"score": 3})]) as url:
        _backend("keyed", url=url, model="judge-x", api_key_env="MEDSTUDIO_UNSET_KEY")
        annotation.judge_start(queue=queue, user=curator, backend="keyed")
        assert url.chat_requests() == []  # not one call made with an empty key
    job = Job.objects.get(kind="annotation.judge")
    assert job.status == "failed" and "MEDSTUDIO_UNSET_KEY is not set on this worker" in job.error
    assert "'keyed'" in job.error and not Assignment.objects.filter(annotator__startswith="model:").exists()
