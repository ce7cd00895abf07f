"""Preference jobs on a registry model backend picked in the forms (HTTP client, eager jobs, the fake
OpenAI server): the job talks to the backend's URL with its model and the key from the variable it
names; unknown or disabled backends are form errors; the URL / settings path is unchanged."""
from __future__ import annotations

import json

import pytest

from medstudio.backends.services import backend_save
from medstudio.jobs.models import Job
from preferences import services
from preferences.models import BuildRun, DiversifyRun, PreferencePair, RunStatus, VoteRun
from preferences.pipeline.judge import ASPECTS
from tests.fakes.openai_server import fake_openai_server

KEY = "sk-test-backend-123"


@pytest.fixture
def pref_settings(settings, tmp_path, monkeypatch):
    settings.MEDSTUDIO_PREF_OUTAGE_RETRY_WAIT = 0
    settings.MEDSTUDIO_PREF_BATCH_SIZE = 4
    settings.MEDSTUDIO_PREF_MAX_WORKERS = 2
    settings.MEDSTUDIO_PREF_DIR = tmp_path / "prefs"
    # Nothing in the settings: whatever the jobs reach, they reach through the backend.
    settings.MEDSTUDIO_CHAT_URL = ""
    settings.MEDSTUDIO_CHAT_API_KEY = "settings-key"
    monkeypatch.setenv("MEDSTUDIO_TEST_KEY", KEY)
    return settings


def scores(v):
    return json.dumps({a: v for a in ASPECTS})


def doctor_or_judge(req):
    """Generator (doctor-styled system prompt) and judge behind one server."""
    if "乐于助人的医生" in req["messages"][0]["content"] or "helpful doctor" in req["messages"][0]["content"]:
        return "医生建议：多休息，必要时就医。"
    answer = req["messages"][-1]["content"]
    return scores(5 if "医生建议" in answer or "GOOD" in answer else 2)


def make_backend(url, name="lab-judge", **kw):
    return backend_save(actor=None, name=name, base_url=url, model="judge-x", api_key_env="MEDSTUDIO_TEST_KEY", **kw)


def assert_all_on_backend(url, models=("judge-x",)):
    reqs = url.chat_requests()
    assert reqs, "the fake server saw no chat request"
    assert {r["json"]["model"] for r in reqs} == set(models)
    assert {r["headers"]["authorization"] for r in reqs} == {f"Bearer {KEY}"}


def new_set(client, name="backend set"):
    r = client.post("/preferences/", {"name": name})
    assert r.status_code == 302
    return int(r["Location"].rstrip("/").split("/")[-1])


def test_subjective_build_on_a_backend_picked_in_the_form(client_for, make_dataset, pref_settings):
    c = client_for("curator")
    ds = make_dataset("qa-b", "qa", [{"id": f"q{i}", "lang": "zh", "question": f"问题{i}：头痛怎么办？",
                                      "answer": f"原回答{i}"} for i in range(3)])
    with fake_openai_server(chat=doctor_or_judge) as url:
        make_backend(url)
        pk = new_set(c)
        assert "lab-judge (judge-x)" in c.get(f"/preferences/{pk}/").content.decode()  # offered in the form
        r = c.post(f"/preferences/{pk}/build/", {"builder": "subjective", "dataset": ds.pk, "seed": 0, "n": 4,
                                                 "backend": "lab-judge"})
        assert r.status_code == 302
    run = BuildRun.objects.get(pref_set_id=pk)
    assert run.status == RunStatus.DONE and run.n_pairs == 3, run.error
    # Generator and judge both default to the backend's model; the key came from MEDSTUDIO_TEST_KEY.
    assert_all_on_backend(url)
    assert len(url.chat_requests()) == 3 * 3
    assert run.params["backend"] == "lab-judge"
    assert run.params["chat"]["generator"][0] == {"backend": "lab-judge", "base_url": url, "model": "judge-x",
                                                  "api_key_env": "MEDSTUDIO_TEST_KEY", "timeout": 60.0, "max_retries": 3,
                                                  "concurrency": 8}
    assert KEY not in json.dumps(run.params) and KEY not in json.dumps(Job.objects.get(pk=run.job_id).params)
    assert all(p.chosen.startswith("医生建议") for p in PreferencePair.objects.filter(run=run))


