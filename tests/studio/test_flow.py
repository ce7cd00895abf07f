"""Studio through HTTP: page, live counts, recipes and diffs, selections, exports, mixtures, API."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from curation.studio.models import SelectionExport
from medstudio.handoffs.models import Recipe, RecipeVersion, Score, Selection, SelectionRecord
from curation.studio.selectors import kept_counts, scope_load
from curation.studio.spec import parse_spec
from medstudio.datasets.models import Record

from .test_counts import direct
from tests.charts import chart_options

pytestmark = pytest.mark.django_db

V1 = {"min.t_rater": "2.0", "flag.t_rules": "on"}
V2 = {"min.t_rater": "2.5", "max.t_deita": "30", "flag.t_rules": "on", "flag.t_dedup": "on"}
V1_SPEC = {"bounds": [{"scorer": "t_rater", "min": 2.0}], "flags": ["t_rules"]}
V2_SPEC = {"bounds": [{"scorer": "t_rater", "min": 2.5}, {"scorer": "t_deita", "max": 30}], "flags": ["t_dedup", "t_rules"]}


def kept_ids(datasets, data) -> set[int]:
    """Direct recomputation of the kept record ids (independent of the matrix)."""
    from medstudio.handoffs.models import Score, ScorerRun

    spec = parse_spec(data)
    out = set()
    for ds in datasets:
        latest = {}
        for run in ScorerRun.objects.filter(dataset=ds).order_by("-id"):
            latest.setdefault(run.scorer, run)
        vals = {n: dict(Score.objects.filter(run=r).values_list("record_id", "value")) for n, r in latest.items()}
        keeps = {n: dict(Score.objects.filter(run=r).values_list("record_id", "keep")) for n, r in latest.items()}
        for rid in Record.objects.filter(dataset=ds).values_list("id", flat=True):
            ok = all(
                (vals[b.scorer].get(rid) is not None and (b.min is None or vals[b.scorer][rid] >= b.min)
                 and (b.max is None or vals[b.scorer][rid] <= b.max))
                for b in spec.bounds)
            ok = ok and all(keeps[f].get(rid) is not False for f in spec.flags)
            if ok:
                out.add(rid)
    return out


def _save(client, ds_ids, fields, name="clean-zh"):
    return client.post("/studio/recipes/save/", {"ds": ",".join(map(str, ds_ids)), "recipe_name": name, **fields},
                       HTTP_HX_REQUEST="true")


def test_studio_page_draws_a_histogram_per_scorer(scored, client_for):
    qa, docs = scored
    c = client_for("curator")
    r = c.get(f"/studio/open/?ds={qa.pk}&ds={docs.pk}")
    html = r.content.decode()
    assert r.status_code == 200
    charts = chart_options(html)
    for name in ("t_rater", "t_deita", "t_cf"):
        assert f'id="hist-{name}"' in html
        bins = charts[name]["series"][0]["data"]  # [bin centre, count] over the scorer's range
        assert len(bins) == 30 and sum(n for _, n in bins) == Score.objects.filter(
            run__scorer=name, run__dataset__in=[qa, docs], value__isnull=False).count()
    assert "too_short" in html  # drop counts per rule reason
    assert "Duplicate clusters" in html
    split = chart_options(c.get(f"/studio/open/?ds={qa.pk}&ds={docs.pk}&split=lang").content.decode())
    assert [s["name"] for s in split["t_rater"]["series"]] == ["en", "zh"] and split["t_rater"]["legend"]["show"]


def test_clinicians_cannot_open_the_studio(scored, client_for):
    qa, _ = scored
    assert client_for("clinician").get(f"/studio/open/?ds={qa.pk}").status_code == 403


def test_live_counts_partial_matches_direct_recount(scored, client_for):
    qa, docs = scored
    c = client_for("curator")
    r = c.post("/studio/counts/", {"ds": f"{qa.pk},{docs.pk}", **V2}, HTTP_HX_REQUEST="true")
    html = r.content.decode()
    expected = direct([qa, docs], V2_SPEC)
    n = sum(v[0] for v in expected.values())
    assert f'<strong id="kept-records">{n:,}</strong>' in html
    assert 'hx-swap-oob="true"' in html
    # the histograms come back with the thresholds drawn as lines (t_deita max 30)
    lines = [m.get("xAxis") for o in chart_options(html).values() for s in o.get("series", [])
             for m in (s.get("markLine") or {}).get("data", [])]
    assert 30.0 in lines
    assert "<html" not in html  # a partial, not a page
    assert "(full)" in html
    # the page sends back the key of the counts it shows; the next slider step is answered incrementally
    base = html.split('name="base" value="')[1].split('"')[0]
    step = {**V2, "min.t_rater": "2.6", "base": base}
    html2 = c.post("/studio/counts/", {"ds": f"{qa.pk},{docs.pk}", **step}, HTTP_HX_REQUEST="true").content.decode()
    n2 = len(kept_ids([qa, docs], {**V2_SPEC, "bounds": [{"scorer": "t_rater", "min": 2.6}, {"scorer": "t_deita", "max": 30}]}))
    assert "(delta)" in html2 and f'<strong id="kept-records">{n2:,}</strong>' in html2


def test_bad_threshold_is_reported_not_crashing(scored, client_for):
    qa, _ = scored
    r = client_for("curator").post("/studio/counts/", {"ds": str(qa.pk), "min.t_rater": "4", "max.t_rater": "1"},
                                   HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and "above maximum" in r.content.decode()


def test_samples_lie_on_both_sides_of_the_threshold(scored, client_for):
    qa, _ = scored
    from curation.studio.selectors import samples_near

    scope = scope_load([qa.pk])
    spec = parse_spec({"bounds": [{"scorer": "t_rater", "min": 2.5}]})
    s = samples_near(scope, spec, "t_rater")
    assert s["min_inside"] and s["min_outside"]
    assert all(r["value"] >= 2.5 for r in s["min_inside"]) and all(r["value"] < 2.5 for r in s["min_outside"])
    # the nearest records: nothing kept lies between the threshold and the closest inside sample
    closest = min(r["value"] for r in s["min_inside"])
    from medstudio.handoffs.models import Score

    run = scope.value["t_rater"].runs[qa.pk]["run"]
    assert not Score.objects.filter(run_id=run, value__gte=2.5, value__lt=closest).exists()
    html = client_for("curator").post("/studio/samples/", {"ds": str(qa.pk), "min.t_rater": "2.5"}).content.decode()
    assert "just inside min" in html and "just outside min" in html


def test_recipe_versions_diff_and_apply(scored, client_for, tmp_path):
    qa, docs = scored
    c = client_for("curator")
    assert "Saved" in _save(c, [qa.pk, docs.pk], V1).content.decode()
    assert "Saved" in _save(c, [qa.pk, docs.pk], V2).content.decode()
    _save(c, [qa.pk, docs.pk], V2)  # unchanged conditions: no new version
    recipe = Recipe.objects.get(name="clean-zh")
    v1, v2 = recipe.versions.order_by("number")
    assert [v1.number, v2.number] == [1, 2] and recipe.versions.count() == 2

    ids1, ids2 = kept_ids([qa, docs], V1_SPEC), kept_ids([qa, docs], V2_SPEC)
    html = c.get(f"/studio/recipes/{recipe.pk}/?a={v1.pk}&b={v2.pk}").content.decode()
    assert f'id="gained">+{len(ids2 - ids1):,}<' in html and f'id="lost">−{len(ids1 - ids2):,}<' in html
    assert "~ t_rater &gt;= 2  -&gt;  t_rater &gt;= 2.5" in html and "+ filter t_dedup" in html
    back = c.get(f"/studio/recipes/{recipe.pk}/?a={v2.pk}&b={v1.pk}").content.decode()
    assert f'id="gained">+{len(ids1 - ids2):,}<' in back

    r = c.post(f"/studio/versions/{v2.pk}/apply/", {"name": "zh-clean"})
    sel = Selection.objects.get(name="zh-clean")
    assert r.status_code == 302 and sel.status == "ready"
    assert set(SelectionRecord.objects.filter(selection=sel).values_list("record_id", flat=True)) == ids2
    assert sel.n_records == len(ids2)
    assert sel.n_tokens == sum(Record.objects.filter(pk__in=ids2).values_list("n_tokens", flat=True))
    digest = hashlib.sha256()
    for rid, th in Record.objects.filter(pk__in=ids2).order_by("id").values_list("id", "text_hash"):
        digest.update(f"{rid}:{th}\n".encode())
    assert sel.content_hash == digest.hexdigest()
    assert {(r["scorer"], r["version"]) for r in sel.runs} >= {("t_rater", "1"), ("t_dedup", "1")}
    page = c.get(f"/studio/selections/{sel.pk}/").content.decode()
    assert sel.content_hash in page


def _apply(c, ds_ids, fields, name):
    _save(c, ds_ids, fields, name=name)
    version = RecipeVersion.objects.filter(recipe__name=name).order_by("-number").first()
    c.post(f"/studio/versions/{version.pk}/apply/", {"name": name})
    return Selection.objects.get(name=name)


def test_exports_write_each_format_with_provenance(scored, client_for):
    qa, _ = scored
    c = client_for("curator")
    sel = _apply(c, [qa.pk], {"min.t_rater": "1.0", "flag.t_rules": "on"}, "qa-sel")
    ids = set(SelectionRecord.objects.filter(selection=sel).values_list("record_id", flat=True))
    for fmt in ["jsonl", "parquet", "messages", "preference", "llamafactory", "text"]:
        r = c.post(f"/studio/selections/{sel.pk}/export/", {"format": fmt})
        assert r.status_code == 302
        export = SelectionExport.objects.get(selection=sel, format=fmt)
        assert export.status == "succeeded", export.job.error if export.job else ""
        folder = Path(export.path)
        prov = json.loads((folder / "provenance.json").read_text())
        assert prov["selection"]["content_hash"] == sel.content_hash
        assert prov["recipe"]["name"] == "qa-sel" and prov["recipe"]["version"] == 1
        assert {r["scorer"] for r in prov["scorer_runs"]} == {"t_rater", "t_rules"}
        data = folder / export.files[0]
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(data)
            assert table.num_rows == sel.n_records
            assert set(table.column("record_id").to_pylist()) == ids
        elif fmt == "text":
            assert data.read_text().count("\n\n") >= sel.n_records
        else:
            lines = [json.loads(x) for x in data.read_text().splitlines()]
            if fmt == "preference":
                assert lines == [] and export.skipped == {"a qa has no rejected answer (build preference pairs first)": sel.n_records}
            else:
                assert len(lines) == sel.n_records == export.n_written
            if fmt == "messages":
                assert all([m["role"] for m in x["messages"]] == ["user", "assistant"] for x in lines)
            if fmt == "jsonl":
                assert {x["record_id"] for x in lines} == ids
            if fmt == "llamafactory":
                info = json.loads((folder / "dataset_info.json").read_text())
                entry = next(iter(info.values()))
                assert entry["file_name"] == data.name and entry["formatting"] == "sharegpt"
                assert all(set(entry["columns"].values()) <= set(x) for x in lines)
        assert c.get(f"/studio/exports/{export.pk}/{export.files[0]}").status_code == 200
    assert c.get(f"/studio/exports/{export.pk}/..%2Fsecret").status_code == 404
    assert c.post(f"/studio/selections/{sel.pk}/export/", {"format": "xml"}).status_code == 302
    assert not SelectionExport.objects.filter(format="xml").exists()


def test_stable_mixture_from_selections_hits_the_ratios(scored, client_for, shared_data, make_dataset, curator):
    from curation.scoring import scorer_run_start
    from medstudio.handoffs.models import Mixture

    from .conftest import read_rows

    qa, docs = scored
    pub = make_dataset("pubmed", "mcq", read_rows(shared_data, "pubmedqa.jsonl", 120))
    scorer_run_start(user=curator, dataset=pub, scorer="t_rater")
    c = client_for("curator")
    med_zh = _apply(c, [qa.pk], {"min.t_rater": "0.5"}, "med-zh")
    med_en = _apply(c, [pub.pk], {"min.t_rater": "0.5"}, "med-en")
    gen = _apply(c, [docs.pk], {"flag.t_rules": "on"}, "general")
    fields = {"name": "stable-1", "stage": "stable", "budget": "1500000", "shard_tokens": "400000",
              "categories": "medical=19,general=1", "langs": "zh=1,en=9", "strategy": "independent",
              f"cat.{med_zh.pk}": "medical", f"cat.{med_en.pk}": "medical", f"cat.{gen.pk}": "general"}
    preview = c.post("/studio/mixtures/new/", {**fields, "action": "preview"}).content.decode()
    assert 'id="plan"' in preview and "up-sampled" in preview
    plan = chart_options(preview)["planned tokens per category and language, by source"]
    planned = [s for s in plan["series"] if s["stack"] == "all"]
    assert {s["name"] for s in planned} == {"med-zh", "med-en", "general"} and plan["series"][-1]["name"] == "available"
    assert plan["xAxis"]["data"] == ["general · en", "general · zh", "medical · en", "medical · zh"]
    r = c.post("/studio/mixtures/new/", {**fields, "action": "build"})
    mix = Mixture.objects.get(name="stable-1")
    assert r.status_code == 302 and mix.status == "succeeded", mix.job.error if mix.job else ""
    cats, langs = mix.achieved["categories"], mix.achieved["langs"]
    assert cats["medical"]["tokens"] / cats["general"]["tokens"] == pytest.approx(19, rel=0.01)
    assert langs["zh"]["tokens"] / langs["en"]["tokens"] == pytest.approx(1 / 9, rel=0.01)
    folder = Path(mix.path)
    shards = [f for f in mix.files if f.startswith("shard-")]
    assert len(shards) >= 3
    rows = [json.loads(x) for f in shards for x in (folder / f).read_text().splitlines()]
    assert sum(x["n_tokens"] for x in rows) == mix.achieved["total_tokens"]
    assert max(x["epoch"] for x in rows if x["selection"] == med_en.pk) >= 1  # up-sampled English medical text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["selections"][str(gen.pk)] == gen.content_hash
    page = c.get(f"/studio/mixtures/{mix.pk}/").content.decode()
    assert 'id="achieved"' in page and "shard-00000.jsonl" in page


def test_api_counts_recipe_apply_export(scored, client_for):
    qa, docs = scored
    c = client_for("curator")
    body = {"datasets": [qa.pk, docs.pk], "conditions": V2_SPEC}
    r = c.post("/studio/api/counts/", body, content_type="application/json")
    assert r.status_code == 200
    assert r.json()["total"]["kept"] == len(kept_ids([qa, docs], V2_SPEC))
    bad = c.post("/studio/api/counts/", {"datasets": [qa.pk], "conditions": {"bounds": [{"scorer": "x", "min": "y"}]}},
                 content_type="application/json")
    assert bad.status_code == 400
    r = c.post("/studio/api/recipes/", {"name": "api-r", "datasets": [qa.pk], "conditions": V1_SPEC}, content_type="application/json")
    assert r.status_code == 201
    vid = r.json()["id"]
    r = c.post(f"/studio/api/versions/{vid}/apply/", {}, content_type="application/json")
    sel_id = r.json()["id"]
    assert c.get(f"/studio/api/selections/{sel_id}/").json()["status"] == "ready"
    r = c.post(f"/studio/api/selections/{sel_id}/exports/", {"format": "messages"}, content_type="application/json")
    assert r.status_code == 202 and r.json()[0]["status"] == "succeeded"
    assert client_for("clinician").get("/studio/api/selections/").status_code == 403


def test_large_dataset_matrix_is_refreshed_by_one_job(scored, client_for, curator, settings, monkeypatch):
    from curation.scoring import scorer_run_start
    from curation.studio import views
    from medstudio.jobs.models import Job

    qa, _ = scored
    settings.JOBS_EAGER = False  # leave jobs queued, as a busy worker would
    monkeypatch.setattr("medstudio.jobs.services._enqueue", lambda job: None)
    run = scorer_run_start(user=curator, dataset=qa, scorer="t_cf", enqueue=False)  # a newer run: the matrix is stale
    from medstudio.jobs.services import job_execute

    job_execute(job_id=run.job_id)
    # the run's own follow-up sync job stays queued too: drop it so the page's job is the only one
    Job.objects.filter(kind="studio.matrix_sync").delete()
    monkeypatch.setattr(views, "INLINE_SYNC_MAX_RECORDS", 10)
    c = client_for("curator")
    assert "being refreshed" in c.get(f"/studio/open/?ds={qa.pk}").content.decode()
    c.get(f"/studio/open/?ds={qa.pk}")
    assert Job.objects.filter(kind="studio.matrix_sync").count() == 1
