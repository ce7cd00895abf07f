"""Two clinicians and an LLM judge (asked twice, through a local OpenAI-compatible server) label a
queue of shared public documents; agreement equals a hand computation on the same labels, the
consensus set excludes exactly the items the rule excludes, and exports carry who/when/how long."""
import json
from itertools import combinations

import pytest
from django.urls import reverse

from medstudio.annotation import selectors, services
from medstudio.annotation.models import Assignment, Label, Status
from tests.fakes.openai_server import fake_openai_server

from .helpers import login, rating_queue, user
from tests.charts import chart_options

D1 = [0, 1, 2, 3, 4, 5, 3, 2]
D2 = [0, 1, 4, 3, 5, 5, 1, 2]
JUDGE = [1, 1, 2, 3, 4, 4, 3, None]  # None: the judge answers garbage for that item


def _hand_qwk(xs, ys):
    """Quadratic weighted kappa from its definition, weights by value difference."""
    n = len(xs)
    cats = range(min(xs + ys), max(xs + ys) + 1)
    obs = sum((x - y) ** 2 for x, y in zip(xs, ys)) / n
    exp = sum(xs.count(i) * ys.count(j) * (i - j) ** 2 for i in cats for j in cats) / (n * n)
    return 1 - obs / exp


def _hand_ordinal_alpha(units):
    """Krippendorff's ordinal alpha from the coincidence matrix (Krippendorff 2011, section C)."""
    from collections import Counter

    coinc = Counter()
    for vals in units:
        m = len(vals)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coinc[(vals[i], vals[j])] += 1 / (m - 1)
    values = sorted({v for pair in coinc for v in pair})
    n_c = {c: sum(w for (a, _), w in coinc.items() if a == c) for c in values}
    n = sum(n_c.values())

    def delta(c, k):
        lo, hi = sorted((c, k))
        inner = sum(n_c[g] for g in values if lo <= g <= hi)
        return (inner - (n_c[lo] + n_c[hi]) / 2) ** 2

    d_o = sum(w * delta(c, k) for (c, k), w in coinc.items())
    d_e = sum(n_c[c] * n_c[k] * delta(c, k) for c in values for k in values) / (n - 1)
    return 1 - d_o / d_e


@pytest.fixture
def labelled(make_dataset, curator, django_user_model):
    d1, d2 = user(django_user_model, "dr_a"), user(django_user_model, "dr_b")
    queue = rating_queue(make_dataset, curator, n_docs=8, per_item=2, name="zhdocs", assignees=[d1, d2])
    items = list(queue.items.select_related("record").order_by("record_id"))
    by_record = {it.record_id: i for i, it in enumerate(items)}
    for u, scores in ((d1, D1), (d2, D2)):
        while (a := services.assignment_next(queue=queue, user=u)) is not None:
            services.label_submit(assignment_id=a.pk, user=u, answer={"score": scores[by_record[a.item.record_id]]},
                                  revision=a.revision, duration_ms=900)
    texts = {it.record.content["text"][:40]: JUDGE[i] for i, it in enumerate(items)}

    def judge(req):
        prompt = req["messages"][1]["content"]
        for key, score in texts.items():
            if key in prompt:
                return "I cannot rate this." if score is None else json.dumps({"score": score})
        return "??"

    with fake_openai_server(chat=judge) as url:
        r = login(curator).post(reverse("annotation:judge", args=[queue.pk]),
                                {"base_url": url, "model": "gpt-judge", "passes": "2", "temperature": "0.7"})
        assert r.status_code == 302
    return queue, items, d1, d2


