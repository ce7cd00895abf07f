"""Issue 18.1: a finished MinHash job counts every record and ends at 100%, and its job page links to
the scorer run's results (an odd record count used to end at 99%)."""
import json

import pytest
from django.urls import reverse

from medstudio.handoffs.models import ScorerRun

pytestmark = pytest.mark.django_db


def test_minhash_ends_at_100_percent_and_links_to_results(make_dataset, client_for):
    rows = [{"id": f"d{i}", "lang": "en", "title": "t", "text": f"Document number {i} about fever and cough in children. " * 3}
            for i in range(31)]  # odd on purpose
    ds = make_dataset("odd-corpus", "document", rows)
    c = client_for("curator")
    assert c.post(reverse("curation:run_start", args=[ds.pk]), {"scorer": "minhash", "params": json.dumps({})}).status_code == 302
    run = ScorerRun.objects.filter(dataset=ds, scorer="minhash").latest("id")
    job = run.job
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.done == job.total == 31 and job.percent == 100
    page = c.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert reverse("curation:run_detail", args=[run.pk]) in page and "Cancel" not in page
