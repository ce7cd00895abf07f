"""The corpus threshold studio page: roles, histograms with threshold markLines, live counts per
language and source (HTMX) that match a plain count over the score files, clear errors, and the
Freeze button that runs the freeze job and lists the frozen selection with its exact count."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from curation.corpus.services import corpus_register
from medstudio.handoffs.models import CorpusSelection
from medstudio.jobs.models import Job
from tests.charts import chart_options
from tests.corpus.conftest import docs, write_parquet
from tests.corpus.test_corpus_selection_training import _scored_corpus

pytestmark = pytest.mark.django_db


def _rows(out):
    return [r for p in sorted(Path(out).glob("*.scores.parquet")) for r in pq.read_table(p).to_pylist()]


def test_studio_page_counts_and_freeze(tmp_path, client_for):
    c, _d, out = _scored_corpus(tmp_path, scorers={"rules": {}, "pii": {}})
    rows = _rows(out)
    url = reverse("curation:corpus_studio", args=[c.pk])
    counts_url = reverse("curation:corpus_studio_counts", args=[c.pk])
    freeze_url = reverse("curation:corpus_studio_freeze", args=[c.pk])
    clin = client_for("clinician")
    assert clin.get(url).status_code == 403 and clin.post(counts_url, {}).status_code == 403
    assert clin.post(freeze_url, {"selection_name": "x"}).status_code == 403

    cur = client_for("curator")
    assert url in cur.get(reverse("curation:corpus_detail", args=[c.pk])).content.decode()
    page = cur.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    charts = chart_options(html)
    assert {"rules_value", "pii_value"} <= set(charts)
    assert sum(sum(s["data"][i][1] for i in range(len(s["data"]))) for s in charts["rules_value"]["series"]) == len(rows)
    assert 'name="drop.pii_keep"' in html and 'name="drop.rules_keep"' in html
    by_lang = cur.get(url + "?split=lang").content.decode()
    assert {s["name"] for s in chart_options(by_lang)["rules_value"]["series"]} == {"en", "zh"}

    # a live update: threshold on the rules value, drop what PII drops, minimum length
    lo = 0.5
    chars = sorted(r["n_chars"] for r in rows)[len(rows) // 3]
    form = {"max.rules_value": str(lo), "drop.pii_keep": "on", "min_chars": str(chars)}
    r = cur.post(counts_url, form, HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    part = r.content.decode()
    want = [x for x in rows if x["rules_value"] <= lo and x["pii_keep"] and x["n_chars"] >= chars]
    assert 0 < len(want) < len(rows)
    assert f'<strong id="kept-docs">{len(want)}</strong>' in part
    assert f'<span id="kept-tokens">{sum(x["n_tokens"] for x in want):,}</span>' in part
    zh = sum(1 for x in want if x["lang"] == "zh")
    assert f'<tr><td>zh</td><td class="num">{zh}</td>' in part
    oob = chart_options(part)["rules_value"]
    assert [m["xAxis"] for m in oob["series"][0]["markLine"]["data"]] == [lo]

    # bad input: a clear message, nothing lost, no 500
    bad = cur.post(counts_url, {"min.rules_value": "abc"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 200 and "is not a number" in bad.content.decode()
    refused = cur.post(freeze_url, {"selection_name": "no spaces allowed", **form}, follow=True)
    assert refused.status_code == 200 and "name the selection" in refused.content.decode()
    assert not CorpusSelection.objects.exists()

    # Freeze: a job whose result is the exact count; the studio lists the selection
    done = cur.post(freeze_url, {"selection_name": "med-v2", **form})
    assert done.status_code == 302
    job = Job.objects.get(kind="curation.corpus_freeze")
    assert done["Location"] == reverse("jobs:detail", args=[job.pk])
    assert job.status == "succeeded" and job.result["kept"] == len(want)
    sel = CorpusSelection.objects.get(name="med-v2")
    assert sel.n_records == len(want) and sel.job_id == job.pk
    listed = cur.get(url).content.decode()
    assert "<code>med-v2</code>" in listed and f'<td class="num">{len(want)}</td>' in listed


def test_studio_without_a_run_says_what_to_do(tmp_path, client_for):
    d = tmp_path / "c"
    d.mkdir()
    write_parquet(d / "a.parquet", docs(6, 0))
    c = corpus_register(actor=None, name="fresh", uri=str(d))
    page = client_for("curator").get(reverse("curation:corpus_studio", args=[c.pk]))
    assert page.status_code == 200 and "no scoring run yet" in page.content.decode()
    r = client_for("curator").post(reverse("curation:corpus_studio_freeze", args=[c.pk]), {"selection_name": "a"}, follow=True)
    assert r.status_code == 200 and "no scoring run yet" in r.content.decode()
