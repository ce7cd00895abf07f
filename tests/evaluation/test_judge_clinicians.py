"""Judge against clinicians (issue 15 point 5): a curator sends judge-scored consultation replies
(real CMtMedQA dialogues from /work/shared/data) to a clinician rating queue; clinicians label them
through the annotation engine; the run page shows judge-vs-clinician agreement per aspect."""
import json

import pytest
from django.urls import reverse

from medstudio.annotation import services as ann
from medstudio.annotation.models import Assignment
from training.evaluation import selectors
from training.evaluation.models import ClinicianReview, EvalItem, EvalRun
from training.pipeline.evaluation import ASPECTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged_run(make_dataset, shared_data):
    rows = []
    for line in open(shared_data / "cmtmedqa_multiturn.jsonl", encoding="utf-8"):
        r = json.loads(line)
        if r.get("subset") != "safety":
            rows.append(r)
        if len(rows) >= 8:
            break
    ds = make_dataset("cmtmedqa-judge", "dialogue", rows)
    run = EvalRun.objects.create(kind="consultation", dataset=ds, model_name="sft", model_spec={"backend": "openai"},
                                 status="succeeded", summary={"n_items": 8, "judged": 8})
    for i, rec in enumerate(ds.records.order_by("id")):
        first_user = next(t["content"] for t in rec.content["turns"] if t["role"] == "user")
        EvalItem.objects.create(run=run, record=rec, turn=1, prompt=[{"role": "user", "content": first_user}],
                                output=f"建议您及时就医（回复 {i}）。", judge_scores={a: 1 + i % 5 for a in ASPECTS})
    return run


def test_send_sample_to_clinicians_and_agreement(judged_run, client_for, django_user_model):
    cur = client_for("curator")
    r = cur.post(reverse("evaluation:clinician_review_new", args=[judged_run.pk]), {"n": "6", "seed": "1", "annotators": "2"})
    assert r.status_code == 302
    review = ClinicianReview.objects.get(run=judged_run)
    assert review.n_items == 6 and review.queue.annotators_per_item == 2
    assert review.queue.question.kind == "rating"
    # the clinician check is a helper dataset, listed under the benchmark the run evaluated
    assert review.dataset.helper_role == "judge_review" and review.dataset.helper_of_id == judged_run.dataset_id
    rec = review.dataset.records.order_by("id").first()
    assert rec.content["turns"][-1]["role"] == "assistant" and "回复" in rec.content["turns"][-1]["content"]
    assert rec.external_id.startswith("evalitem-")

    judge = {f"evalitem-{i.pk}": i.judge_scores for i in judged_run.items.all()}
    docs = [django_user_model.objects.create_user(username=f"doc{k}", password="x", role="clinician") for k in (1, 2)]
    for k, doc in enumerate(docs):
        while True:
            a = ann.assignment_next(queue=review.queue, user=doc)
            if a is None:
                break
            a = Assignment.objects.select_related("item__record").get(pk=a.pk)
            j = judge[a.item.record.external_id]
            # doc1 agrees with the judge; doc2 is one point higher on fluency (clipped to 5)
            aspects = {x: min(5, j[x] + (1 if (k == 1 and x == "fluency") else 0)) for x in ASPECTS}
            ann.label_submit(assignment_id=a.pk, user=doc, revision=a.revision,
                             answer={"score": j["relevance"], "aspects": aspects})
    rows = {r["aspect"]: r for r in selectors.judge_clinician_agreement(review)}
    assert set(rows) == {*ASPECTS, "overall"}
    assert rows["relevance"]["n"] == 6 and rows["relevance"]["kappa"] == pytest.approx(1.0)
    assert rows["relevance"]["alpha"] == pytest.approx(1.0)
    assert rows["fluency"]["alpha"] < 1.0  # doc2 disagrees a little
    page = cur.get(reverse("evaluation:run", args=[judged_run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="judge-vs-clinicians"' in html and "Krippendorff" in html and review.queue.name in html


def test_clinician_review_refuses_non_consultation_and_roles(judged_run, client_for):
    mcq = EvalRun.objects.create(kind="mcq", dataset=judged_run.dataset, model_name="m", model_spec={}, status="succeeded")
    r = client_for("curator").post(reverse("evaluation:clinician_review_new", args=[mcq.pk]), {"n": "3"})
    assert r.status_code == 302 and not ClinicianReview.objects.exists()
    r = client_for("clinician").post(reverse("evaluation:clinician_review_new", args=[judged_run.pk]), {"n": "3"})
    assert r.status_code in (302, 403) and not ClinicianReview.objects.exists()
    r = client_for("curator").post(reverse("evaluation:clinician_review_new", args=[judged_run.pk]), {"n": "abc"})
    assert r.status_code == 302  # a bad number falls back to the default, never a 500


def test_run_page_polls_itself_only_while_running(judged_run, client_for):
    c = client_for("curator")
    url = reverse("evaluation:run", args=[judged_run.pk])
    assert 'hx-trigger="every 3s"' not in c.get(url).content.decode()  # finished: no polling
    EvalRun.objects.filter(pk=judged_run.pk).update(status="running")
    html = c.get(url).content.decode()
    assert 'id="run-live"' in html and 'hx-trigger="every 3s"' in html and "live=1" in html
    live = c.get(url + "?live=1", HTTP_HX_REQUEST="true")
    assert live.status_code == 200 and 'id="run-live"' in live.content.decode()  # the full region, not the items partial
