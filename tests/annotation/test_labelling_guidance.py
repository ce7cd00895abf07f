"""Issue 18.5: labelling that guides — starter questions with rubric anchors, markdown instructions
(sanitised), a plain message on an empty submit, key hints that fit the item, per-turn ratings beside
their turns, the clinician's remaining count and a link to their next queue."""
import pytest
from django.core.management import call_command
from django.urls import reverse

from medstudio.annotation import questions as qs
from medstudio.annotation import services
from medstudio.annotation.models import Question

from .helpers import login, rating_queue, shared_rows, user

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _starter(name_part: str) -> Question:
    return Question.objects.get(name__icontains=name_part)


def test_starter_questions_one_click_and_command(client_for):
    c = client_for("curator")
    r = c.post(reverse("annotation:question_starters"))
    assert r.status_code == 302 and r["Location"] == reverse("annotation:queue_new")
    assert Question.objects.count() == 4
    assert set(Question.objects.values_list("kind", flat=True)) == {"rating", "label", "turn_rating", "preference"}
    c.post(reverse("annotation:question_starters"))
    call_command("starter_questions")
    assert Question.objects.count() == 4  # idempotent
    carebot = _starter("CareBot")
    assert carebot.full_schema["aspects"] == qs.DATARATER_ASPECTS and set(carebot.full_schema["anchors"]) == set("012345")
    assert client_for("clinician").post(reverse("annotation:question_starters")).status_code == 403


def test_queue_form_offers_starters_when_there_is_no_question(client_for):
    page = client_for("curator").get(reverse("annotation:queue_new")).content.decode()
    assert 'id="no-questions"' in page and reverse("annotation:question_starters") in page


def test_question_form_takes_anchors(client_for):
    c = client_for("curator")
    c.post(reverse("annotation:question_new"), {"name": "q", "kind": "rating", "anchors": "0: junk\n5: superb", "instructions": ""})
    assert Question.objects.get(name="q").schema["anchors"] == {"0": "junk", "5": "superb"}
    r = c.post(reverse("annotation:question_new"), {"name": "q2", "kind": "rating", "anchors": "9: too high"})
    assert r.status_code == 200 and "anchors must map scores 0-5" in r.content.decode()


def test_label_page_anchors_markdown_hints_and_empty_submit(make_dataset, curator, django_user_model):
    services.starter_questions_create(user=curator)
    q = _starter("CareBot")
    q.instructions += "\n\n<script>alert(1)</script> [bad](javascript:alert(1))"
    q.save()
    ds = make_dataset("docs", "document", shared_rows("general_zh.jsonl", 3))
    queue = services.queue_create(user=curator, name="docs q", dataset=ds, question=q, annotators_per_item=1)
    doc = user(django_user_model, "dr_g")
    c = login(doc)
    page = c.get(reverse("annotation:label", args=[queue.pk])).content.decode()
    assert "<strong>overall quality</strong>" in page and "<script>alert" not in page and "javascript:" not in page
    assert 'id="anchors-score"' in page and qs.CAREBOT_ANCHORS["5"] in page
    assert "<kbd>0–5</kbd>" in page and "0</kbd>-<kbd>9" not in page
    assert 'id="mine-left">3<' in page
    assignment = queue.assignments.get(annotator=f"user:{doc.pk}", status="active")
    r = c.post(reverse("annotation:submit", args=[queue.pk]), {"assignment": assignment.pk, "revision": assignment.revision}, **HX)
    body = r.content.decode()
    assert "None is not a whole number" not in body and "Choose a score from 0 to 5 before submitting" in body


def test_pair_hints_do_not_advertise_digits(make_dataset, curator, django_user_model):
    ds = make_dataset("hh", "pair", shared_rows("hh_rlhf_harmless_pairs.jsonl", 2))
    q = services.question_create(user=curator, name="pref", kind="preference")
    queue = services.queue_create(user=curator, name="pairs", dataset=ds, question=q, annotators_per_item=1)
    page = login(user(django_user_model, "dr_p")).get(reverse("annotation:label", args=[queue.pk])).content.decode()
    hints = page[page.index('id="key-hints"'):].split("</span>")[0]
    assert "A B T" in hints and "0" not in hints and "9" not in hints
    assert qs.key_hint("label", {"labels": ["a", "b", "c"]})[0] == ("1–3", "label")


def test_turn_ratings_sit_beside_their_turns(make_dataset, curator, django_user_model):
    rows = [r for r in shared_rows("cmtmedqa_multiturn.jsonl", 972)
            if sum(t["role"] == "assistant" for t in r["turns"]) == 2][:1]
    ds = make_dataset("dlg", "dialogue", rows)
    q = services.question_create(user=curator, name="turns", kind="turn_rating")
    queue = services.queue_create(user=curator, name="turns", dataset=ds, question=q, annotators_per_item=1)
    page = login(user(django_user_model, "dr_t")).get(reverse("annotation:label", args=[queue.pk])).content.decode()
    item = page[page.index('id="item"'):page.index('class="panel card"')]
    assert 'id="turn-1-ratings"' in item and 'id="turn-2-ratings"' in item and 'name="t2_proficiency"' in item
    assert item.index('data-turn="1"') < item.index('id="turn-1-ratings"') < item.index('data-turn="2"')
    assert 'form="answer-form"' in item


def test_remaining_count_and_next_queue_at_the_end(make_dataset, curator, django_user_model):
    first = rating_queue(make_dataset, curator, n_docs=1, per_item=1, name="one")
    second = rating_queue(make_dataset, curator, n_docs=2, per_item=1, name="two")
    doc = user(django_user_model, "dr_n")
    c = login(doc)
    page = c.get(reverse("annotation:label", args=[first.pk])).content.decode()
    assert 'id="mine-left">1<' in page
    a = first.assignments.get(annotator=f"user:{doc.pk}", status="active")
    done = c.post(reverse("annotation:submit", args=[first.pk]), {"assignment": a.pk, "revision": a.revision, "score": "4"}, **HX).content.decode()
    assert 'id="done-card"' in done and 'id="mine-left">0<' in done
    assert reverse("annotation:label", args=[second.pk]) in done and "Next queue: two queue" in done


def test_next_item_is_rendered_ahead_without_claiming_it(make_dataset, curator, django_user_model):
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1, name="peek")
    doc = user(django_user_model, "dr_peek")
    c = login(doc)
    page = c.get(reverse("annotation:label", args=[queue.pk])).content.decode()
    assert f'data-peek="{reverse("annotation:peek", args=[queue.pk])}"' in page
    current = queue.assignments.get(annotator=f"user:{doc.pk}", status="active")
    r = c.get(reverse("annotation:peek", args=[queue.pk]), **HX)
    other = queue.assignments.exclude(pk=current.pk).get()
    assert r.status_code == 200 and f'data-record="{other.item.record_id}"' in r.content.decode()
    other.refresh_from_db()
    assert other.status == "free" and other.annotator is None  # nothing claimed
    r = c.post(reverse("annotation:submit", args=[queue.pk]), {"assignment": current.pk, "revision": current.revision, "score": "3"}, **HX)
    assert f'data-record="{other.item.record_id}"' in r.content.decode()  # the prefetched item is the one served
    assert c.get(reverse("annotation:peek", args=[queue.pk])).status_code == 204  # nothing after it
    assert login(user(django_user_model, "cur_x", role="clinician")).get(reverse("annotation:peek", args=[999])).status_code == 404
