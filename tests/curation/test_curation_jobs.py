"""Curation part 1 through the doors users use: the dataset page's "Run scorer" form, the run page,
the redaction form and `manage.py score`."""
import json
import os
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from curation.models import DuplicateCluster
from medstudio.handoffs.models import ScorerRun
from medstudio.datasets.models import Dataset, Record
from django.db.models import Count
from tests.charts import chart_options

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))
pytestmark = pytest.mark.django_db


def _rows(name, limit):
    with open(DATA / name, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(limit), fh)]


def _start(client, dataset, scorer, params=None):
    resp = client.post(reverse("curation:run_start", args=[dataset.pk]),
                       {"scorer": scorer, "params": json.dumps(params or {})})
    assert resp.status_code == 302
    return ScorerRun.objects.filter(dataset=dataset, scorer=scorer).latest("id")


def test_rules_run_from_dataset_page_and_run_page(make_dataset, client_for):
    rows = _rows("general_en.jsonl", 30)
    rows.append({"id": "toxic-1", "lang": "en", "title": "t", "text": rows[0]["text"] + " You fucking idiot."})
    rows.append({"id": "pii-1", "lang": "en", "title": "t", "text": rows[1]["text"] + " Mail me at jo.doe@example.com."})
    ds = make_dataset("web-en", "document", rows)
    curator = client_for("curator")
    page = curator.get(reverse("datasets:detail", args=[ds.pk]))
    assert b'value="rules"' in page.content and b'value="minhash"' in page.content

    run = _start(curator, ds, "rules")
    assert run.status == "succeeded"
    assert run.scores.count() == 32
    by_ext = {s.record.external_id: s for s in run.scores.select_related("record")}
    assert by_ext["toxic-1"].keep is False and "toxic" in by_ext["toxic-1"].detail["failed"]
    assert by_ext["pii-1"].reason == "pii"

    resp = curator.get(reverse("curation:run_detail", args=[run.pk]))
    html = resp.content.decode()
    assert resp.status_code == 200
    assert 'id="reasons"' in html and ">pii<" in html
    reasons = chart_options(html)["drops by reason"]  # the bars hold the same counts as the table
    assert dict(zip(reasons["yAxis"]["data"], reasons["series"][0]["data"])) == {
        r["reason"] or "(none)": r["n"] for r in run.scores.filter(keep=False).values("reason").annotate(n=Count("id"))}
    assert 'id="per-rule"' in html  # every failed rule, from the cached summary
    run.refresh_from_db()
    assert run.summary["per_rule"]["toxic"] >= 1 and run.summary["pii_totals"]["email"] == 1
    # HTMX partial: only the dropped table, filtered by reason
    part = curator.get(reverse("curation:run_detail", args=[run.pk]), {"reason": "toxic", "part": "dropped"},
                       HTTP_HX_REQUEST="true")
    assert part.content.decode().lstrip().startswith('<section id="dropped">') and "toxic-1" in part.content.decode()
    # role check: clinicians cannot see runs or start them
    assert client_for("clinician").get(reverse("curation:run_detail", args=[run.pk])).status_code == 403
    assert client_for("clinician").post(reverse("curation:run_start", args=[ds.pk]), {"scorer": "rules"}).status_code == 403


def test_bad_rule_setting_is_refused_before_a_run_exists(make_dataset, client_for):
    ds = make_dataset("small", "document", _rows("general_en.jsonl", 3))
    resp = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]),
                                      {"scorer": "rules", "params": json.dumps({"min_token": 5})}, follow=True)
    assert "unknown rule settings" in resp.content.decode()
    assert not ScorerRun.objects.filter(dataset=ds).exists()