def test_judge_vote_with_several_judge_models_on_one_backend(client_for, pref_settings):
    c = client_for("curator")
    pk = new_set(c, "vote set")
    for i in range(4):
        PreferencePair.objects.create(pref_set_id=pk, origin="sampled", item_key=i,
                                      prompt_turns=[{"role": "user", "content": f"q{i}"}],
                                      chosen=f"GOOD answer {i}", rejected=f"bad answer {i}")
    with fake_openai_server(chat=doctor_or_judge) as url:
        make_backend(url)
        r = c.post(f"/preferences/{pk}/vote/", {"method": "judges", "judges": "j1, j2", "backend": "lab-judge",
                                                "epochs": 1, "flip_frac": 0.1, "drop_frac": 0.1})
        assert r.status_code == 302
    v = VoteRun.objects.get(pref_set_id=pk)
    assert v.status == RunStatus.DONE, v.error
    # One server, two judge models: the backend's URL with each model, the backend's key.
    assert_all_on_backend(url, models=("j1", "j2"))
    assert len(url.chat_requests()) == 4 * 2 * 2
    assert [j["model"] for j in v.params["chat"]["judges"]] == v.params["judges"] == ["j1", "j2"]


def test_diversify_on_a_backend_picked_in_the_form(client_for, pref_settings):
    c = client_for("curator")
    seeds = "\n".join(f"请像一名医生一样回答患者的问题，第{i}条。" for i in range(6))
    with fake_openai_server(chat="1. 请作为临床医生，耐心解释患者症状的原因。\n2. 写一首诗。") as url:
        make_backend(url)
        r = c.post("/preferences/diversify/", {"seeds": seeds, "rounds": 2, "m": 4, "n": 4, "k": 1, "seed": 0,
                                               "backend": "lab-judge"})
        assert r.status_code == 302, r.content.decode()[:2000]
    run = DiversifyRun.objects.get()
    assert run.status == RunStatus.DONE and run.params["model"] == "judge-x", run.error
    assert_all_on_backend(url)
    assert len(url.chat_requests()) == 2


@pytest.mark.parametrize("name", ["nope", "switched-off"])
def test_unknown_or_disabled_backend_is_a_form_error_and_starts_nothing(client_for, make_dataset, pref_settings, name):
    c = client_for("curator")
    make_backend("http://gpu1:8000/v1", name="switched-off", enabled=False)
    ds = make_dataset("qa-x", "qa", [{"id": "q1", "lang": "zh", "question": "头痛？", "answer": "休息"}])
    pk = new_set(c)
    assert "switched-off" not in c.get(f"/preferences/{pk}/").content.decode()  # disabled: not offered
    r = c.post(f"/preferences/{pk}/build/", {"builder": "subjective", "dataset": ds.pk, "seed": 0, "n": 4,
                                             "backend": name}, follow=True)
    assert r.status_code == 400  # the build form is re-rendered with the error and what was typed
    assert f"No enabled model backend named {name}" in r.content.decode()
    r = c.post(f"/preferences/{pk}/vote/", {"method": "judges", "judges": "j1", "backend": name, "epochs": 1,
                                            "flip_frac": 0.1, "drop_frac": 0.1}, follow=True)
    assert f"No enabled model backend named {name}" in r.content.decode()
    r = c.post("/preferences/diversify/", {"seeds": "a\nb", "rounds": 1, "m": 4, "n": 4, "k": 1, "seed": 0, "backend": name})
    assert r.status_code == 200 and f"No enabled model backend named {name}" in r.content.decode()
    assert not BuildRun.objects.exists() and not VoteRun.objects.exists() and not DiversifyRun.objects.exists()
    assert not Job.objects.filter(kind__startswith="preferences.").exists()


