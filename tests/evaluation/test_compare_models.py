"""Model comparison page (issue 15 point 4): per-subject accuracy with spread over seeds, per-turn
judge scores, win/tie/loss (judge and ROUGE-L), CSV export; roles; fits a 1,280 px window.

The runs are stored directly (no generation): items are real CMMLU questions and CMtMedQA
consultations from /work/shared/data with scripted grades."""
import csv
import io
import json
import os

import pytest
from django.urls import reverse

from training.evaluation.models import EvalItem, EvalRun
from training.pipeline import evaluation as ev

pytestmark = pytest.mark.django_db
ASPECTS = ev.ASPECTS


def _rows(shared_data, name, n, pred=lambda r: True):
    out = []
    for line in open(shared_data / name, encoding="utf-8"):
        r = json.loads(line)
        if pred(r):
            out.append(r)
        if len(out) >= n:
            break
    return out


def _mcq_run(ds, model, per_subject_runs):
    summary = {"n_runs": 3, "overall": {"mean": 0.5, "std": 0.1, "runs": [0.4, 0.5, 0.6]}, "invalid_rate": {"mean": 0.0},
               "per_subject": {s: {"mean": sum(v) / len(v), "std": 0.0, "min": min(v), "max": max(v), "runs": v}
                               for s, v in per_subject_runs.items()}}
    return EvalRun.objects.create(kind="mcq", dataset=ds, model_name=model, model_spec={"backend": "openai"},
                                  status="succeeded", summary=summary)


def _consult_run(ds, model, score_of, rouge_of):
    records = list(ds.records.order_by("id"))
    run = EvalRun.objects.create(kind="consultation", dataset=ds, model_name=model, model_spec={"backend": "openai"},
                                 status="running")
    rows = []
    for i, rec in enumerate(records):
        for turn in (1, 2):
            s = score_of(i, turn)
            EvalItem.objects.create(run=run, record=rec, turn=turn, prompt=[], output="回复", judge_scores={a: s for a in ASPECTS},
                                    rouge_l=rouge_of(i, turn))
            rows.append((turn, {a: s for a in ASPECTS}))
    run.summary = {"n_items": len(rows), "judged": len(rows), "per_turn": ev.per_turn_table(rows)}
    run.status = "succeeded"
    run.save()
    return run


@pytest.fixture
def runs(make_dataset, shared_data):
    mcq = make_dataset("cmmlu-cmp", "mcq", _rows(shared_data, "cmmlu_med.jsonl", 6, lambda r: r["split"] == "test"))
    dia = make_dataset("cmtmedqa-cmp", "dialogue", _rows(shared_data, "cmtmedqa_multiturn.jsonl", 4,
                                                         lambda r: r.get("subset") != "safety"))
    _mcq_run(mcq, "base", {"anatomy": [0.4, 0.5, 0.6], "virology": [0.3, 0.3, 0.3]})
    _mcq_run(mcq, "sft", {"anatomy": [0.7, 0.8, 0.9], "virology": [0.5, 0.6, 0.4]})
    _consult_run(dia, "base", lambda i, t: 3, lambda i, t: 0.3)
    # sft: better on items 0-1, equal on 2, worse on 3 (judge); ROUGE-L higher everywhere
    _consult_run(dia, "sft", lambda i, t: {0: 5, 1: 4, 2: 3, 3: 1}[i], lambda i, t: 0.5)
    return mcq, dia


def test_compare_models_charts_and_csv(runs, client_for):
    mcq, dia = runs
    url = reverse("evaluation:models_compare")
    c = client_for("curator")
    q = {"m": ["base", "sft"], "mcq": mcq.pk, "consult": dia.pk}
    r = c.get(url, q)
    assert r.status_code == 200
    ctx = r.context
    acc = ctx["acc_option"]
    bars = [s for s in acc["series"] if s["type"] == "bar"]
    whiskers = [s for s in acc["series"] if s["type"] == "boxplot"]
    assert [s["name"] for s in bars] == ["base", "sft"] and acc["xAxis"]["data"] == ["anatomy", "virology"]
    assert bars[1]["data"] == [pytest.approx(0.8), pytest.approx(0.5)]
    assert whiskers[1]["data"][0][0] == pytest.approx(0.7) and whiskers[1]["data"][0][4] == pytest.approx(0.9)
    lines = ctx["turns_option"]["series"]
    assert [s["type"] for s in lines] == ["line", "line"] and ctx["turns_option"]["xAxis"]["data"] == ["1", "2"]
    assert lines[0]["data"] == [3.0, 3.0] and lines[1]["data"] == [3.25, 3.25]
    wtl = {s["name"]: s["data"] for s in ctx["wtl_option"]["series"]}
    # rows: judge, ROUGE-L (8 shared items = 4 dialogues x 2 turns)
    assert wtl["win"] == [4, 8] and wtl["tie"] == [2, None] and wtl["loss"] == [2, None]  # 0 drawn as nothing
    assert b'data-chart=' in r.content and b"<svg" not in r.content

    r = c.get(url, {**q, "format": "csv"})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.content.decode())))
    assert table[0][:4] == ["section", "model", "other", "key"]
    assert ["mcq_accuracy", "sft", "", "anatomy"] == table[[row[:4] for row in table].index(["mcq_accuracy", "sft", "", "anatomy"])][:4]
    assert any(row[0] == "win_tie_loss_judge" and row[3] == "win" and row[4] == "4" for row in table)
    assert any(row[0] == "consultation_turn" for row in table)


def test_compare_models_needs_two_and_role(runs, client_for):
    url = reverse("evaluation:models_compare")
    r = client_for("curator").get(url, {"m": ["base"], "mcq": "x", "consult": "999"})
    assert r.status_code == 200 and r.context["data"] is None
    assert client_for("clinician").get(url).status_code in (302, 403)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_compare_models_page_in_browser(live_server, page, runs, django_user_model, tmp_path):
    django_user_model.objects.create_user(username="cur", password="pw-cur-12345", role="curator")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "cur")
    page.fill("#id_password", "pw-cur-12345")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/evaluation/")
    page.click("#compare-models")
    page.check("input[name=m][value=base]")
    page.check("input[name=m][value=sft]")
    page.click("#pick-models button[type=submit]")
    for card in ("#chart-accuracy", "#chart-turns", "#chart-wtl"):
        page.wait_for_selector(f"{card} .chart canvas")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    with page.expect_download() as dl:
        page.click("#csv-export")
    assert "mcq_accuracy" in open(dl.value.path(), encoding="utf-8").read()
    shot = os.environ.get("MEDSTUDIO_SCREENSHOT_DIR") or str(tmp_path)
    page.screenshot(path=os.path.join(shot, "compare_models.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_evaluation_home_with_harness_card_fits(live_server, page, django_user_model, settings, tmp_path):
    django_user_model.objects.create_user(username="boss2", password="pw-boss-123", role="admin")
    settings.MEDSTUDIO_EVAL_DATASETS_DIR = str(tmp_path / "none")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "boss2")
    page.fill("#id_password", "pw-boss-123")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/evaluation/")
    page.click("#harness summary")
    assert page.locator("#harness-tasks tbody tr").count() >= 20
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot = os.environ.get("MEDSTUDIO_SCREENSHOT_DIR") or str(tmp_path)
    page.screenshot(path=os.path.join(shot, "evaluation_home_harness.png"), full_page=True)
