"""Issue 18 point 7: a mixture takes datasets (whole, or through a recipe) beside selections, freezes
them when drawn (lineage kept), and a missing language is a warning, not an error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.studio.services import recipe_version_create
from medstudio.datasets.models import Record
from medstudio.handoffs.lineage import graph
from medstudio.handoffs.models import Mixture, Selection, SelectionRecord

from .conftest import read_rows
from .test_flow import V1_SPEC, kept_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def zh_only(scored, make_dataset, shared_data, curator):
    """Chinese medical QA with a recipe, and whole Chinese general documents: no English anywhere."""
    qa, _docs = scored
    gen = make_dataset("gen-zh", "document", read_rows(shared_data, "general_zh.jsonl", 60))
    rv = recipe_version_create(user=curator, name="qa-clean", datasets=[qa], conditions=V1_SPEC)
    return qa, gen, rv


def _fields(qa, gen, rv, **extra):
    return {"name": "zh-stable", "stage": "stable", "budget": "200000", "shard_tokens": "50000",
            "categories": "medical=19,general=1", "langs": "zh=1,en=9", "strategy": "independent",
            f"dcat.{qa.pk}": "medical", f"drecipe.{qa.pk}": str(rv.pk), f"dcat.{gen.pk}": "general", **extra}


def test_preview_plans_datasets_and_warns_about_missing_english(zh_only, client_for):
    qa, gen, rv = zh_only
    c = client_for("curator")
    form = c.get("/studio/mixtures/new/").content.decode()
    assert f'name="dcat.{gen.pk}"' in form and f'<option value="{rv.pk}">qa-clean v1</option>' in form
    page = c.post("/studio/mixtures/new/", {**_fields(qa, gen, rv), "action": "preview"}).content.decode()
    assert 'class="error' not in page
    warning = page.split('plan-warning">')[1].split("</p>")[0]
    assert "No English available: 0 of 180,000 tokens planned" in warning
    # the recipe source counts what the recipe keeps, the whole dataset everything
    kept_tokens = sum(Record.objects.filter(pk__in=kept_ids([qa], V1_SPEC)).values_list("n_tokens", flat=True))
    gen_tokens = sum(Record.objects.filter(dataset=gen).values_list("n_tokens", flat=True))
    rows = page.split('id="plan"')[1]
    assert f"huatuo (qa-clean v1)" in rows and f">{kept_tokens:,}<" in rows and f">{gen_tokens:,}<" in rows
    assert not Selection.objects.exists() and not Mixture.objects.exists()  # a preview freezes nothing


def test_build_freezes_each_dataset_source_into_a_selection_with_lineage(zh_only, client_for):
    qa, gen, rv = zh_only
    c = client_for("curator")
    r = c.post("/studio/mixtures/new/", {**_fields(qa, gen, rv), "action": "build"})
    mix = Mixture.objects.get(name="zh-stable")
    assert r.status_code == 302 and mix.status == "succeeded", mix.job.error if mix.job else ""
    from_qa = Selection.objects.get(recipe_version=rv)
    whole = Selection.objects.get(recipe_version=None)
    assert set(SelectionRecord.objects.filter(selection=from_qa).values_list("record_id", flat=True)) == kept_ids([qa], V1_SPEC)
    assert set(SelectionRecord.objects.filter(selection=whole).values_list("record_id", flat=True)) == \
        set(Record.objects.filter(dataset=gen).values_list("id", flat=True))
    assert list(from_qa.datasets.all()) == [qa] and from_qa.scorer_runs.exists()
    assert sorted((s["selection"], s["dataset"]) for s in mix.sources) == sorted([(from_qa.pk, qa.pk), (whole.pk, gen.pk)])
    assert set(mix.parts.values_list("selection_id", flat=True)) == {from_qa.pk, whole.pk}
    # lineage: mixture -> frozen selections -> recipe version, scorer runs, datasets
    ids = {n["id"] for n in graph(f"mixture:{mix.pk}")["nodes"]}
    assert {f"selection:{from_qa.pk}", f"selection:{whole.pk}", f"recipe_version:{rv.pk}", f"dataset:{qa.pk}",
            f"dataset:{gen.pk}"} <= ids and any(i.startswith("scorer_run:") for i in ids)
    # the achieved ratios are the renormalised ones: all Chinese, medical:general 19:1
    assert mix.achieved["langs"]["zh"]["achieved"] == pytest.approx(1.0) and "en" not in mix.achieved["langs"]
    cats = mix.achieved["categories"]
    # whole records are drawn, each cell to within one record of its plan: the ratio is 19 to within that
    m, g = cats["medical"]["tokens"], cats["general"]["tokens"]
    longest_gen = max(Record.objects.filter(dataset=gen).values_list("n_tokens", flat=True))
    longest_med = max(Record.objects.filter(pk__in=kept_ids([qa], V1_SPEC)).values_list("n_tokens", flat=True))
    assert m / g == pytest.approx(19, rel=longest_gen / g + longest_med / m)
    rows = [json.loads(x) for f in mix.files if f.startswith("shard-") for x in (Path(mix.path) / f).read_text().splitlines()]
    assert {x["selection"] for x in rows} == {from_qa.pk, whole.pk}
    page = c.get(f"/studio/mixtures/{mix.pk}/").content.decode()
    assert "No English available" in page and "frozen from dataset huatuo" in page


def test_bad_dataset_sources_are_clear_errors_and_create_nothing(zh_only, client_for, curator):
    qa, gen, rv = zh_only
    c = client_for("curator")
    other = recipe_version_create(user=curator, name="gen-only", datasets=[gen], conditions={"bounds": [], "flags": []})
    page = c.post("/studio/mixtures/new/", {**_fields(qa, gen, rv, **{f"drecipe.{qa.pk}": str(other.pk)}),
                                            "action": "build"})
    assert page.status_code == 200 and "was not made for dataset huatuo" in page.content.decode()
    page = c.post("/studio/mixtures/new/", {**_fields(qa, gen, rv, **{f"drecipe.{qa.pk}": "x"}), "action": "build"})
    assert page.status_code == 200 and "Pick a recipe version" in page.content.decode()
    assert 'value="zh-stable"' in page.content.decode()  # what was typed stays
    assert not Mixture.objects.exists() and not Selection.objects.exists()
    assert client_for("clinician").get("/studio/mixtures/new/").status_code in (302, 403)


def test_api_plans_a_mixture_from_a_whole_dataset(zh_only, client_for):
    qa, gen, rv = zh_only
    c = client_for("curator")
    body = {"name": "api-mix", "budget_tokens": 10000, "build": False,
            "targets": {"categories": {"general": 1}, "langs": {"zh": 1, "en": 9}},
            "sources": [{"dataset": gen.pk, "category": "general"}]}
    r = c.post("/studio/api/mixtures/", body, content_type="application/json")
    assert r.status_code == 201, r.content
    mix = Mixture.objects.get(name="api-mix")
    assert mix.plan["missing"][0]["lang"] == "en" and mix.sources[0]["dataset"] == gen.pk and not mix.parts.exists()
    bad = c.post("/studio/api/mixtures/", {**body, "name": "api-bad", "sources": [{"dataset": 999999, "category": "general"}]},
                 content_type="application/json")
    assert bad.status_code == 400 and "unknown dataset" in bad.json()["detail"]