@pytest.mark.django_db
def test_same_judge_twice_gives_two_independent_annotators_with_prompts_kept(labelled):
    queue, items, *_ = labelled
    annotators = set(Label.objects.filter(queue=queue, source="model").values_list("annotator", flat=True))
    assert annotators == {"model:gpt-judge#1", "model:gpt-judge#2"}
    lab = Label.objects.filter(annotator="model:gpt-judge#1").first()
    assert lab.prompt[0]["role"] == "system" and json.loads(lab.raw_reply)["score"] == lab.values["score"]
    failed = Assignment.objects.filter(queue=queue, status=Status.FAILED)
    assert failed.count() == 2 and all("unusable reply" in a.error for a in failed)  # marked per item, per pass
    assert failed.first().item_id == items[7].pk
    from medstudio.jobs.models import Job

    assert set(Job.objects.filter(kind="annotation.judge").values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.django_db
def test_agreement_equals_hand_computation(labelled, curator):
    queue, items, d1, d2 = labelled
    reports = dict((m.field, r) for m, r in selectors.queue_agreement(queue))
    score = reports["score"]
    k1, k2, j1 = f"user:{d1.pk}", f"user:{d2.pk}", "model:gpt-judge#1"
    assert score.pair(k1, k2).kappa == pytest.approx(_hand_qwk(D1, D2))
    both = [i for i in range(8) if JUDGE[i] is not None]
    assert score.pair(k1, j1).kappa == pytest.approx(_hand_qwk([D1[i] for i in both], [JUDGE[i] for i in both]))
    units = [[D1[i], D2[i]] + ([JUDGE[i], JUDGE[i]] if JUDGE[i] is not None else []) for i in range(8)]
    assert score.alpha == pytest.approx(_hand_ordinal_alpha(units))
    page = login(curator).get(reverse("annotation:agreement", args=[queue.pk]))
    assert page.status_code == 200 and b"dr_a" in page.content
    heat = chart_options(page.content.decode())["pairwise kappa"]
    assert heat["xAxis"]["data"][:2] == ["dr_a", "dr_b"] and [0, 1, round(score.pair(k1, k2).kappa, 3)] in heat["series"][0]["data"]
    assert f"{score.pair(k1, k2).kappa:.3f}".encode() in page.content


@pytest.mark.django_db
def test_headline_is_clinicians_against_clinicians_and_judges_are_shown_against_them(labelled, curator):
    """Issue 18 point 6: judges (and scorers) are not annotators in the headline alpha."""
    queue, items, d1, d2 = labelled
    k1, k2 = f"user:{d1.pk}", f"user:{d2.pk}"
    split = {s["measure"].field: s for s in selectors.agreement_split(queue)}["score"]
    assert split["human"].annotators == sorted([k1, k2])
    assert split["human"].alpha == pytest.approx(_hand_ordinal_alpha([[D1[i], D2[i]] for i in range(8)]))
    assert split["human"].alpha != pytest.approx(split["all"].alpha)
    judges = {j["key"]: j for j in split["judges"]}
    assert set(judges) == {"model:gpt-judge#1", "model:gpt-judge#2"}
    # Against the clinicians: the judge vs the median of the two clinicians on the items it rated.
    both = [i for i in range(8) if JUDGE[i] is not None]
    median = [(D1[i] + D2[i]) / 2 for i in both]
    vs = judges["model:gpt-judge#1"]["consensus"]
    assert vs.n == len(both) and vs.mean_abs_diff == pytest.approx(sum(abs(m - JUDGE[i]) for m, i in zip(median, both)) / len(both))
    assert {p.b if p.a.startswith("model:") else p.a for p in judges["model:gpt-judge#1"]["pairs"]} == {k1, k2}
    page = login(curator).get(reverse("annotation:agreement", args=[queue.pk])).content.decode()
    headline = page.split('class="headline"')[1].split("</p>")[0]
    assert f"{split['human'].alpha:.3f}" in headline and "dr_a" in headline and "gpt-judge" not in headline
    table = page.split('class="table small judge-vs-human"')[1].split("</table>")[0]
    assert "gpt-judge#1" in table and "gpt-judge#2" in table and "dr_a" in table


@pytest.mark.django_db
def test_consensus_excludes_exactly_the_rule_and_adjudication_brings_items_back(labelled, curator):
    """Clinicians only by default (judges shown beside them); a queue setting counts the judges too."""
    queue, items, *_ = labelled
    humans_out = {it.record_id for i, it in enumerate(items) if abs(D1[i] - D2[i]) >= 2}
    humans_in = {it.record_id: (D1[i] + D2[i]) / 2 for i, it in enumerate(items) if abs(D1[i] - D2[i]) < 2}
    got = dict(selectors.consensus_labels(queue))
    assert set(got) == set(humans_in) and not (set(got) & humans_out)
    for rid, v in humans_in.items():
        assert got[rid] == pytest.approx(v)
    # item 0: the clinicians agree on 0 while the judge said 1 twice; humans-only keeps the clinicians' value
    assert got[items[0].record_id] == 0.0
    c = login(curator)
    page = c.get(reverse("annotation:consensus", args=[queue.pk]) + "?show=agreed").content.decode()
    row = page.split(items[0].record.external_id)[1].split("</tr>")[0]
    judges_cell = row.split('class="judge-labels"')[1].split("</td>")[0]
    assert "gpt-judge" in judges_cell and "dr_a" not in judges_cell and "clinicians only" in page
    # the queue counts its judges: the rule now runs over clinicians and both judge passes
    c.post(reverse("annotation:queue_settings", args=[queue.pk]), {"consensus_judges": "1"})
    queue.refresh_from_db()
    assert queue.consensus_judges
    expect_out = set()
    expect_in = {}
    for i, it in enumerate(items):
        vals = [D1[i], D2[i]] + ([JUDGE[i], JUDGE[i]] if JUDGE[i] is not None else [])
        if max(vals) - min(vals) >= 2:
            expect_out.add(it.record_id)
        else:
            expect_in[it.record_id] = sum(vals) / len(vals)
    got = dict(selectors.consensus_labels(queue))
    assert set(got) == set(expect_in) and not (set(got) & expect_out)
    for rid, v in expect_in.items():
        assert got[rid] == pytest.approx(v)
    # clinicians only on request (sources), whatever the queue says
    human = dict(selectors.consensus_labels(queue, sources=("human",)))
    assert set(human) == set(humans_in)
    # a curator adjudicates one set-aside item
    out_item = next(it for it in items if it.record_id in expect_out)
    page = c.get(reverse("annotation:consensus", args=[queue.pk]))
    assert out_item.record.external_id.encode() in page.content
    c.post(reverse("annotation:adjudicate", args=[queue.pk, out_item.pk]), {"value": "3", "note": "read it twice"})
    assert dict(selectors.consensus_labels(queue))[out_item.record_id] == 3.0
    c.post(reverse("annotation:adjudicate", args=[queue.pk, out_item.pk]), {"value": "11"})  # out of scale
    assert dict(selectors.consensus_labels(queue))[out_item.record_id] == 3.0
    # the threshold is a queue setting
    c.post(reverse("annotation:queue_settings", args=[queue.pk]), {"consensus_threshold": "1"})
    queue.refresh_from_db()
    assert queue.consensus_threshold == 1
    strict = dict(selectors.consensus_labels(queue))
    unanimous = {it.record_id for i, it in enumerate(items)
                 if len({D1[i], D2[i]} | ({JUDGE[i]} if JUDGE[i] is not None else set())) == 1}
    assert set(strict) == unanimous | {out_item.record_id}


@pytest.mark.django_db
def test_export_has_annotator_time_duration_and_judge_prompt(labelled, curator):
    queue, *_ = labelled
    r = login(curator).get(reverse("annotation:export", args=[queue.pk]))
    lines = [json.loads(x) for x in b"".join(r.streaming_content).decode().splitlines()]
    assert len(lines) == Label.objects.filter(queue=queue).count() == 16 + 14
    human = [x for x in lines if x["source"] == "human"]
    assert {x["annotator_name"] for x in human} == {"dr_a", "dr_b"}
    assert all(x["duration_ms"] == 900 and x["submitted_at"] and x["started_at"] for x in human)
    judge = [x for x in lines if x["source"] == "model"]
    assert all(x["prompt"] and x["raw_reply"] for x in judge)


@pytest.mark.django_db
def test_scorer_suggestion_shown_or_hidden_and_compared(make_dataset, curator, django_user_model):
    from medstudio.handoffs.models import Score, ScorerRun

    doc = user(django_user_model, "dr_x")
    from .helpers import shared_rows

    ds = make_dataset("sugg", "document", shared_rows("general_en.jsonl", 4))
    run = ScorerRun.objects.create(dataset=ds, scorer="datarater", status="succeeded")
    for i, rec in enumerate(ds.records.order_by("id")):
        Score.objects.create(run=run, record=rec, value=1.2 + i, detail={"aspects": "n/a"})
    q = services.question_create(user=curator, name="quality", kind="rating")
    shown = services.queue_create(user=curator, name="shown", dataset=ds, question=q, annotators_per_item=1,
                                  suggestion_run=run, show_suggestion=True)
    hidden = services.queue_create(user=curator, name="hidden", dataset=ds, question=q, annotators_per_item=1,
                                   suggestion_run=run, show_suggestion=False)
    near = services.queue_create(user=curator, name="near", dataset=ds, question=q, method="threshold", n=2,
                                 threshold=2.5, suggestion_run=run)
    assert set(near.items.values_list("record__scores__value", flat=True)) == {2.2, 3.2}
    c = login(doc)
    page = c.get(reverse("annotation:label", args=[shown.pk]))
    assert b'id="suggestion"' in page.content and b"datarater" in page.content and b" checked" in page.content
    page = c.get(reverse("annotation:label", args=[hidden.pk]))
    assert b'id="suggestion"' not in page.content and b" checked" not in page.content
    a = Assignment.objects.get(queue=shown, annotator=f"user:{doc.pk}", status=Status.ACTIVE)
    services.label_submit(assignment_id=a.pk, user=doc, answer={"score": 3}, revision=a.revision)
    assert Label.objects.get(assignment=a).suggestion_shown is True
    while (a := services.assignment_next(queue=hidden, user=doc)) is not None:
        services.label_submit(assignment_id=a.pk, user=doc, answer={"score": round(a.item.suggestion["value"]) + 1},
                              revision=a.revision)
    rep = dict((m.field, r) for m, r in selectors.queue_agreement(hidden))["score"]
    pair = rep.pair(f"user:{doc.pk}", "scorer:datarater")
    assert pair.n == 4 and pair.mean_abs_diff == pytest.approx(
        sum(abs(round(1.2 + i) + 1 - (1.2 + i)) for i in range(4)) / 4)


@pytest.mark.django_db
def test_rerunning_a_judge_pass_asks_only_about_unlabelled_items(make_dataset, curator):
    from medstudio.jobs.services import job_create

    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=1, name="rerun")
    calls = []

    def judge(req):
        calls.append(req)
        return "not json" if len(calls) == 2 else json.dumps({"score": 3})

    with fake_openai_server(chat=judge) as url:
        params = {"queue_id": queue.pk, "base_url": url, "model": "m", "pass": 1, "temperature": 0}
        job_create(kind="annotation.judge", params=params, user=curator)
        assert Label.objects.filter(queue=queue).count() == 2
        assert Assignment.objects.filter(queue=queue, status=Status.FAILED).count() == 1
        job = job_create(kind="annotation.judge", params=params, user=curator)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.result["labelled"] == 1
    assert len(calls) == 4  # 3 in the first run, only the failed item again
    assert Label.objects.filter(queue=queue, annotator="model:m#1").count() == 3
    assert not Assignment.objects.filter(queue=queue, status=Status.FAILED).exists()


