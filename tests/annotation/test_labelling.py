"""The labelling flow through the HTTP client: next item, submit, double submit, two tabs, skip,
undo, bad input, role and assignment checks. Data: shared public documents and dialogues."""
import pytest
from django.urls import reverse

from medstudio.annotation import services
from medstudio.annotation.models import Assignment, Label, Status
from medstudio.audit.models import AuditEvent

from .helpers import login, rating_queue, shared_rows, user

HX = {"HTTP_HX_REQUEST": "true"}


def _current(client, queue):
    r = client.get(reverse("annotation:label", args=[queue.pk]))
    assert r.status_code == 200
    return r


def _open(queue, u):
    return Assignment.objects.get(queue=queue, annotator=f"user:{u.pk}", status=Status.ACTIVE)


def _submit(client, queue, a, **answer):
    data = {"assignment": a.pk, "revision": a.revision, "duration_ms": "1234", **answer}
    return client.post(reverse("annotation:submit", args=[queue.pk]), data, **HX)


@pytest.mark.django_db
def test_queue_has_n_free_slots_per_item_in_shuffled_order(make_dataset, curator):
    queue = rating_queue(make_dataset, curator, n_docs=8, per_item=3, seed=5)
    assert queue.n_items == 8
    assert Assignment.objects.filter(queue=queue, status=Status.FREE).count() == 24
    positions = list(queue.items.order_by("position").values_list("record_id", flat=True))
    assert sorted(positions) != positions or len(positions) < 3  # shuffled (seed 5 is not the identity)
    assert AuditEvent.objects.filter(action="annotation.queue_create").count() == 1


@pytest.mark.django_db
def test_sampling_options_and_bad_requests(make_dataset, curator):
    from medstudio.annotation.models import Question

    ds = make_dataset("dlg", "dialogue", shared_rows("cmtmedqa_multiturn.jsonl", 30))
    turn_q = services.question_create(user=curator, name="turns", kind="turn_rating")
    by_subset = services.queue_create(user=curator, name="strat", dataset=ds, question=turn_q, method="stratified",
                                      n=6, field="subset")
    assert by_subset.n_items == 6
    randomq = services.queue_create(user=curator, name="rand", dataset=ds, question=turn_q, method="random", n=4, seed=1)
    assert randomq.items.count() == 4
    pref = services.question_create(user=curator, name="pref", kind="preference")
    with pytest.raises(services.AnnotationError, match="needs a pair dataset"):
        services.queue_create(user=curator, name="bad", dataset=ds, question=pref)
    with pytest.raises(services.AnnotationError, match="Stratify by"):
        services.queue_create(user=curator, name="bad", dataset=ds, question=turn_q, method="stratified", n=3,
                              field="nope")
    with pytest.raises(services.AnnotationError, match="scorer run"):
        services.queue_create(user=curator, name="bad", dataset=ds, question=turn_q, method="threshold", n=3)
    assert Question.objects.count() == 2


