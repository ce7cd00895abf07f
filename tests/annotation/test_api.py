"""The annotation REST API (/api/annotation/queues/): labelling from scripts with a token, JSON
answers, replays and conflicts, bad answers, per-queue permissions, skip/undo, pairs in shown
order, and the curators' label listing. Data: shared public documents, pairs and dialogues."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from medstudio.annotation import services
from medstudio.annotation.models import Assignment, Label, Status

from .helpers import rating_queue, shared_rows, user

pytestmark = pytest.mark.django_db

BASE = "/api/annotation/queues/"


def api(u) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=u)[0].key}")
    return c


def _next(c, queue) -> dict:
    r = c.get(f"{BASE}{queue.pk}/next/")
    assert r.status_code == 200, r.content
    return r.json()


def _submit(c, queue, work, answer, **extra):
    body = {"assignment": work["assignment"], "revision": work["revision"], "answer": answer, **extra}
    return c.post(f"{BASE}{queue.pk}/submit/", body, format="json")


def test_clinician_labels_three_items_with_json_answers(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_api")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = api(doc)
    listed = c.get(BASE).json()["results"]
    assert [q["id"] for q in listed] == [queue.pk]
    assert listed[0]["question"]["kind"] == "rating" and listed[0]["question"]["schema"]["scale"] == [0, 5]
    assert listed[0]["n_items"] == 3 and listed[0]["progress"]["mine_done"] == 0

    work = _next(c, queue)
    answers = [{"score": 4, "aspects": {"grammar": 5}}, {"score": "1"},
               {"score": 0, "aspects": {"domain_relevance": 2}}]
    seen = []
    for i, answer in enumerate(answers):
        a = Assignment.objects.get(pk=work["assignment"])
        assert a.annotator == f"user:{doc.pk}" and a.status == Status.ACTIVE
        assert work["item"]["record"]["id"] == a.item.record_id
        assert work["item"]["record"]["content"]["text"] == a.item.record.content["text"]
        seen.append(work["item"]["id"])
        r = _submit(c, queue, work, answer, duration_ms=1500 + i)
        assert r.status_code == 201, r.content
        body = r.json()
        assert body["status"] == "saved"
        lab = Label.objects.get(pk=body["label"])
        assert lab.assignment_id == a.pk and lab.annotator == f"user:{doc.pk}" and lab.duration_ms == 1500 + i
        assert body["next"]["progress"]["mine_done"] == i + 1
        work = body["next"]
    assert work["assignment"] is None  # every item labelled
    assert len(set(seen)) == 3
    stored = {lab.item_id: lab.values for lab in Label.objects.filter(queue=queue)}
    assert [stored[i] for i in seen] == [{"score": 4, "aspects": {"grammar": 5}}, {"score": 1},
                                         {"score": 0, "aspects": {"domain_relevance": 2}}]
    assert _next(c, queue) == {"assignment": None, "progress": {"queue_done": 3, "queue_total": 3, "queue_pct": 100,
                                                                 "mine_done": 3}}


def test_double_submit_is_already_saved_and_another_answer_is_a_conflict(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_replay")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = api(doc)
    work = _next(c, queue)
    first = _submit(c, queue, work, {"score": 3})
    assert first.status_code == 201 and first.json()["status"] == "saved"
    again = _submit(c, queue, work, {"score": 3})  # a network retry of the same request
    assert again.status_code == 201 and again.json()["status"] == "already_saved"
    assert again.json()["label"] == first.json()["label"]
    # the retry does not hand out yet another item: the open one is the one `first` claimed
    assert again.json()["next"]["assignment"] == first.json()["next"]["assignment"]
    other = _submit(c, queue, work, {"score": 1})  # a stale second client with another answer
    assert other.status_code == 409 and "already submitted" in other.json()["detail"]
    assert Label.objects.filter(item_id=work["item"]["id"]).count() == 1
    assert Label.objects.get(assignment_id=work["assignment"]).values == {"score": 3}
    assert Label.objects.filter(queue=queue).count() == 1


def test_invalid_answers_are_400_with_a_reason_and_store_nothing(make_dataset, curator, django_user_model):
    doc, other = user(django_user_model, "dr_bad"), user(django_user_model, "dr_other")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1)
    c = api(doc)
    work = _next(c, queue)
    r = _submit(c, queue, work, {"score": 9, "aspects": {"grammar": 2}})
    assert r.status_code == 400 and "outside 0-5" in r.json()["detail"]
    r = _submit(c, queue, work, {"score": 2.5})
    assert r.status_code == 400 and "not a whole number" in r.json()["detail"]
    r = c.post(f"{BASE}{queue.pk}/submit/", {"assignment": work["assignment"], "revision": work["revision"],
                                             "answer": "4"}, format="json")
    assert r.status_code == 400 and "answer" in r.json()
    # someone else's assignment, through a queue they may label
    theirs = _next(api(other), queue)
    r = _submit(c, queue, theirs, {"score": 2})
    assert r.status_code == 400 and "not yours" in r.json()["detail"]
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=work["assignment"]).status == Status.ACTIVE  # still open, nothing lost
    assert _next(c, queue)["assignment"] == work["assignment"]


def test_roles_and_queue_assignees_are_enforced(make_dataset, curator, django_user_model):
    chosen, outsider = user(django_user_model, "chosen"), user(django_user_model, "outsider")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1, assignees=[chosen])
    open_queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1, name="everyone")
    out = api(outsider)
    assert [q["id"] for q in out.get(BASE).json()["results"]] == [open_queue.pk]
    assert {q["id"] for q in api(chosen).get(BASE).json()["results"]} == {queue.pk, open_queue.pk}
    work = _next(api(chosen), queue)
    assert out.get(f"{BASE}{queue.pk}/next/").status_code == 403
    body = {"assignment": work["assignment"], "revision": work["revision"], "answer": {"score": 1}}
    assert out.post(f"{BASE}{queue.pk}/submit/", body, format="json").status_code == 403
    assert out.post(f"{BASE}{queue.pk}/skip/", body, format="json").status_code == 403
    assert out.post(f"{BASE}{queue.pk}/undo/").status_code == 403
    assert not Assignment.objects.filter(queue=queue, annotator=f"user:{outsider.pk}").exists()
    assert out.get(f"{BASE}999999/next/").status_code == 404
    # anonymous: nothing at all
    anon = APIClient()
    assert anon.get(BASE).status_code == 401
    assert anon.get(f"{BASE}{queue.pk}/next/").status_code == 401
    assert anon.post(f"{BASE}{queue.pk}/submit/", body, format="json").status_code == 401
    assert anon.get(f"{BASE}{queue.pk}/labels/").status_code == 401
    # a closed queue cannot be labelled; curators list every queue, closed ones included
    services.queue_update(queue=open_queue, user=curator, is_open=False)
    assert out.get(f"{BASE}{open_queue.pk}/next/").status_code == 403
    assert out.get(BASE).json()["results"] == []
    assert {q["id"] for q in api(curator).get(BASE).json()["results"]} == {queue.pk, open_queue.pk}
    assert not Label.objects.exists()


def test_skip_then_next_serves_another_item(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_skip")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = api(doc)
    work = _next(c, queue)
    body = {"assignment": work["assignment"], "revision": work["revision"]}
    r = c.post(f"{BASE}{queue.pk}/skip/", body, format="json")
    assert r.status_code == 200 and r.json()["skipped"] is True
    nxt = r.json()["next"]
    assert nxt["assignment"] not in (None, work["assignment"]) and nxt["item"]["id"] != work["item"]["id"]
    assert _next(c, queue)["item"]["id"] == nxt["item"]["id"]
    assert Assignment.objects.get(pk=work["assignment"]).status == Status.SKIPPED
    assert Assignment.objects.filter(item_id=work["item"]["id"], status=Status.FREE).count() == 1  # a fresh slot
    replay = c.post(f"{BASE}{queue.pk}/skip/", body, format="json")  # a retry skips nothing more
    assert replay.status_code == 200 and replay.json()["skipped"] is False
    assert replay.json()["next"]["assignment"] == nxt["assignment"]
    assert c.post(f"{BASE}{queue.pk}/skip/", {"assignment": "x"}, format="json").status_code == 400
    # an item of another queue cannot be skipped through this one
    elsewhere = rating_queue(make_dataset, curator, n_docs=2, per_item=1, name="elsewhere")
    other = _next(c, elsewhere)
    r = c.post(f"{BASE}{queue.pk}/skip/", {"assignment": other["assignment"], "revision": other["revision"]},
               format="json")
    assert r.status_code == 400 and "not yours" in r.json()["detail"]
    assert Assignment.objects.get(pk=other["assignment"]).status == Status.ACTIVE


def test_undo_reopens_the_last_item_and_a_resubmit_changes_it(make_dataset, curator, django_user_model):
    doc = user(django_user_model, "dr_undo")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1)
    c = api(doc)
    assert c.post(f"{BASE}{queue.pk}/undo/").json() == {"reopened": None}  # nothing to undo yet
    work = _next(c, queue)
    held = _submit(c, queue, work, {"score": 2, "aspects": {"grammar": 3}}).json()["next"]
    r = c.post(f"{BASE}{queue.pk}/undo/")
    assert r.status_code == 200
    reopened = r.json()["reopened"]
    assert reopened["assignment"] == work["assignment"] and reopened["item"]["id"] == work["item"]["id"]
    assert reopened["previous_answer"] == {"score": 2, "aspects": {"grammar": 3}}
    assert Assignment.objects.get(pk=work["assignment"]).status == Status.ACTIVE
    assert Assignment.objects.get(pk=held["assignment"]).status == Status.FREE  # the item on screen went back
    r = _submit(c, queue, reopened, {"score": 5})
    assert r.status_code == 201 and r.json()["status"] == "saved"
    assert Label.objects.filter(queue=queue).count() == 1
    assert Label.objects.get(assignment_id=work["assignment"]).values == {"score": 5}
    assert r.json()["next"]["progress"]["mine_done"] == 1  # a change, not a new label


def test_preference_answers_are_given_in_shown_order_and_stored_canonically(make_dataset, curator,
                                                                            django_user_model):
    doc = user(django_user_model, "dr_pref")
    ds = make_dataset("hh", "pair", shared_rows("hh_rlhf_harmless_pairs.jsonl", 12))
    q = services.question_create(user=curator, name="pref", kind="preference")
    queue = services.queue_create(user=curator, name="pairs", dataset=ds, question=q, annotators_per_item=1, seed=3)
    c = api(doc)
    work = _next(c, queue)
    seen = set()
    for _ in range(8):
        a = Assignment.objects.select_related("item__record").get(pk=work["assignment"])
        content = a.item.record.content
        shown = work["item"]["record"]["content"]
        assert work["swapped"] == a.swapped
        assert "chosen" not in shown and "rejected" not in shown  # the order is not given away
        assert shown["prompt_turns"] == content["prompt_turns"]
        shown_first = content["rejected"] if a.swapped else content["chosen"]
        shown_second = content["chosen"] if a.swapped else content["rejected"]
        assert (shown["answer_a"], shown["answer_b"]) == (shown_first, shown_second)
        r = _submit(c, queue, work, {"winner": "A", "aspects": {"fluency": "B", "relevance": "tie"},
                                     "comment": "A is safer"})
        assert r.status_code == 201, r.content
        lab = Label.objects.get(pk=r.json()["label"])
        # A was the chosen answer exactly when the pair was not swapped
        assert lab.values["winner"] == ("rejected" if a.swapped else "chosen")
        assert lab.values["aspects"] == {"fluency": "chosen" if a.swapped else "rejected", "relevance": "tie"}
        assert lab.primary_label == lab.values["winner"] and lab.values["comment"] == "A is safer"
        assert lab.shown_order == ("BA" if a.swapped else "AB")
        seen.add(a.swapped)
        work = r.json()["next"]
    assert seen == {True, False}
    # after an undo the saved answer comes back in the slot's shown terms (what was submitted)
    reopened = c.post(f"{BASE}{queue.pk}/undo/").json()["reopened"]
    assert reopened["previous_answer"]["winner"] == "A"
    assert reopened["previous_answer"]["aspects"] == {"fluency": "B", "relevance": "tie"}
    bad = _submit(c, queue, reopened, {"winner": "chosen"})  # canonical names are not accepted from clients
    assert bad.status_code == 400 and "choose A, B or tie" in bad.json()["detail"]


def test_turn_rating_answers_and_hidden_suggestions(make_dataset, curator, django_user_model):
    from medstudio.handoffs.models import Score, ScorerRun

    doc = user(django_user_model, "dr_turns")
    rows = [r for r in shared_rows("cmtmedqa_multiturn.jsonl", 972)
            if sum(t["role"] == "assistant" for t in r["turns"]) == 2][:1]
    ds = make_dataset("dlg", "dialogue", rows)
    run = ScorerRun.objects.create(dataset=ds, scorer="confilter", status="succeeded")
    Score.objects.create(run=run, record=ds.records.get(), value=0.9, detail={})
    q = services.question_create(user=curator, name="turns", kind="turn_rating")
    hidden = services.queue_create(user=curator, name="hidden", dataset=ds, question=q, annotators_per_item=1,
                                   suggestion_run=run, show_suggestion=False)
    shown = services.queue_create(user=curator, name="shown", dataset=ds, question=q, annotators_per_item=1,
                                  suggestion_run=run, show_suggestion=True)
    c = api(doc)
    assert _next(c, hidden)["suggestion"] is None
    work = _next(c, shown)
    assert work["suggestion"]["scorer"] == "confilter" and work["suggestion"]["value"] == 0.9
    assert work["item"]["n_assistant_turns"] == 2
    aspects = ("fluency", "relevance", "completeness", "proficiency")
    short = _submit(c, shown, work, {"turns": [{a: 4 for a in aspects}]})
    assert short.status_code == 400 and "2 assistant turns" in short.json()["detail"]
    r = _submit(c, shown, work, {"turns": [{a: 4 for a in aspects}, {**{a: 4 for a in aspects}, "fluency": 2}]})
    assert r.status_code == 201
    lab = Label.objects.get(pk=r.json()["label"])
    assert lab.values["turns"][1]["fluency"] == 2 and lab.primary_value == pytest.approx((4 + 3.5) / 2)
    assert lab.suggestion_shown


def test_curator_lists_a_queues_labels(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "d1"), user(django_user_model, "d2")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=2)
    for doc, score in ((d1, 4), (d2, 1)):
        c = api(doc)
        work = _next(c, queue)
        for _ in range(3):
            work = _submit(c, queue, work, {"score": score}, duration_ms=1000).json()["next"]
    cur = api(curator)
    r = cur.get(f"{BASE}{queue.pk}/labels/?page_size=4")
    assert r.status_code == 200
    page1 = r.json()
    assert len(page1["results"]) == 4 and page1["next"]
    page2 = cur.get(page1["next"]).json()
    rows = page1["results"] + page2["results"]
    assert len(rows) == 6 and not page2["next"]
    assert {r["id"] for r in rows} == set(Label.objects.filter(queue=queue).values_list("id", flat=True))
    by_annotator = {}
    for row in rows:
        by_annotator.setdefault(row["annotator"], []).append(row)
    assert {row["primary_value"] for row in by_annotator[f"user:{d1.pk}"]} == {4.0}
    assert {row["primary_value"] for row in by_annotator[f"user:{d2.pk}"]} == {1.0}
    first = by_annotator[f"user:{d1.pk}"][0]
    lab = Label.objects.get(pk=first["id"])
    assert first["values"] == {"score": 4} and first["record"] == lab.record_id and first["item"] == lab.item_id
    assert first["source"] == "human" and first["duration_ms"] == 1000 and first["created_at"]
    assert cur.get(f"{BASE}{queue.pk}/labels/?source=model").json()["results"] == []
    assert cur.get(f"{BASE}999999/labels/").status_code == 404
    assert api(d1).get(f"{BASE}{queue.pk}/labels/").status_code == 403  # clinicians do not read others' labels


def test_session_auth_and_token_from_the_token_endpoint(make_dataset, curator, django_user_model, client):
    doc = django_user_model.objects.create_user(username="dr_tok", password="pw-tok", role="clinician")
    queue = rating_queue(make_dataset, curator, n_docs=2, per_item=1)
    token = client.post("/api/token/", {"username": "dr_tok", "password": "pw-tok"}).json()["token"]
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    work = _next(c, queue)
    assert _submit(c, queue, work, {"score": 5}).status_code == 201
    s = APIClient()
    s.force_login(doc)
    assert s.get(BASE).json()["results"][0]["progress"]["mine_done"] == 1
