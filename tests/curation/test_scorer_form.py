"""Issue 18.4 / 18.2: the "Run scorer" form shows the chosen scorer's settings as typed fields with
their defaults and ranges (HTMX swaps them when the scorer or its mode changes), a bad value or a
missing model re-renders the form with what was typed and names what to change, and no run starts."""
import re

import pytest
from django.urls import reverse

from medstudio.handoffs.models import ScorerRun

pytestmark = pytest.mark.django_db

DOCS = [{"id": f"d{i}", "text": f"Hypertension note {i}: lifestyle changes and follow-up in clinic."} for i in range(3)]
DIALOGUE = [{"id": "1", "turns": [{"role": "user", "content": "头痛三天怎么办？"}, {"role": "assistant", "content": "建议休息。"}]}]


def _input(html, name):
    m = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert m, f"no input {name}"
    return m.group(0)


def test_dataset_page_shows_typed_settings_with_defaults_and_ranges(make_dataset, client_for):
    ds = make_dataset("notes", "document", DOCS)
    html = client_for("curator").get(reverse("datasets:detail", args=[ds.pk])).content.decode()
    tag = _input(html, "p_min_tokens")  # rules is the first scorer for a document dataset
    assert 'type="number"' in tag and 'value="50"' in tag and 'min="0"' in tag
    ratio = _input(html, "p_max_special_char_ratio")
    assert 'value="0.3"' in ratio and 'max="1"' in ratio and 'step="0.01"' in ratio
    assert 'name="params"' not in html  # the raw JSON box is gone; an optional advanced override stays
    assert 'name="params_json"' in html


def test_scorer_change_swaps_in_only_its_settings(make_dataset, client_for):
    ds = make_dataset("notes", "document", DOCS)
    url = reverse("curation:run_start", args=[ds.pk])
    part = client_for("curator").get(url, {"scorer": "minhash"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'id="scorer-form"' in part
    assert 'name="p_threshold"' in part and 'value="0.8"' in part and 'name="p_policy"' in part
    assert 'name="p_min_tokens"' not in part
    # Scorers that do not fit the dataset's kind are not offered (deita: qa/dialogue/mcq; confilter: dialogue).
    assert 'value="confilter"' not in part and 'value="deita"' not in part


def test_mode_change_swaps_the_mode_fields(make_dataset, client_for):
    ds = make_dataset("talks", "dialogue", DIALOGUE)
    url = reverse("curation:run_start", args=[ds.pk])
    c = client_for("curator")
    lm = c.get(url, {"scorer": "deita"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="p_complexity_model"' in lm and 'name="p_chat_model"' not in lm
    chat = c.get(url, {"scorer": "deita", "p_mode": "chat", "shards": "2"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="p_chat_model"' in chat and 'name="p_complexity_model"' not in chat
    assert 'value="2"' in _input(chat, "shards")  # what was typed stays


def test_out_of_range_value_is_a_form_error_that_keeps_what_was_typed(make_dataset, client_for):
    ds = make_dataset("notes", "document", DOCS)
    resp = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]),
                                      {"scorer": "rules", "p_min_tokens": "-5", "p_max_dup_line_ratio": "0.25", "shards": "2"})
    html = resp.content.decode()
    assert resp.status_code == 400
    assert "greater than or equal to 0" in html
    assert 'value="-5"' in _input(html, "p_min_tokens") and 'value="0.25"' in _input(html, "p_max_dup_line_ratio")
    assert not ScorerRun.objects.exists()
    bad_json = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]), {"scorer": "rules", "params_json": "[1]"})
    assert bad_json.status_code == 400 and "JSON object" in bad_json.content.decode()


def test_typed_settings_reach_the_run(make_dataset, client_for):
    ds = make_dataset("notes", "document", DOCS)
    resp = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]),
                                      {"scorer": "rules", "p_min_tokens": "3", "p_disabled": ["pii"],
                                       "params_json": '{"max_tokens": 5000}'})
    assert resp.status_code == 302
    run = ScorerRun.objects.get(dataset=ds)
    assert run.params["min_tokens"] == 3 and run.params["disabled"] == ["pii"] and run.params["max_tokens"] == 5000


def test_missing_scoring_model_names_the_setting_before_any_job(make_dataset, client_for, settings, tmp_path):
    from medstudio.jobs.models import Job

    settings.MEDSTUDIO_SCORING_LM = str(tmp_path / "no-such-model")
    ds = make_dataset("talks", "dialogue", DIALOGUE)
    resp = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]),
                                      {"scorer": "confilter", "p_max_length": "1024", "p_backend": "auto"})
    html = resp.content.decode()
    assert resp.status_code == 400
    # The message sits on the model field and names the setting to change; the typed length stays.
    field = re.search(r'data-param="model".*?</label>', html, re.S).group(0)
    assert "MEDSTUDIO_SCORING_LM" in field and "no such directory" in field
    assert 'value="1024"' in _input(html, "p_max_length")
    assert not ScorerRun.objects.exists() and not Job.objects.filter(kind="curation.score").exists()


def test_roles(make_dataset, client_for):
    ds = make_dataset("notes", "document", DOCS)
    url = reverse("curation:run_start", args=[ds.pk])
    assert client_for("clinician").get(url).status_code == 403
    assert client_for("curator").get(url).status_code == 200