def test_pii_command_then_redacted_copy(make_dataset, client_for):
    rows = [{"id": "q1", "question": "我的电话是13812345678，身份证11010519491231002X，怎么办？", "answer": "请保护个人信息。"},
            {"id": "q2", "question": "头痛三天怎么办？", "answer": "建议及时就医，注意休息。"},
            {"id": "q3", "question": "Email me at pat@example.org please", "answer": "Sure, I will."}]
    ds = make_dataset("consults", "qa", rows)
    call_command("score", "--dataset", "consults", "--scorer", "pii")
    run = ScorerRun.objects.get(dataset=ds, scorer="pii")
    values = {s.record.external_id: (s.value, s.keep, s.reason) for s in run.scores.select_related("record")}
    assert values["q1"][:2] == (2.0, False) and values["q1"][2] in ("pii:phone", "pii:cn_id")
    assert values["q2"] == (0.0, True, "") and values["q3"] == (1.0, False, "pii:email")
    curator = client_for("curator")
    html = curator.get(reverse("curation:run_detail", args=[run.pk])).content.decode()
    assert 'id="pii-counts"' in html and 'id="redact"' in html

    resp = curator.post(reverse("curation:redact", args=[ds.pk]), {"target": "consults-clean", "types": ["phone", "cn_id", "email"]})
    assert resp.status_code == 302
    copy = Dataset.objects.get(name="consults-clean")
    assert copy.parent_id == ds.pk and copy.n_records == 3
    red = {r.external_id: r for r in copy.records.all()}
    assert red["q1"].content["question"] == "我的电话是[PHONE]，身份证[ID_NUMBER]，怎么办？"
    assert "[PHONE]" in red["q1"].text and "13812345678" not in red["q1"].text
    assert red["q3"].content["question"] == "Email me at [EMAIL] please"
    assert Record.objects.get(dataset=ds, external_id="q1").content["question"].startswith("我的电话是13812345678")
    # the name is taken now: a second copy under it is refused, nothing is overwritten
    resp = curator.post(reverse("curation:redact", args=[ds.pk]), {"target": "consults-clean"}, follow=True)
    assert "already exists" in resp.content.decode()


def test_minhash_within_and_across_datasets(make_dataset, client_for):
    docs = _rows("general_zh.jsonl", 40)
    a_rows = [{"id": d["id"], "lang": "zh", "title": d["title"], "text": d["text"]} for d in docs[:30]]
    # planted: a near copy inside A (one sentence added) and copies of A's docs in B
    a_rows.append({"id": "a-dup", "lang": "zh", "title": "x", "text": docs[0]["text"] + "这是补充的一句话。"})
    b_rows = [{"id": "b-" + d["id"], "lang": "zh", "title": d["title"], "text": d["text"]} for d in docs[30:40]]
    b_rows.append({"id": "b-copy", "lang": "zh", "title": "y", "text": docs[5]["text"]})
    a = make_dataset("corpus-a", "document", a_rows)
    b = make_dataset("corpus-b", "document", b_rows)
    curator = client_for("curator")

    run = _start(curator, a, "minhash", {"policy": "longest"})
    assert run.status == "succeeded", run.job.error
    assert run.scores.count() == 31
    dropped = {s.record.external_id for s in run.scores.filter(keep=False).select_related("record")}
    assert dropped == {docs[0]["id"]}, "longest policy keeps the extended copy"
    cluster = DuplicateCluster.objects.get(run=run)
    assert cluster.size == 2 and Record.objects.get(pk=cluster.keeper_id).external_id == "a-dup"

    run2 = _start(curator, a, "minhash", {"datasets": ["corpus-b"], "policy": "first"})
    assert run2.status == "succeeded", run2.job.error
    s = {sc.record.external_id: sc for sc in run2.scores.select_related("record")}
    assert s["a-dup"].keep is False and s["a-dup"].detail["stage"] == "source"
    assert s["b-copy"].keep is False and s["b-copy"].detail["stage"] == "merged"
    assert s["b-copy"].detail["duplicate_of"] == Record.objects.get(dataset=a, external_id=docs[5]["id"]).pk
    html = curator.get(reverse("curation:run_detail", args=[run2.pk])).content.decode()
    assert 'class="side-by-side"' in html and "corpus-b / b-copy" in html


def test_minhash_bad_policy_fails_the_job_with_a_reason(make_dataset, client_for):
    ds = make_dataset("tiny", "document", _rows("general_en.jsonl", 3))
    run = _start(client_for("curator"), ds, "minhash", {"policy": "score"})
    run.refresh_from_db()
    assert run.status == "failed" and "keep_scorer_run" in run.job.error


