"""Issue 18.4: the pair builder form shows only the chosen builder's fields (HTMX swap), lists only
datasets and selections that builder reads, by name, and keeps what was typed after an error."""
import pytest
from django.urls import reverse

from preferences.models import BuildRun

pytestmark = pytest.mark.django_db

QA = [{"id": "q1", "question": "头痛？", "answer": "休息"}]
MCQ = [{"id": "m1", "question": "哪个对？", "options": {"A": "甲", "B": "乙"}, "answer": "B"}]


def _set(client):
    r = client.post(reverse("preferences:index"), {"name": "a set"})
    return int(r["Location"].rstrip("/").split("/")[-1])


def test_builder_swap_shows_only_its_fields_and_fitting_sources(client_for, make_dataset):
    from medstudio.handoffs.models import Selection

    c = client_for("curator")
    pk = _set(c)
    qa, mcq = make_dataset("consults", "qa", QA), make_dataset("bench", "mcq", MCQ)
    sel = Selection.objects.create(name="good answers", status="ready", n_records=1)
    sel.datasets.add(qa)
    url = reverse("preferences:build", args=[pk])
    page = c.get(reverse("preferences:set_detail", args=[pk])).content.decode()  # subjective first
    assert 'name="generator"' in page and 'name="judge"' in page and 'name="min_gap"' not in page
    assert f'<option value="{qa.pk}">consults (qa, 1)</option>' in page and f'value="{mcq.pk}"' not in page
    assert f'<option value="{sel.pk}">good answers (#{sel.pk}, qa, 1)</option>' in page  # a selection by name, not an id box
    obj = c.get(url, {"builder": "objective", "seed": "7"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in obj and 'id="build-form"' in obj
    assert 'name="generator"' not in obj and 'name="backend"' not in obj and 'name="n"' not in obj
    assert f'value="{mcq.pk}"' in obj and f'value="{qa.pk}"' not in obj and f'value="{sel.pk}"' not in obj
    assert 'name="seed" value="7"' in obj
    scores = c.get(url, {"builder": "from_scores"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="min_gap"' in scores and 'name="path"' in scores and 'name="judges"' not in scores


def test_errors_keep_typed_values_and_start_nothing(client_for, make_dataset, settings):
    settings.MEDSTUDIO_CHAT_URL = ""
    c = client_for("curator")
    pk = _set(c)
    qa = make_dataset("consults", "qa", QA)
    url = reverse("preferences:build", args=[pk])
    r = c.post(url, {"builder": "sampled", "dataset": qa.pk, "seed": "3", "n": "40", "generator": "gen-typed"})
    html = r.content.decode()
    assert r.status_code == 400 and "less than or equal to 16" in html
    assert 'value="gen-typed"' in html and 'name="n" value="40"' in html
    r = c.post(url, {"builder": "from_scores", "min_gap": "-1", "path": "/typed/scores.jsonl"})
    assert r.status_code == 400 and "greater than or equal to 0" in r.content.decode()
    assert 'value="/typed/scores.jsonl"' in r.content.decode()
    # The service's refusal (no chat server anywhere) is shown in the form, naming what to set.
    r = c.post(url, {"builder": "subjective", "dataset": qa.pk, "seed": "0", "judge": "j-typed"})
    html = r.content.decode()
    assert r.status_code == 400 and "MEDSTUDIO_CHAT_URL" in html and 'value="j-typed"' in html
    assert not BuildRun.objects.exists()


def test_vote_form_swaps_by_method_and_keeps_typed_values(client_for):
    from preferences.models import VoteRun

    c = client_for("curator")
    pk = _set(c)
    page = c.get(reverse("preferences:set_detail", args=[pk])).content.decode()
    vote_form = page[page.index('id="vote-form"'):]
    vote_form = vote_form[:vote_form.index("</form>")]
    assert 'name="k"' in vote_form and 'name="epochs"' in vote_form and 'name="judges"' not in vote_form
    part = c.get(reverse("preferences:vote", args=[pk]), {"method": "judges", "flip_frac": "0.2"},
                 HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'name="judges"' in part and 'name="k"' not in part and 'value="0.2"' in part
    r = c.post(reverse("preferences:vote", args=[pk]), {"method": "judges", "judges": "j-typed", "flip_frac": "0.1",
                                                        "drop_frac": "0.1"})
    html = r.content.decode()
    # Too few pairs: the service's refusal is shown in the re-rendered form, the judges kept.
    assert r.status_code == 400 and "at least two ordered pairs" in html and 'value="j-typed"' in html
    r = c.post(reverse("preferences:vote", args=[pk]), {"method": "reward_models", "k": "99", "flip_frac": "2",
                                                        "drop_frac": "0.1"})
    assert r.status_code == 400 and "less than or equal to 32" in r.content.decode()
    assert not VoteRun.objects.exists()
