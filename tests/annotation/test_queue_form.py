"""Issue 18.4: the new-queue form shows only the chosen sampling method's fields (HTMX swap), offers
only questions, selections and scorer runs that fit the chosen dataset, by name, and keeps what was
typed after an error."""
import re

import pytest
from django.urls import reverse

from medstudio.annotation import services
from medstudio.annotation.models import Queue

pytestmark = pytest.mark.django_db

QA = [{"id": f"q{i}", "question": f"头痛{i}天？", "answer": "休息"} for i in range(4)]
def _select(html, name):
    m = re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S)
    assert m, f"no select {name}"
    return m.group(0)


DIALOGUE = [{"id": "d1", "turns": [{"role": "user", "content": "咳嗽"}, {"role": "assistant", "content": "多喝水"}]}]


def test_method_and_dataset_swap_fields_and_lists(make_dataset, client_for, curator):
    from medstudio.handoffs.models import ScorerRun, Selection

    qa, dlg = make_dataset("consults", "qa", QA), make_dataset("talks", "dialogue", DIALOGUE)
    rating = services.question_create(user=curator, name="quality", kind="rating")
    turns = services.question_create(user=curator, name="per turn", kind="turn_rating")
    sel = Selection.objects.create(name="kept answers", status="ready", n_records=2)
    sel.datasets.add(qa)
    run_qa = ScorerRun.objects.create(dataset=qa, scorer="rules", version="1", params={}, status="succeeded")
    run_dlg = ScorerRun.objects.create(dataset=dlg, scorer="rules", version="1", params={}, status="succeeded")
    c = client_for("curator")
    url = reverse("annotation:queue_new")
    part = c.get(url, {"dataset": qa.pk, "method": "all", "name": "typed"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'id="queue-form"' in part and 'value="typed"' in part
    assert 'name="n"' in part and 'name="seed"' not in part and 'name="field"' not in part and 'name="threshold"' not in part
    questions = _select(part, "question")
    assert f'value="{rating.pk}"' in questions and f'value="{turns.pk}"' not in questions  # turn ratings need dialogues
    assert f'<option value="{sel.pk}">kept answers · 2</option>' in _select(part, "selection")
    runs = _select(part, "suggestion_run")
    assert f'value="{run_qa.pk}"' in runs and f'value="{run_dlg.pk}"' not in runs
    strat = c.get(url, {"dataset": qa.pk, "method": "stratified"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="seed"' in strat and 'name="field"' in strat and 'name="threshold"' not in strat
    talk = c.get(url, {"dataset": dlg.pk, "method": "threshold"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="threshold"' in talk and 'name="field"' not in talk
    assert f'value="{turns.pk}"' in _select(talk, "question") and f'value="{sel.pk}"' not in _select(talk, "selection")
    assert f'value="{run_dlg.pk}"' in _select(talk, "suggestion_run")


def test_errors_keep_typed_values(make_dataset, client_for, curator):
    qa = make_dataset("consults", "qa", QA)
    q = services.question_create(user=curator, name="quality", kind="rating")
    c = client_for("curator")
    r = c.post(reverse("annotation:queue_new"), {"name": "typed name", "dataset": qa.pk, "question": q.pk, "method": "random",
                                                 "n": "2", "seed": "7", "annotators_per_item": "50"})
    html = r.content.decode()
    assert r.status_code == 400 and "less than or equal to 20" in html
    assert 'value="typed name"' in html and 'name="seed" value="7"' in html and 'name="n" value="2"' in html
    r = c.post(reverse("annotation:queue_new"), {"name": "typed name", "dataset": qa.pk, "question": q.pk,
                                                 "method": "threshold", "n": "2", "threshold": "abc"})
    assert r.status_code == 400 and "Enter a number" in r.content.decode()
    r = c.post(reverse("annotation:queue_new"), {"name": "s", "dataset": qa.pk, "question": q.pk, "method": "stratified",
                                                 "n": "2", "field": "colour"})
    assert r.status_code == 400 and "Stratify by one of" in r.content.decode() and 'value="colour"' in r.content.decode()
    assert not Queue.objects.exists()
    r = c.post(reverse("annotation:queue_new"), {"name": "ok", "dataset": qa.pk, "question": q.pk, "method": "random",
                                                 "n": "2", "seed": "1"})
    assert r.status_code == 302 and Queue.objects.get(name="ok").n_items == 2
