"""The whole chain in headless Chromium, as an admin clicks it, moving through the pipeline board.

Run scorer (dataset page) -> studio selection (board's "next step") -> Stable mixture (board) and
Boost mixture (mixture form) -> CPT-stable -> CPT-boost -> SFT -> objective pairs -> DPO with online
merging (each from the board's "next step", pre-filled) -> the DPO model's page, whose lineage graph
reaches back to the scorer runs. Same public data and tiny local Llama as test_chain.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser_steps import select_and_settle
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training.toydata import _rows

from .test_chain import _documents

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
# The tiny spec overrides of test_chain.py, as the New-run form's fields.
TINY = {"max_length": "96", "per_device_batch_size": "4", "global_batch_size": "4", "logging_steps": "1",
        "learning_rate": "2e-3", "max_steps": "3"}
TRAIN_TIMEOUT = 300_000  # ms: with JOBS_EAGER the Launch request trains the stage before it answers


@pytest.fixture(autouse=True)
def _runs_dir(settings, tmp_path):
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    settings.MEDIA_ROOT = tmp_path / "media"


def _login(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def _run_scorer(page, base, dataset, scorer="rules"):
    """Dataset page -> "Run scorer" (the eager job scores before the redirect to its job page)."""
    from medstudio.handoffs.models import ScorerRun

    page.goto(f"{base}/datasets/{dataset.pk}/")
    form = page.locator("form", has=page.locator("select[name=scorer]"))
    form.locator("select[name=scorer]").select_option(scorer)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    run = ScorerRun.objects.filter(dataset=dataset, scorer=scorer).order_by("-id").first()
    assert run is not None and run.status == "succeeded", run and run.status


def _freeze_selection(page, recipe):
    """On an open studio: drop what the rules filter drops, save the recipe, apply it; returns the Selection."""
    from medstudio.handoffs.models import Selection

    page.wait_for_selector("#kept-records")
    page.check("input[name='flag.rules']")
    page.wait_for_selector("#results .badge:has-text('filter rules')")
    page.fill("input[name=recipe_name]", recipe)
    page.click("text=Save version")
    page.wait_for_selector("#saved-link")
    assert f"{recipe} v1" in page.locator("#saved-link").inner_text()
    page.click("text=Apply (freeze a selection)")
    page.wait_for_url(re.compile(r"/studio/selections/\d+/$"))
    assert page.locator("#sel-status").inner_text() == "ready"
    sel = Selection.objects.get(recipe_version__recipe__name=recipe)
    assert sel.n_records > 0 and page.locator("#sel-records").inner_text() == f"{sel.n_records:,}"
    return sel


def _board_next(page, base, step):
    """Open the pipeline board and click the "next step" button of `step`."""
    page.goto(f"{base}/pipeline/")
    btn = page.locator(f"li[data-step='{step}'] a.next-step")
    assert btn.count() == 1, page.locator(f"li[data-step='{step}']").inner_text()
    btn.click()


def _launch(page, **fields):
    """Fill the New-run form's spec fields, Launch, and wait for the run page: the run succeeded."""
    from training.models import TrainingRun

    page.wait_for_selector("#run-form")
    for name, value in {**TINY, **fields}.items():
        page.fill(f"#run-form input[name={name}]", value)
    # The POST answers only once the eager job has trained: wait for that navigation, not the click's.
    with page.expect_navigation(timeout=TRAIN_TIMEOUT):
        page.click("#launch", no_wait_after=True)
    page.wait_for_selector("#run-status, #run-form .error")
    assert page.locator("#run-form .error").count() == 0, page.locator("#run-form").inner_text()
    m = re.search(r"/training/runs/(\d+)/$", page.url)
    assert m, page.url
    run = TrainingRun.objects.get(pk=int(m.group(1)))
    assert page.locator("#run-status").inner_text() == "succeeded", (run.error, run.log_tail)
    page.screenshot(path=str(SHOTS / f"run_{run.stage}.png"))
    final = run.checkpoints.get(is_final=True)
    assert final.model_ref_id
    return run, final.model_ref