def test_backend_and_base_url_together_are_refused(client_for, make_dataset, curator, pref_settings):
    c = client_for("curator")
    make_backend("http://gpu1:8000/v1")
    ds = make_dataset("qa-y", "qa", [{"id": "q1", "lang": "zh", "question": "头痛？", "answer": "休息"}])
    pk = new_set(c)
    r = c.post(f"/preferences/{pk}/build/", {"builder": "subjective", "dataset": ds.pk, "seed": 0, "n": 4,
                                             "backend": "lab-judge", "base_url": "http://other:8000/v1"}, follow=True)
    assert "not both" in r.content.decode()
    # The service refuses it too (commands and scripts do not go through the form).
    with pytest.raises(services.PreferenceError, match="not both"):
        services.build_start(user=curator, pref_set=services.preference_set_create(user=curator, name="svc"),
                             builder="subjective", dataset=ds,
                             params={"backend": "lab-judge", "base_url": "http://other:8000/v1"})
    assert not BuildRun.objects.exists()


def test_the_marked_default_wins_over_the_generic_setting_and_a_stage_setting_wins_over_it(curator, make_dataset,
                                                                                            pref_settings):
    ds = make_dataset("qa-z", "qa", [{"id": "q1", "lang": "zh", "question": "头痛？", "answer": "原回答"}])
    with fake_openai_server(chat=doctor_or_judge) as url, fake_openai_server(chat=doctor_or_judge) as settings_url:
        make_backend(url, is_default=True)
        # MEDSTUDIO_CHAT_URL is set, yet the default an admin marked is what runs (as in chat_params).
        pref_settings.MEDSTUDIO_CHAT_URL = settings_url
        pref_settings.MEDSTUDIO_CHAT_MODEL = "settings-model"
        run = services.build_start(user=curator, pref_set=services.preference_set_create(user=curator, name="d1"),
                                   builder="subjective", dataset=ds)
        run.refresh_from_db()
        assert run.status == RunStatus.DONE and run.params["backend"] == "lab-judge", run.error
        assert_all_on_backend(url)
        assert not settings_url.chat_requests()
        # A URL typed in the form is used as given, on the settings key.
        run = services.build_start(user=curator, pref_set=services.preference_set_create(user=curator, name="d2"),
                                   builder="subjective", dataset=ds, params={"base_url": str(settings_url)})
        run.refresh_from_db()
        assert run.status == RunStatus.DONE and "chat" not in run.params, run.error
        reqs = settings_url.chat_requests()
        assert reqs and {r["json"]["model"] for r in reqs} == {"settings-model"}
        assert {r["headers"]["authorization"] for r in reqs} == {"Bearer settings-key"}
    # The stage's own judge server (MEDSTUDIO_PREF_JUDGE_URL) is more specific than the default.
    pref_settings.MEDSTUDIO_PREF_JUDGE_URL = "http://pref-judge:8000/v1"
    assert services._backend_name({}, settings_url="http://pref-judge:8000/v1") == ""
    assert services._backend_name({}, settings_url="") == "lab-judge"


def test_explicit_pref_timeouts_win_over_the_backend_s_own(pref_settings, monkeypatch):
    from preferences import handlers

    params = {"base_url": "http://gpu1:8000/v1", "model": "judge-x", "api_key_env": "MEDSTUDIO_TEST_KEY",
              "timeout": 90.0, "max_retries": 5}
    client = handlers._registry_chat(params)
    assert (client.timeout, client.max_retries, client._api_key) == (90.0, 5, KEY)
    pref_settings.MEDSTUDIO_PREF_CHAT_MAX_RETRIES = 1
    monkeypatch.setenv("MEDSTUDIO_PREF_CHAT_TIMEOUT", "7")
    client = handlers._registry_chat(params)
    assert (client.timeout, client.max_retries) == (7.0, 1)