def test_decontam_names_the_benchmark_item(make_dataset, client_for):
    bench_rows = _rows("cmmlu_med.jsonl", 120)
    bench = make_dataset("cmmlu", "mcq", bench_rows)
    Dataset.objects.filter(pk=bench.pk).update(is_benchmark=True)
    item = next(r for r in bench_rows if len(r["question"]) >= 30)
    qa = [{"id": f"t{i}", "question": r["question"], "answer": r["answer"]} for i, r in enumerate(_rows("huatuo26m_test_qa.jsonl", 30))]
    qa.append({"id": "leak", "question": "请回答：" + item["question"], "answer": "答案是" + item["answer"]})
    train = make_dataset("train-qa", "qa", qa)
    with pytest.raises(CommandError):
        call_command("score", "--dataset", "no-such-set", "--scorer", "decontam")
    call_command("score", "--dataset", "train-qa", "--scorer", "decontam")
    run = ScorerRun.objects.get(dataset=train, scorer="decontam")
    assert run.status == "succeeded"
    bad = list(run.scores.filter(keep=False).select_related("record"))
    assert [s.record.external_id for s in bad] == ["leak"]
    hit = bad[0].detail["hits"][0]
    assert hit["dataset"] == "cmmlu" and hit["external_id"] == item["id"]
    html = client_for("curator").get(reverse("curation:run_detail", args=[run.pk])).content.decode()
    assert 'id="decontam-summary"' in html and item["id"] in html


def test_decontam_splits_into_id_range_shards_with_a_run_wide_summary(make_dataset, client_for):
    bench_rows = _rows("cmmlu_med.jsonl", 120)
    bench = make_dataset("cmmlu", "mcq", bench_rows)
    Dataset.objects.filter(pk=bench.pk).update(is_benchmark=True)
    items = [r for r in bench_rows if len(r["question"]) >= 30][:2]
    qa = [{"id": f"t{i}", "question": r["question"], "answer": r["answer"]} for i, r in enumerate(_rows("huatuo26m_test_qa.jsonl", 30))]
    qa.insert(0, {"id": "leak-first", "question": "请回答：" + items[0]["question"], "answer": items[0]["answer"]})
    qa.append({"id": "leak-last", "question": items[1]["question"] + "？", "answer": items[1]["answer"]})
    train = make_dataset("train-qa", "qa", qa)
    resp = client_for("curator").post(reverse("curation:run_start", args=[train.pk]),
                                      {"scorer": "decontam", "params": "{}", "shards": "3"})
    assert resp.status_code == 302
    run = ScorerRun.objects.get(dataset=train, scorer="decontam")
    from medstudio.jobs.models import Job

    jobs = list(Job.objects.filter(kind="curation.score", params__run_id=run.pk).order_by("params__shard"))
    assert len(jobs) == 3 and {j.status for j in jobs} == {"succeeded"}
    ranges = [(j.params["id_from"], j.params["id_to"]) for j in jobs]
    assert all(a <= b for a, b in ranges) and all(ranges[i][1] < ranges[i + 1][0] for i in range(2))
    run.refresh_from_db()
    assert run.status == "succeeded" and run.scores.count() == 32  # every record scored exactly once
    assert sorted(s.record.external_id for s in run.scores.filter(keep=False).select_related("record")) == ["leak-first", "leak-last"]
    assert run.summary["contaminated"] == 2 and run.summary["records"] == 32  # run-wide, not the last shard's


def test_decontam_without_benchmark_fails_clearly(make_dataset):
    make_dataset("lonely", "document", _rows("general_en.jsonl", 2))
    with pytest.raises(CommandError):
        call_command("score", "--dataset", "lonely", "--scorer", "decontam")
    run = ScorerRun.objects.get(scorer="decontam")
    assert "flag one as benchmark" in run.job.error


class _Ctx:
    """A job context that dies (like a lost worker) when the cursor would pass `crash_after`."""

    def __init__(self, cursor=None, crash_after=None):
        self.params, self.cursor, self.crash_after, self.logs = {}, cursor, crash_after, []

    def progress(self, *, done=None, total=None, cursor=...):
        if cursor is not ... and self.crash_after is not None and cursor.get("after", 0) > self.crash_after:
            raise RuntimeError("worker lost")
        if cursor is not ...:
            self.cursor = cursor

    def log(self, msg, level="info"):
        self.logs.append(msg)