@pytest.mark.django_db
def test_any_scorer_run_on_the_dataset_can_be_compared_with_clinicians(make_dataset, curator, django_user_model):
    from medstudio.handoffs.models import Score, ScorerRun

    doc = user(django_user_model, "dr_s")
    queue = rating_queue(make_dataset, curator, n_docs=5, per_item=1, name="cmp")
    recs = list(queue.items.order_by("record_id").values_list("record_id", flat=True))
    clin = dict(zip(recs, [0, 2, 3, 5, 4]))
    deita_vals = dict(zip(recs, [3.0, 7.5, 6.0, 30.0, 12.0]))  # another scale entirely
    run = ScorerRun.objects.create(dataset=queue.dataset, scorer="deita", status="succeeded")
    Score.objects.bulk_create([Score(run=run, record_id=r, value=v) for r, v in deita_vals.items()])
    while (a := services.assignment_next(queue=queue, user=doc)) is not None:
        services.label_submit(assignment_id=a.pk, user=doc, answer={"score": clin[a.item.record_id]}, revision=a.revision)
    rep = dict((m.field, r) for m, r in selectors.queue_agreement(queue, scorer_runs=[run]))["score"]
    pair = rep.pair(f"user:{doc.pk}", f"scorer:deita#{run.pk}")
    # ranks: clinician 1,2,3,5,4; deita 1,3,2,5,4 -> d = 0,-1,1,0,0 -> rho = 1 - 6*2/(5*24) = 0.9
    assert pair.n == 5 and pair.spearman == pytest.approx(0.9)
    page = login(curator).get(reverse("annotation:agreement", args=[queue.pk]), {"run": run.pk})
    assert f"deita#{run.pk}".encode() in page.content and b"0.900" in page.content


@pytest.mark.django_db
def test_agreement_page_says_why_nothing_is_measured_yet(make_dataset, curator, django_user_model):
    d1 = user(django_user_model, "dr_solo")
    queue = rating_queue(make_dataset, curator, n_docs=3, per_item=2, name="solo", assignees=[d1])
    a = services.assignment_next(queue=queue, user=d1)
    services.label_submit(assignment_id=a.pk, user=d1, answer={"score": 3}, revision=a.revision)
    page = login(curator).get(reverse("annotation:agreement", args=[queue.pk])).content.decode()
    score = page[page.index('class="card agreement-score"'):]
    score = score[:score.index("</div>")]
    assert "Not measurable yet" in score and "only dr_solo answered it" in score and "data-chart" not in score
