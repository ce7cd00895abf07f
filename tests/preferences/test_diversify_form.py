"""The diversify form (issue 18.4): where the prompts go decides which fields appear, a refusal keeps
what was typed and says what to fill, in plain words naming the setting."""
import pytest

from preferences.models import DiversifyRun

pytestmark = pytest.mark.django_db

SEEDS = "请像医生一样回答。\n请解释检查结果。"


def test_target_shows_only_its_fields_and_the_swap_returns_only_the_form(client_for, settings):
    settings.MEDSTUDIO_CHAT_URL = ""
    c = client_for("curator")
    page = c.get("/preferences/diversify/").content.decode()
    assert 'name="base_url"' in page and 'name="backend"' not in page  # no backend registered: a URL
    swap = c.get("/preferences/diversify/", {"target": "backend"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="diversify-mode-fields"' in swap and 'name="backend"' in swap and 'name="base_url"' not in swap
    assert "<html" not in swap and 'id="no-backends"' in swap  # says how to get a backend


def test_refusals_keep_what_was_typed_and_name_the_fix(client_for, make_dataset, settings):
    settings.MEDSTUDIO_CHAT_URL = ""
    c = client_for("curator")
    r = c.post("/preferences/diversify/", {"seeds": SEEDS, "target": "url", "rounds": 3, "m": 4, "n": 5, "k": 1, "seed": 7})
    html = r.content.decode()
    assert "MEDSTUDIO_CHAT_URL" in html and "No server to send the prompts to" in html
    assert "请解释检查结果。" in html and 'value="7"' in html and 'value="3"' in html  # typed values kept
    r = c.post("/preferences/diversify/", {"seeds": SEEDS, "target": "backend", "rounds": 3, "m": 4, "n": 5, "k": 1, "seed": 0})
    assert "Choose a model backend" in r.content.decode()
    ds = make_dataset("sft-src", "qa", [{"id": "q1", "lang": "zh", "question": "头痛？", "answer": "休息"}])
    r = c.post("/preferences/diversify/", {"seeds": SEEDS, "target": "url", "base_url": "http://gpu1:8000/v1", "source": ds.pk,
                                           "rounds": 3, "m": 4, "n": 5, "k": 1, "seed": 0})
    assert "Name the new dataset" in r.content.decode() and "sft-src" in r.content.decode()
    r = c.post("/preferences/diversify/", {"seeds": "only one", "target": "url", "base_url": "http://gpu1:8000/v1",
                                           "rounds": 3, "m": 4, "n": 5, "k": 1, "seed": 0})
    assert "at least two distinct seed instructions" in r.content.decode()
    assert not DiversifyRun.objects.exists()
