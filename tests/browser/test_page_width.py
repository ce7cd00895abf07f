"""Every list and detail page fits a 1,280 px window without sideways scrolling, and its charts draw
(issue 18, point 3), in headless Chromium, as an admin, over a small demo: datasets (one record with
a very long id), a rules and a rater scorer run, a recipe, a selection and a mixture, a training run
with a tqdm log and a second run to compare, a rating queue labelled by two clinicians, a
preference set with a vote.

Screenshots go to $MEDSTUDIO_SCREENSHOTS (default: the test's tmp dir) as <page>.png.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import Client

from tests.annotation.helpers import rating_queue, shared_rows
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.studio.conftest import test_scorers  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH = 1280
LONG_ID = "case-" + "0123456789abcdef" * 8  # 133 characters, no space to break at
TQDM = ("loading weights\n\x1b[32mINFO\x1b[0m start\n"
        "  0%|          | 0/10 [00:00<?, ?it/s]\r 50%|#####     | 5/10\r100%|##########| 10/10 [00:02<00:00]\n"
        "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")


def _demo(django_user_model, make_dataset, tmp_path, settings, tiny_llama_path):  # noqa: F811
    """The demo objects; returns {page name: path}."""
    from curation.scoring import scorer_run_start
    from curation.studio.services import matrix_sync
    from medstudio.annotation import services as ann
    from medstudio.handoffs.models import Mixture, RecipeVersion, Selection
    from medstudio.jobs.models import Job
    from preferences import services as prefs
    from preferences.models import PreferencePair, VoteRun
    from training import services as train
    from training.models import TrainingRun
    from training.pipeline.specs import default_spec

    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    settings.MEDSTUDIO_PREF_DIR = tmp_path / "prefs"
    admin = django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    docs_a = django_user_model.objects.create_user(username="dr_a", password="pw", role="clinician")
    docs_b = django_user_model.objects.create_user(username="dr_b", password="pw", role="clinician")
    c = Client()
    c.force_login(admin)

    rows = shared_rows("general_zh.jsonl", 30) + shared_rows("general_en.jsonl", 30)
    rows[0] = {**rows[0], "id": LONG_ID, "source": "/very/long/path/" + "segment/" * 14 + "file.jsonl"}
    docs = make_dataset("general-docs", "document", rows, user=admin)
    rules = scorer_run_start(user=admin, dataset=docs, scorer="rules")
    rater = scorer_run_start(user=admin, dataset=docs, scorer="t_rater")
    scorer_run_start(user=admin, dataset=docs, scorer="t_rules")
    matrix_sync(dataset=docs, actor=admin)
    c.post("/studio/recipes/save/", {"ds": str(docs.pk), "recipe_name": "clean-docs", "min.t_rater": "1.0",
                                     "flag.t_rules": "on"}, HTTP_HX_REQUEST="true")
    version = RecipeVersion.objects.get(recipe__name="clean-docs")
    c.post(f"/studio/versions/{version.pk}/apply/", {"name": "docs-clean"})
    sel = Selection.objects.get(name="docs-clean")
    c.post("/studio/mixtures/new/", {"name": "demo-mix", "stage": "stable", "budget": "20000", "shard_tokens": "10000",
                                      "categories": "general=1", "langs": "zh=1,en=1", "strategy": "independent",
                                      f"cat.{sel.pk}": "general", "action": "build"})
    mix = Mixture.objects.get(name="demo-mix")

    base = train.model_ref_create(actor=admin, name="tiny-base", path=tiny_llama_path)
    run_ids = []
    for losses in ((3.2, 2.6, 2.1, 1.9, 1.8), (3.4, 2.9, 2.5)):
        run = train.training_run_start(actor=admin, spec=default_spec("cpt-stable", base.path, max_steps=10), base_model=base,
                                       data_ref={"type": "dataset", "id": docs.pk}, enqueue=False)
        train.run_events_record(run=run, rows=[{"event": "log", "step": i + 1, "max_steps": 10,
                                                "metrics": {"loss": v, "learning_rate": 1e-5 * (i + 1), "grad_norm": 1.0 / (i + 1),
                                                            "tokens_per_second": 900.0 + 10 * i}} for i, v in enumerate(losses)])
        run_ids.append(run.pk)
    train.training_run_finish(run=TrainingRun.objects.get(pk=run_ids[0]), status="failed",
                              error="exited with code 1", log_tail=TQDM)

    queue = rating_queue(make_dataset, admin, n_docs=8, per_item=2, name="rate", assignees=[docs_a, docs_b])
    for u, shift in ((docs_a, 0), (docs_b, 1)):
        i = 0
        while (a := ann.assignment_next(queue=queue, user=u)) is not None:
            ann.label_submit(assignment_id=a.pk, user=u, answer={"score": min(5, (i % 5) + shift * (i % 2))},
                             revision=a.revision, duration_ms=800)
            i += 1

    compare = scorer_run_start(user=admin, dataset=queue.dataset, scorer="t_rater")  # a scorer beside the clinicians
    open_queue = rating_queue(make_dataset, admin, n_docs=2, per_item=1, name="open")  # an item still to label

    mcq = make_dataset("cmmlu", "mcq", shared_rows("cmmlu_med.jsonl", 40), user=admin)
    pset = prefs.preference_set_create(user=admin, name="exam-pairs")
    prefs.build_start(user=admin, pref_set=pset, builder="objective", dataset=mcq, params={"seed": 1})
    vote = VoteRun.objects.create(pref_set=pset, method="judges", status="done", created_by=admin)
    for i, p in enumerate(PreferencePair.objects.filter(pref_set=pset).order_by("id")):
        p.vote, p.vote_detail = vote, {"chosen": [(i * 7) % 5 + 1.0], "rejected": [(i * 3) % 4 + 0.5]}
        p.save(update_fields=["vote", "vote_detail"])
    prefs.vote_apply(user=admin, vote=vote)

    job = Job.objects.order_by("pk").first()
    record = docs.records.get(external_id=LONG_ID)
    return {
        "home": "/", "datasets": "/datasets/", "dataset": f"/datasets/{docs.pk}/", "records": f"/datasets/{docs.pk}/records/",
        "record": f"/datasets/records/{record.pk}/", "import": "/datasets/import/",
        "jobs": "/jobs/", "job": f"/jobs/{job.pk}/", "audit": "/audit/", "users": "/accounts/users/",
        "profile": "/accounts/profile/", "backends": "/backends/", "pipeline": "/pipeline/",
        "scorer-run-rules": f"/curation/runs/{rules.pk}/", "scorer-run-rater": f"/curation/runs/{rater.pk}/",
        "studio-home": "/studio/", "studio": f"/studio/open/?ds={docs.pk}&split=lang",
        "recipe": f"/studio/recipes/{version.recipe_id}/", "selection": f"/studio/selections/{sel.pk}/",
        "mixture": f"/studio/mixtures/{mix.pk}/", "mixture-new": "/studio/mixtures/new/",
        "modelscorers": "/modelscorers/",
        "training-runs": "/training/", "training-run": f"/training/runs/{run_ids[0]}/?compare={run_ids[1]}",
        "training-new": "/training/new/", "models": "/training/models/", "model": f"/training/models/{base.pk}/",
        "annotate": "/annotate/", "queue": f"/annotate/queues/{queue.pk}/", "label": f"/annotate/q/{open_queue.pk}/",
        "agreement": f"/annotate/queues/{queue.pk}/agreement/?run={compare.pk}", "consensus": f"/annotate/queues/{queue.pk}/consensus/",
        "preferences": "/preferences/", "preference-set": f"/preferences/{pset.pk}/", "pairs": f"/preferences/{pset.pk}/pairs/",
        "evaluation": "/evaluation/",
        # the launch forms (each swaps only its mode's fields)
        "evaluation-new": "/evaluation/new/", "scorer-new": f"/curation/datasets/{docs.pk}/run/",
        "queue-new": "/annotate/queues/new/", "diversify": "/preferences/diversify/",
        "build": f"/preferences/{pset.pk}/build/", "vote": f"/preferences/{pset.pk}/vote/",
    }


# Pages that must show charts, and how many at least.
CHARTS = {"training-run": 4, "scorer-run-rules": 1, "scorer-run-rater": 1, "studio": 1, "mixture": 1,
          "agreement": 2, "preference-set": 1}

WIDTHS = """() => {
  const doc = document.scrollingElement;
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
    .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && e.className.baseVal === undefined ? '.' + String(e.className).split(' ').join('.') : ''));
  return {scroll: doc.scrollWidth, inner: window.innerWidth, wide: wide};
}"""

CHARTS_READY = """() => [...document.querySelectorAll('[data-chart]')].every(el =>
  el.dataset.chartReady === '1' && el.querySelector('canvas') && el.querySelector('canvas').width > 0)"""


def test_every_page_fits_1280_and_draws_its_charts(live_server, page, django_user_model, make_dataset, tmp_path, settings,
                                                   test_scorers, tiny_llama_path):  # noqa: F811
    pages = _demo(django_user_model, make_dataset, tmp_path, settings, tiny_llama_path)
    shots = Path(os.environ.get("MEDSTUDIO_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    problems = []
    for name, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        if response.status != 200:
            problems.append(f"{name} {path}: HTTP {response.status}")
            continue
        n_charts = page.locator("[data-chart]").count()
        if n_charts < CHARTS.get(name, 0):
            problems.append(f"{name}: {n_charts} charts, expected at least {CHARTS[name]}")
        if n_charts:
            try:
                page.wait_for_function(CHARTS_READY, timeout=10000)
            except Exception:  # noqa: BLE001 - reported below with the page name
                problems.append(f"{name}: charts did not draw")
        page.wait_for_timeout(150)  # let a chart's resize settle before measuring
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        w = page.evaluate(WIDTHS)
        if w["scroll"] > WIDTH:
            problems.append(f"{name} {path}: scrollWidth {w['scroll']} > {WIDTH} (wide: {w['wide']})")
    assert not problems, "\n".join(problems)