@pytest.mark.django_db
def test_clinician_labels_with_htmx_and_progress_moves(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_li")
    queue = rating_queue(make_dataset, curator, n_docs=4, per_item=1)
    c = login(doc)
    r = _current(c, queue)
    assert b'id="answer-form"' in r.content and b'data-key="5"' in r.content
    a = _open(queue, doc)
    r = _submit(c, queue, a, score="4", grammar="5")
    assert r.status_code == 200 and b"Saved." in r.content
    assert b"<html" not in r.content  # a partial swap, not a full page
    assert b'id="mine-done">1<' in r.content
    lab = Label.objects.get(assignment=a)
    assert lab.values == {"score": 4, "aspects": {"grammar": 5}} and lab.primary_value == 4
    assert lab.duration_ms == 1234 and lab.annotator == f"user:{doc.pk}"
    nxt = _open(queue, doc)
    assert nxt.item_id != a.item_id


@pytest.mark.django_db
def test_double_submit_and_retry_create_one_label_and_conflicts_overwrite_nothing(make_dataset, curator,
                                                                                   django_user_model):
    doc = user(django_user_model, "dr_wang")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = login(doc)
    _current(c, queue)
    a = _open(queue, doc)
    assert b"Saved." in _submit(c, queue, a, score="3").content
    again = _submit(c, queue, a, score="3")  # the same POST replayed (double click / network retry)
    assert b"Already saved" in again.content
    other = _submit(c, queue, a, score="1")  # a stale second tab with another answer
    assert b"already submitted" in other.content
    assert Label.objects.filter(item=a.item).count() == 1
    assert Label.objects.get(assignment=a).values == {"score": 3}


@pytest.mark.django_db
def test_two_tabs_get_the_same_open_item(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_zhao")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    first = services.assignment_next(queue=queue, user=doc)
    second = services.assignment_next(queue=queue, user=doc)
    assert first.pk == second.pk
    assert Assignment.objects.filter(queue=queue, annotator=f"user:{doc.pk}").count() == 1


@pytest.mark.django_db
def test_bad_answer_is_rejected_clearly_and_the_item_stays_open(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_sun")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1)
    c = login(doc)
    _current(c, queue)
    a = _open(queue, doc)
    r = c.post(reverse("annotation:submit", args=[queue.pk]),
               {"assignment": a.pk, "revision": a.revision, "score": "9", "grammar": "2"})
    assert r.status_code == 400 and b"outside 0-5" in r.content
    assert b'value="2" data-key="2" checked' in r.content  # what they typed is still on screen
    assert not Label.objects.exists()
    assert _open(queue, doc).pk == a.pk


@pytest.mark.django_db
def test_skip_hands_the_item_to_someone_else_and_undo_restores_it(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "d1"), user(django_user_model, "d2")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c1 = login(d1)
    _current(c1, queue)
    a = _open(queue, d1)
    r = c1.post(reverse("annotation:skip", args=[queue.pk]), {"assignment": a.pk, "revision": a.revision}, **HX)
    assert b"Skipped." in r.content
    assert _open(queue, d1).item_id != a.item_id  # not served the skipped item again
    # the skipped item got a fresh slot in the pool
    assert Assignment.objects.filter(item_id=a.item_id, status=Status.FREE).count() == 1
    # undo while nobody has taken it: d1 gets it back, the spare slot goes, the item d1 had open is freed
    held = _open(queue, d1)
    r = c1.post(reverse("annotation:undo", args=[queue.pk]), **HX)
    assert b"Reopened" in r.content
    assert _open(queue, d1).pk == a.pk
    assert Assignment.objects.get(pk=held.pk).status == Status.FREE
    assert Assignment.objects.filter(item_id=a.item_id).count() == 1  # still N = 1 slot on the item


@pytest.mark.django_db
def test_undo_of_a_skip_never_gives_an_item_more_annotators_than_asked(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "d1"), user(django_user_model, "d2")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c1 = login(d1)
    _current(c1, queue)
    first = _open(queue, d1)
    _submit(c1, queue, first, score="4")
    a = _open(queue, d1)
    c1.post(reverse("annotation:skip", args=[queue.pk]), {"assignment": a.pk, "revision": a.revision}, **HX)
    # d2 takes the skipped item before d1 changes their mind
    b = services.assignment_next(queue=queue, user=d2)
    assert b.item_id == a.item_id
    r = c1.post(reverse("annotation:undo", args=[queue.pk]), **HX)
    # the skip cannot be undone any more, so the undo reopens the item before it (labelled 4)
    assert b"Reopened" in r.content and b'value="4" data-key="4" checked' in r.content
    assert _open(queue, d1).pk == first.pk
    assert Assignment.objects.get(pk=a.pk).status == Status.SKIPPED
    assert Assignment.objects.filter(item_id=a.item_id).exclude(status=Status.SKIPPED).count() == 1
    assert _open(queue, d2).pk == b.pk  # d2 keeps it


@pytest.mark.django_db
def test_undo_reopens_last_label_and_resubmit_changes_it_in_place(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_qian")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = login(doc)
    _current(c, queue)
    a = _open(queue, doc)
    _submit(c, queue, a, score="2")
    r = c.post(reverse("annotation:undo", args=[queue.pk]), **HX)
    assert b'value="2" data-key="2" checked' in r.content and b"changing an answer" in r.content
    a.refresh_from_db()
    assert a.status == Status.ACTIVE
    _submit(c, queue, a, score="5")
    assert Label.objects.filter(assignment=a).count() == 1
    assert Label.objects.get(assignment=a).values == {"score": 5}
    # undo twice: the second undo puts the reopened (already labelled) item back to done, not free
    c.post(reverse("annotation:undo", args=[queue.pk]), **HX)
    c.post(reverse("annotation:undo", args=[queue.pk]), **HX)
    a.refresh_from_db()
    assert a.status in (Status.DONE, Status.ACTIVE) and a.annotator == f"user:{doc.pk}"
    assert Label.objects.get(assignment=a).values == {"score": 5}
    assert AuditEvent.objects.filter(action="annotation.label_change").count() == 1


@pytest.mark.django_db
def test_two_clinicians_share_items_but_never_see_each_others_labels(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "d1"), user(django_user_model, "d2")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=2)
    c1, c2 = login(d1), login(d2)
    _current(c1, queue)
    a1 = _open(queue, d1)
    _submit(c1, queue, a1, score="1", grammar="4")
    r = _current(c2, queue)
    a2 = _open(queue, d2)
    assert a2.item_id == a1.item_id  # second annotator slot of the same item
    assert b" checked" not in r.content  # nothing pre-filled from d1's label
    _submit(c2, queue, a2, score="4")
    assert set(Label.objects.filter(item=a1.item).values_list("annotator", flat=True)) == {f"user:{d1.pk}", f"user:{d2.pk}"}


@pytest.mark.django_db
def test_one_annotator_per_item_means_the_second_clinician_gets_other_items(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "d1"), user(django_user_model, "d2")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    seen1 = services.assignment_next(queue=queue, user=d1).item_id
    seen2 = services.assignment_next(queue=queue, user=d2).item_id
    assert seen1 != seen2


@pytest.mark.django_db
def test_queue_assignees_and_roles_are_enforced(make_dataset, curator, django_user_model):
    chosen, other = user(django_user_model, "chosen"), user(django_user_model, "other")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1, assignees=[chosen])
    assert login(chosen).get(reverse("annotation:label", args=[queue.pk])).status_code == 200
    assert login(other).get(reverse("annotation:label", args=[queue.pk])).status_code == 403
    assert login(other).post(reverse("annotation:submit", args=[queue.pk]), {}).status_code == 403
    assert login(chosen).get(reverse("annotation:queue_detail", args=[queue.pk])).status_code == 403
    home = login(other).get(reverse("annotation:home"))
    assert queue.name.encode() not in home.content


@pytest.mark.django_db
def test_turn_rating_on_shared_dialogue(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_chen")
    rows = [r for r in shared_rows("cmtmedqa_multiturn.jsonl", 972)
            if sum(t["role"] == "assistant" for t in r["turns"]) == 2][:2]
    ds = make_dataset("dlg2", "dialogue", rows)
    q = services.question_create(user=curator, name="turns", kind="turn_rating")
    queue = services.queue_create(user=curator, name="turns", dataset=ds, question=q, annotators_per_item=1)
    c = login(doc)
    r = _current(c, queue)
    assert b'class="msg assistant"' in r.content and b'name="t2_proficiency"' in r.content
    a = _open(queue, doc)
    ans = {f"t{i}_{k}": "4" for i in (1, 2) for k in ("fluency", "relevance", "completeness", "proficiency")}
    ans["t2_fluency"] = "2"
    _submit(c, queue, a, **ans)
    lab = Label.objects.get(assignment=a)
    assert lab.values["turns"][1]["fluency"] == 2 and lab.primary_value == pytest.approx((4 + 3.5) / 2)


@pytest.mark.django_db
def test_curator_builds_a_queue_through_the_form_from_a_selection(make_dataset, curator, django_user_model):
    from medstudio.handoffs.models import Selection, SelectionRecord
    from medstudio.annotation.models import Queue

    chosen = user(django_user_model, "chosen")
    ds = make_dataset("qa", "qa", shared_rows("huatuo26m_test_qa.jsonl", 12))
    sel = Selection.objects.create(name="kept", status="ready")
    picked = list(ds.records.order_by("id").values_list("id", flat=True)[:5])
    SelectionRecord.objects.bulk_create([SelectionRecord(selection=sel, record_id=r) for r in picked])
    q = services.question_create(user=curator, name="quality", kind="rating")
    c = login(curator)
    r = c.post(reverse("annotation:queue_new"), {
        "name": "from selection", "dataset": ds.pk, "question": q.pk, "selection": sel.pk, "method": "random",
        "n": "3", "seed": "2", "annotators_per_item": "2", "assignees": [chosen.pk], "consensus_threshold": "2"})
    assert r.status_code == 302, r.content[:500]
    queue = Queue.objects.get(name="from selection")
    got = set(queue.items.values_list("record_id", flat=True))
    assert len(got) == 3 and got <= set(picked)
    assert list(queue.assignees.all()) == [chosen]
    # a bad request re-shows the form with the reason and creates nothing
    r = c.post(reverse("annotation:queue_new"), {"name": "bad", "dataset": ds.pk, "question": q.pk,
                                                 "method": "random", "n": ""})
    assert r.status_code == 400 and b"number of items" in r.content
    assert not Queue.objects.filter(name="bad").exists()
    assert c.get(reverse("annotation:queue_detail", args=[queue.pk])).status_code == 200
    assert c.get(reverse("annotation:home")).status_code == 200


@pytest.mark.django_db
def test_confilter_per_turn_values_are_shown_beside_each_turn(make_dataset, curator, django_user_model):
    from medstudio.handoffs.models import Score, ScorerRun

    doc = user(django_user_model, "dr_cf")
    rows = [r for r in shared_rows("cmtmedqa_multiturn.jsonl", 972)
            if sum(t["role"] == "assistant" for t in r["turns"]) == 3][:1]
    ds = make_dataset("cf", "dialogue", rows)
    run = ScorerRun.objects.create(dataset=ds, scorer="confilter", status="succeeded")
    rec = ds.records.get()
    Score.objects.create(run=run, record=rec, value=0.91, detail={
        "turns": [{"turn": 1, "cf": 1.0, "status": "first"}, {"turn": 2, "cf": 0.8123, "status": "ok"},
                  {"turn": 3, "cf": 1.0077, "status": "ok"}], "cf_mean": 0.91})
    q = services.question_create(user=curator, name="turns", kind="turn_rating")
    queue = services.queue_create(user=curator, name="cf", dataset=ds, question=q, annotators_per_item=1,
                                  suggestion_run=run, show_suggestion=True)
    page = _current(login(doc), queue).content.decode()
    assert "confilter: 0.812" in page and "confilter: 1.008" in page
    hidden = services.queue_create(user=curator, name="cf hidden", dataset=ds, question=q, annotators_per_item=1,
                                   suggestion_run=run, show_suggestion=False)
    assert "turn-hint" not in _current(login(doc), hidden).content.decode()


@pytest.mark.django_db
def test_pairs_are_shown_in_random_order_and_stored_in_record_order(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_pair")
    ds = make_dataset("hh", "pair", shared_rows("hh_rlhf_harmless_pairs.jsonl", 12))
    q = services.question_create(user=curator, name="pref", kind="preference")
    queue = services.queue_create(user=curator, name="pairs", dataset=ds, question=q, annotators_per_item=1, seed=3)
    swapped = list(Assignment.objects.filter(queue=queue).values_list("swapped", flat=True))
    assert 0 < sum(swapped) < len(swapped)  # both orders occur
    c = login(doc)
    seen = set()
    for _ in range(6):
        page = _current(c, queue).content.decode()
        a = _open(queue, doc)
        content = a.item.record.content
        first, second = (content["rejected"], content["chosen"]) if a.swapped else (content["chosen"], content["rejected"])
        a_html = page.split('class="card answer-a"')[1].split('class="card answer-b"')[0]
        from django.utils.html import escape

        assert escape(first.split("\n")[0])[:40] in a_html
        assert b'data-key="t"' in page.encode()  # T = tie
        assert _submit(c, queue, a, winner="A", fluency="B", comment="A is safer").status_code == 200
        lab = Label.objects.get(assignment=a)
        assert lab.values["winner"] == ("rejected" if a.swapped else "chosen")
        assert lab.values["aspects"]["fluency"] == ("chosen" if a.swapped else "rejected")
        assert lab.shown_order == ("BA" if a.swapped else "AB") and lab.values["comment"] == "A is safer"
        seen.add(a.swapped)
    assert seen == {True, False}


@pytest.mark.django_db
def test_domain_label_question_on_shared_documents(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_dom")
    ds = make_dataset("gen", "document", shared_rows("general_en.jsonl", 3))
    q = services.question_create(user=curator, name="domain", kind="label", schema={"labels": ["medical", "general"]})
    queue = services.queue_create(user=curator, name="domains", dataset=ds, question=q, annotators_per_item=1)
    c = login(doc)
    page = _current(c, queue).content
    assert b'value="general" data-key="2"' in page
    a = _open(queue, doc)
    _submit(c, queue, a, label="general")
    assert Label.objects.get(assignment=a).primary_label == "general"
    r = c.post(reverse("annotation:submit", args=[queue.pk]),
               {"assignment": _open(queue, doc).pk, "revision": _open(queue, doc).revision, "label": "sports"})
    assert r.status_code == 400 and b"not one of medical, general" in r.content
