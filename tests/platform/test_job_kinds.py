"""Issue 18 point 1: every job kind a handler runs reads in words and links to what it made."""
import pytest
from django.urls import reverse

from medstudio.jobs.models import Job, JobStatus
from medstudio.jobs.registry import handlers, job_result_links, kind_info

pytestmark = pytest.mark.django_db


def test_every_handler_kind_has_a_label_and_a_result_resolver():
    # kinds that other tests register for themselves ("tests.*") are not the app's
    kinds = sorted(k for k in handlers() if not k.startswith("tests."))
    # the apps' ready() registered the handlers: the stages' kinds are all here
    assert {"curation.score", "curation.corpus_run", "curation.corpus_dedup", "evaluation.mcq", "evaluation.harness",
            "studio.build_mixture", "training.run", "annotation.judge"} <= set(kinds)
    missing_label = [k for k in kinds if kind_info(k) is None or not kind_info(k).label.strip()]
    assert missing_label == []
    # every kind makes something (a run, a dataset, a file, a verdict) and names where it is
    missing_links = [k for k in kinds if kind_info(k).result_links is None]
    assert missing_links == []


def test_evaluation_and_corpus_kinds_link_to_their_results():
    from curation.corpus.models import Corpus, CorpusRun

    for kind in ("evaluation.mcq", "evaluation.consultation", "evaluation.memorization", "evaluation.harness"):
        job = Job.objects.create(kind=kind, status=JobStatus.SUCCEEDED, params={"run_id": 5}, result={"run_id": 5})
        assert [u for _t, u in job_result_links(job)] == [reverse("evaluation:run", args=[5])]
    corpus = Corpus.objects.create(name="c1", uri="/tmp/none")
    run = CorpusRun.objects.create(corpus=corpus, scorers={"rules": {}})
    job = Job.objects.create(kind="curation.corpus_run", status=JobStatus.SUCCEEDED, params={"run_id": run.pk})
    assert [u for _t, u in job_result_links(job)] == [reverse("curation:corpus_detail", args=[corpus.pk])]
    job = Job.objects.create(kind="curation.corpus_dedup", status=JobStatus.SUCCEEDED, params={"corpus_id": corpus.pk})
    assert [u for _t, u in job_result_links(job)] == [reverse("curation:corpus_detail", args=[corpus.pk])]


def test_finished_scorer_job_page_links_to_the_runs_results(client_for, make_dataset):
    from medstudio.handoffs.models import ScorerRun

    ds = make_dataset("jobkinds-ds", "document", [{"text": "a record about fever", "lang": "en"}])
    run = ScorerRun.objects.create(dataset=ds, scorer="rules", status="succeeded")
    job = Job.objects.create(kind="curation.score", status=JobStatus.SUCCEEDED, params={"run_id": run.pk},
                             result={"run_id": run.pk, "scored": 1})
    page = client_for("curator").get(reverse("jobs:detail", args=[job.pk])).content.decode()
    bar = page.split('id="job-result-links"')[1].split("</p>")[0]
    assert reverse("curation:run_detail", args=[run.pk]) in bar and "results" in bar