def _no_horizontal_overflow(page):
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
        page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_admin_clicks_the_chain_through_the_board(live_server, page, django_user_model, make_dataset,
                                                  tiny_llama_path):  # noqa: F811
    from medstudio.handoffs.models import Mixture, PreferenceSet
    from training import services
    from training.models import TrainingRun

    base_url = live_server.url
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.set_default_timeout(60_000)  # scoring, freezing, mixing and pair building run eagerly inside their POSTs

    # Setup (not part of the chain): an admin, the imported datasets, the registered base model.
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    med, gen = _documents()
    med_ds = make_dataset("med-docs", "document", med)
    gen_ds = make_dataset("general-docs", "document", gen)
    qa = [{"id": r["id"], "question": r["question"][:80], "answer": r["answer"][:80]} for r in _rows("zh_med_qa_toyhom.jsonl", 40)]
    qa += [{"id": r["id"], "lang": "en", "question": r["question"][:200], "answer": r["explanation"][:200]}
           for r in _rows("pubmedqa.jsonl", 130)[80:] if r.get("explanation")]
    qa_ds = make_dataset("qa", "qa", qa)
    exam_ds = make_dataset("exam", "mcq", _rows("cmmlu_med.jsonl", 24))
    base = services.model_ref_create(actor=None, name="tiny-llama", path=tiny_llama_path)

    _login(page, base_url, "boss", "pw-boss-123")

    # 1. Score the medical documents; the board's next step opens the studio on them.
    _run_scorer(page, base_url, med_ds)
    _board_next(page, base_url, "score")
    page.wait_for_url(re.compile(rf"/studio/open/\?ds={med_ds.pk}$"))
    med_sel = _freeze_selection(page, "clean-medical")

    # 2. The general documents and the QA set: scored, then opened from the studio's home page.
    def from_studio_home(ds, recipe):
        _run_scorer(page, base_url, ds)
        page.goto(f"{base_url}/studio/")
        page.check(f"input[name=ds][value='{ds.pk}']")
        page.click("text=Open studio")
        page.wait_for_url(re.compile(rf"/studio/open/\?ds={ds.pk}$"))
        return _freeze_selection(page, recipe)

    gen_sel = from_studio_home(gen_ds, "clean-general")
    qa_sel = from_studio_home(qa_ds, "clean-qa")

    # 3. Stable mixture from the board: follow the medical recipe, whose selection's next step
    #    opens the mixture form with that selection tagged "medical".
    page.goto(f"{base_url}/pipeline/")
    page.select_option("select[name=recipe]", label="clean-medical")
    page.wait_for_selector(f"li[data-step='select'] a.next-step[href*='cat.{med_sel.pk}=medical']")
    page.click("li[data-step='select'] a.next-step")
    page.wait_for_url(re.compile(r"/studio/mixtures/new/"))
    assert page.locator("select[name=stage]").input_value() == "stable"
    assert page.locator(f"input[name='cat.{med_sel.pk}']").input_value() == "medical"
    page.fill("input[name=name]", "stable-mix")
    page.fill("input[name=budget]", "6000")
    page.fill("input[name=shard_tokens]", "2000")
    page.fill(f"input[name='cat.{gen_sel.pk}']", "general")
    page.click("button[name=action][value=build]")
    page.wait_for_url(re.compile(r"/studio/mixtures/\d+/$"))
    stable_mix = Mixture.objects.get(name="stable-mix")
    assert stable_mix.status == "succeeded" and stable_mix.stage == "stable"

    # 4. Boost mixture through the same form (the board has one Mix step: the Stable mixture).
    page.goto(f"{base_url}/studio/mixtures/new/")
    page.select_option("select[name=stage]", "boost")
    page.fill("input[name=name]", "boost-mix")
    page.fill("input[name=budget]", "4000")
    page.fill(f"input[name='cat.{med_sel.pk}']", "medical")
    page.fill(f"input[name='cat.{qa_sel.pk}']", "sft")
    page.click("button[name=action][value=build]")
    page.wait_for_url(re.compile(r"/studio/mixtures/\d+/$"))
    boost_mix = Mixture.objects.get(name="boost-mix")
    assert boost_mix.status == "succeeded" and boost_mix.stage == "boost"

    # 5. CPT-stable: the Mix step's next step arrives with the Stable mixture chosen.
    _board_next(page, base_url, "mix")
    page.wait_for_selector("#run-form")
    assert page.locator("#id_stage").input_value() == "cpt-stable"
    assert page.locator("#id_data").input_value() == f"mixture:{stable_mix.pk}"
    page.select_option("#id_base_model", str(base.pk))
    stable_run, stable = _launch(page)
    assert stable_run.stage == "cpt-stable" and stable_run.data_ref["type"] == "mixture"

    # 6. CPT-boost from the Stable model, on the Boost mixture.
    _board_next(page, base_url, "cpt-stable")
    page.wait_for_selector("#run-form")
    assert page.locator("#id_stage").input_value() == "cpt-boost"
    assert page.locator("#id_base_model").input_value() == str(stable.pk)
    if page.locator("#id_data").input_value() != f"mixture:{boost_mix.pk}":
        page.select_option("#id_data", f"mixture:{boost_mix.pk}")
    boost_run, boost = _launch(page)
    assert boost_run.data_ref["id"] == boost_mix.pk

    # 7. SFT from the Boost model on the QA selection.
    _board_next(page, base_url, "cpt-boost")
    page.wait_for_selector("#run-form")
    assert page.locator("#id_stage").input_value() == "sft"
    assert page.locator("#id_base_model").input_value() == str(boost.pk)
    assert page.locator("#id_data").input_value() == f"selection:{qa_sel.pk}"
    sft_run, sft = _launch(page)
    assert sft_run.data_ref["n_records"] > 0

    # 8. Objective preference pairs from the MCQ exam: the SFT step's next step opens the preferences page.
    _board_next(page, base_url, "sft")
    page.wait_for_url(re.compile(r"/preferences/$"))
    page.fill("input[name=name]", "exam-pairs")
    page.click("button:has-text('Create')")
    page.wait_for_url(re.compile(r"/preferences/\d+/$"))
    select_and_settle(page, "select[name=builder]", "objective")
    page.select_option("select[name=dataset]", str(exam_ds.pk))
    page.click("button:has-text('Start builder')")
    page.wait_for_url(re.compile(r"/preferences/runs/\d+/$"))
    pairs = PreferenceSet.objects.get(name="exam-pairs")
    assert pairs.pairs.count() > 0

    # 9. DPO from the SFT model with online merging against the Boost model, on the pairs.
    _board_next(page, base_url, "pairs")
    page.wait_for_selector("#run-form")
    assert page.locator("#id_stage").input_value() == "dpo"
    assert page.locator("#id_base_model").input_value() == str(sft.pk)
    assert page.locator("#id_merge_base").input_value() == str(boost.pk)
    assert page.locator("#id_data").input_value() == f"preference_set:{pairs.pk}"
    page.check("#id_merging_enabled")
    dpo_run, dpo = _launch(page, max_length="160", merging_p="0.5", merging_alpha="0.001")
    assert dpo_run.merge_base_id == boost.pk and dpo_run.data_ref["by_origin"] == {"objective": dpo_run.data_ref["n_records"]}
    assert [m.stage for m in dpo.lineage()] == ["dpo", "sft", "cpt-boost", "cpt-stable", ""]
    assert TrainingRun.objects.filter(status="succeeded").count() == 4

    # 10. The DPO model's page (from its run's final checkpoint): the lineage graph reaches the sources.
    page.click(f"#checkpoints a[href$='/training/models/{dpo.pk}/']")
    page.wait_for_url(re.compile(rf"/training/models/{dpo.pk}/$"))
    page.wait_for_selector("svg#lineage-graph a.lineage-node")
    nodes = page.locator("svg#lineage-graph a.lineage-node")
    types = [nodes.nth(i).get_attribute("data-node-type") for i in range(nodes.count())]
    for t in ("model", "run", "dataset", "selection", "mixture", "preference_set", "recipe_version", "scorer_run"):
        assert t in types, (t, types)
    assert types.count("run") == 4, types
    for i in range(nodes.count()):
        href = nodes.nth(i).get_attribute("href")
        assert href, (types[i], nodes.nth(i).get_attribute("data-node-id"))
        r = page.request.get(href if href.startswith("http") else base_url + href)
        assert r.status == 200, (href, r.status)
    _no_horizontal_overflow(page)
    page.screenshot(path=str(SHOTS / "model_page.png"))
    # The graph is wider than the page: it scrolls inside its own box. Its right end, as a reader
    # scrolls there, and the whole drawing in a viewport wide enough to hold it.
    page.locator(".lineage-graph").evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    page.locator(".lineage-graph").screenshot(path=str(SHOTS / "lineage_graph_right.png"))
    svg = page.locator("svg#lineage-graph").evaluate("el => el.outerHTML")
    whole = page.context.new_page()
    whole.set_viewport_size({"width": int(page.locator("svg#lineage-graph").get_attribute("width")) + 20, "height": 800})
    whole.set_content(f"<!doctype html><body style='margin:10px;font-family:sans-serif'>{svg}</body>")
    whole.screenshot(path=str(SHOTS / "lineage_graph.png"), full_page=True)
    whole.close()

    # 11. The board now shows an artefact at every stage up to DPO; DPO's next step is Evaluate.
    page.goto(f"{base_url}/pipeline/")
    for step in ("score", "select", "mix", "cpt-stable", "cpt-boost", "sft", "pairs", "dpo"):
        assert page.locator(f"li[data-step='{step}'] .artefact a").count() == 1, step
    assert f"model_ref={dpo.pk}" in page.locator("li[data-step='dpo'] a.next-step").get_attribute("href")
    assert page.locator("li[data-step='evaluate'] a.start-step").count() == 1
    _no_horizontal_overflow(page)
    page.screenshot(path=str(SHOTS / "board.png"))
    page.screenshot(path=str(SHOTS / "board_full.png"), full_page=True)