def test_minhash_job_resumes_from_its_cursor_without_redoing_work(make_dataset, monkeypatch):
    import curation.handlers as handlers

    monkeypatch.setattr(handlers, "BATCH", 10)
    docs = _rows("general_en.jsonl", 40)
    rows = [{"id": d["id"], "lang": "en", "title": d["title"], "text": d["text"]} for d in docs[:30]]
    rows += [{"id": f"dup{i}", "lang": "en", "title": "d", "text": docs[i]["text"] + " Copied."} for i in range(5)]
    ds = make_dataset("resume-me", "document", rows)
    run = ScorerRun.objects.create(dataset=ds, scorer="minhash", params={})
    qs = Record.objects.filter(dataset=ds).order_by("id")
    first = _Ctx(crash_after=20)
    with pytest.raises(RuntimeError, match="worker lost"):
        handlers._minhash_corpus(first, run, qs)
    assert first.cursor == {"clusters_written": True, "after": 20}
    assert run.scores.count() == 20  # the batch being written when the worker died was rolled back
    n_clusters = DuplicateCluster.objects.filter(run=run).count()
    assert n_clusters >= 5

    second = _Ctx(cursor=first.cursor)
    summary = handlers._minhash_corpus(second, run, qs)
    assert run.scores.count() == 35
    assert DuplicateCluster.objects.filter(run=run).count() == n_clusters == summary["clusters"]
    dropped = set(run.scores.filter(keep=False).values_list("record__external_id", flat=True))
    assert {f"dup{i}" for i in range(5)} <= dropped


def test_minhash_per_source_inside_one_dataset_and_cluster_partial(make_dataset, client_for):
    docs = _rows("general_en.jsonl", 12)
    rows = [{"id": d["id"], "lang": "en", "title": d["title"], "text": d["text"], "source": "wiki"} for d in docs[:10]]
    rows.append({"id": "same-src", "lang": "en", "title": "a", "text": docs[1]["text"] + " Again.", "source": "wiki"})
    rows.append({"id": "other-src", "lang": "en", "title": "b", "text": docs[2]["text"], "source": "forum"})
    ds = make_dataset("mixed-sources", "document", rows)
    curator = client_for("curator")
    run = _start(curator, ds, "minhash", {"per_source": True})
    assert run.status == "succeeded", run.job.error
    s = {sc.record.external_id: sc for sc in run.scores.select_related("record")}
    assert (s["same-src"].keep, s["same-src"].detail["stage"]) == (False, "source")
    assert (s["other-src"].keep, s["other-src"].detail["stage"]) == (False, "merged")
    stages = set(DuplicateCluster.objects.filter(run=run).values_list("stage", flat=True))
    assert stages == {"source", "merged"}
    part = curator.get(reverse("curation:run_detail", args=[run.pk]), {"part": "clusters"}, HTTP_HX_REQUEST="true")
    html = part.content.decode()
    assert html.lstrip().startswith('<section id="clusters">') and html.count('class="side-by-side"') == 2


def test_minhash_keep_policy_uses_a_chosen_scorer_run(make_dataset, client_for):
    docs = _rows("general_en.jsonl", 6)
    rows = [{"id": d["id"], "lang": "en", "title": d["title"], "text": d["text"]} for d in docs[:5]]
    rows.append({"id": "copy", "lang": "en", "title": "c", "text": docs[0]["text"] + " Contact me at a.b@example.com"})
    ds = make_dataset("policy-score", "document", rows)
    curator = client_for("curator")
    pii_run = _start(curator, ds, "pii")  # value = number of PII spans: the copy scores 1, the original 0
    run = _start(curator, ds, "minhash", {"policy": "score", "keep_scorer_run": pii_run.pk})
    assert run.status == "succeeded", run.job.error
    dropped = list(run.scores.filter(keep=False).values_list("record__external_id", flat=True))
    assert dropped == [docs[0]["id"]], "the member with the highest score of the chosen run is kept"


def test_sharded_rules_run_finishes_once_every_shard_is_done(make_dataset, client_for):
    ds = make_dataset("sharded", "document", _rows("general_en.jsonl", 12))
    client_for("curator").post(reverse("curation:run_start", args=[ds.pk]), {"scorer": "rules", "params": "{}", "shards": 3})
    run = ScorerRun.objects.get(dataset=ds)
    assert run.status == "succeeded" and run.scores.count() == 12
