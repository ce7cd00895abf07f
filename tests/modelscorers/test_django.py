"""Model scorers through the app: training jobs, versions, scoring runs, pages, commands."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.urls import reverse

from medstudio.handoffs.models import Score, ScorerRun
from curation.modelscorers import services
from curation.modelscorers.models import TrainedModel
from curation.modelscorers.scorers import LazyBlock
from curation.pipeline.base import RecordView, ScoreResult
from curation.scoring import scorer_run_start
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

pytestmark = pytest.mark.django_db


def _jsonl(path, n, skip=0):
    out = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= skip:
                out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def _documents(shared_data, n, skip=0):
    """Medical documents (Huatuo answers) and general ones (Chinese Wikipedia), with their source domain."""
    med = [{"id": f"m{r['id']}", "text": r["answer"], "domain": "medical"}
           for r in _jsonl(shared_data / "huatuo26m_test_qa.jsonl", n, skip)]
    gen = [{"id": f"g{r['id']}", "text": r["text"], "domain": "general"}
           for r in _jsonl(shared_data / "general_zh.jsonl", n, skip)]
    return med + gen


def _twice_rated(rows):
    """Two raters: medical ~4, general ~1; every 10th item has raters 3 points apart (dropped by consensus)."""
    out = []
    for i, r in enumerate(rows):
        base = 4 if r["domain"] == "medical" else 1
        second = base + (i % 2) * 0.5
        if i % 10 == 0:
            second = base + 3 if base < 3 else base - 3
        out.append(dict(r, rating_1=base, rating_2=second))
    return out


def test_datarater_trained_on_twice_rated_records_scores_held_out_dataset(make_dataset, shared_data, curator):
    labelled = make_dataset("rated", "document", _twice_rated(_documents(shared_data, 60)))
    held_out = make_dataset("held_out", "document", _documents(shared_data, 15, skip=200))
    model = services.trained_model_create(user=curator, kind="datarater", encoder="hashed",
                                          source={"dataset_id": labelled.pk, "fields": ["rating_1", "rating_2"]})
    assert model.status == "ready", model.error
    assert model.version == 1 and model.n_labelled == 120
    assert model.n_agreed == 120 - 12  # the 12 items rated 3 points apart are dropped
    assert model.n_train + model.n_val == model.n_agreed and model.n_val > 0
    assert model.metrics["mse"] >= 0 and model.metrics["spearman"] is not None
    run = services.model_score_start(user=curator, model=model, dataset=held_out)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.model_ref == "datarater:v1"
    assert run.params["model_version"] == 1
    scores = {s.record.external_id: s.value for s in Score.objects.filter(run=run).select_related("record")}
    assert len(scores) == 30 and all(0.0 <= v <= 5.0 for v in scores.values())
    med = [v for k, v in scores.items() if k.startswith("m")]
    gen = [v for k, v in scores.items() if k.startswith("g")]
    assert sum(med) / len(med) > sum(gen) / len(gen) + 1.0
    # a second training makes version 2; "latest" picks it, an explicit version stays reachable
    again = services.trained_model_create(user=curator, kind="datarater",
                                          source={"dataset_id": labelled.pk, "fields": ["rating_1", "rating_2"]}, seed=1)
    assert again.version == 2
    run1 = scorer_run_start(user=curator, dataset=held_out, scorer="datarater", params={"model_version": 1})
    run_latest = scorer_run_start(user=curator, dataset=held_out, scorer="datarater", params={})
    assert run1.params["model_version"] == 1 and run_latest.params["model_version"] == 2
    assert run_latest.version.endswith("m2")


def test_domain_classifier_from_label_column_via_score_command(make_dataset, shared_data, curator, capsys):
    labelled = make_dataset("dom_train", "document", _documents(shared_data, 60))
    make_dataset("dom_new", "document", _documents(shared_data, 10, skip=300))
    call_command("train_rater", kind="domain", dataset="dom_train", fields="domain")
    model = TrainedModel.objects.get(kind="domain")
    assert model.status == "ready" and model.classes == ["general", "medical"]
    assert model.metrics["accuracy"] > 0.8 and len(model.metrics["confusion_matrix"]) == 2
    call_command("score", dataset="dom_new", scorer="domain")
    run = ScorerRun.objects.get(scorer="domain")
    kept = Score.objects.filter(run=run, keep=True).select_related("record")
    assert run.status == "succeeded" and Score.objects.filter(run=run).count() == 20
    assert sum(s.record.external_id.startswith("m") for s in kept) >= 8
    dropped = Score.objects.filter(run=run, keep=False)
    assert all(s.reason == "domain:general" for s in dropped)
    assert labelled.pk != run.dataset_id


def test_training_with_bad_source_is_a_clear_error(make_dataset, curator):
    ds = make_dataset("few", "document", [{"id": str(i), "text": f"文本{i}", "r": 3} for i in range(3)])
    with pytest.raises(ValueError, match="label column"):
        services.trained_model_create(user=curator, kind="datarater", source={"dataset_id": ds.pk, "fields": []})
    model = services.trained_model_create(user=curator, kind="datarater", source={"dataset_id": ds.pk, "fields": ["r"]})
    assert model.status == "failed" and "at least 4" in model.error
    assert model.job.status == "failed"


def test_confilter_and_deita_runs_with_a_local_model(make_dataset, shared_data, curator, tiny_llama_path):
    rows = [r for r in _jsonl(shared_data / "cmtmedqa_multiturn.jsonl", 40)
            if sum(t["role"] == "assistant" for t in r["turns"]) >= 2][:4]
    ds = make_dataset("dialogues", "dialogue", rows)
    call_command("score", dataset="dialogues", scorer="confilter",
                 param=[f"model={tiny_llama_path}", "max_length=1024", "backend=transformers"])
    run = ScorerRun.objects.get(scorer="confilter", dataset=ds)
    assert run.params["model"] == tiny_llama_path and run.params["max_length"] == 1024
    assert run.status == "succeeded"
    scores = list(Score.objects.filter(run=run))
    assert len(scores) == 4 and all(s.value is not None and s.value > 0 for s in scores)
    assert all(s.detail["turns"][s.detail["truncated_turns"]]["cf"] == 1.0 for s in scores)
    deita = scorer_run_start(user=curator, dataset=ds, scorer="deita",
                             params={"complexity_model": tiny_llama_path, "quality_model": tiny_llama_path,
                                     "backend": "transformers"})
    deita.refresh_from_db()
    values = [s.value for s in Score.objects.filter(run=deita)]
    assert deita.status == "succeeded" and len(values) == 4 and all(1.0 <= v <= 36.0 for v in values)


def test_missing_model_names_the_setting_and_starts_nothing(make_dataset, client_for, settings, tmp_path):
    settings.MEDSTUDIO_SCORING_LM = str(tmp_path / "no-such-model")
    ds = make_dataset("d1", "dialogue", [{"id": "1", "turns": [{"role": "user", "content": "a"},
                                                                {"role": "assistant", "content": "b"}]}])
    resp = client_for("curator").post(reverse("curation:run_start", args=[ds.pk]), {"scorer": "confilter", "params": "{}"},
                                      follow=True)
    assert "MEDSTUDIO_SCORING_LM" in resp.content.decode()
    assert not ScorerRun.objects.filter(scorer="confilter").exists()


def test_failed_record_is_marked_and_the_rest_scored():
    class Flaky:
        def score_batch(self, records):
            if any(r.text == "boom" for r in records):
                raise RuntimeError("model call failed")
            return [ScoreResult(value=1.0) for _ in records]

    block = LazyBlock("x", "1", Flaky)
    recs = [RecordView(id=i, kind="document", lang="en", text=t) for i, t in enumerate(["a", "boom", "c"])]
    out = block.score_batch(recs)
    assert [r.value for r in out] == [1.0, None, 1.0]
    assert out[1].reason == "error: RuntimeError" and "model call failed" in out[1].detail["error"]


def test_pages_train_and_score_through_http(make_dataset, shared_data, client_for):
    labelled = make_dataset("web_train", "document", _documents(shared_data, 30))
    target = make_dataset("web_target", "document", _documents(shared_data, 5, skip=400))
    assert client_for("clinician").get(reverse("modelscorers:index")).status_code == 403
    c = client_for("curator")
    page = c.get(reverse("modelscorers:index")).content.decode()
    assert "MEDSTUDIO_SCORING_LM" in page and "Train a new version" in page
    resp = c.post(reverse("modelscorers:train"), {"kind": "domain", "encoder": "hashed", "dataset": labelled.pk,
                                                   "fields": "domain", "val_fraction": "0.2"})
    model = TrainedModel.objects.get(kind="domain")
    assert resp.status_code == 302 and model.status == "ready"
    detail = c.get(reverse("modelscorers:detail", args=[model.pk])).content.decode()
    assert 'id="confusion"' in detail and "Accuracy" in detail
    resp = c.post(reverse("modelscorers:score", args=[model.pk]), {"dataset": target.pk, "target_label": "medical"})
    assert resp.status_code == 302
    run = ScorerRun.objects.get(scorer="domain", dataset=target)
    assert run.status == "succeeded" and run.scores.count() == 10
    bad = c.post(reverse("modelscorers:train"), {"kind": "domain", "encoder": "hashed"}, follow=True)
    assert "Cannot train" in bad.content.decode()


def test_web_process_imports_no_heavy_library():
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'medstudio.settings'); import django; "
        "django.setup(); import curation.modelscorers.views, curation.modelscorers.handlers, medstudio.urls; "
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'vllm', 'sklearn') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_domain_classifier_trained_from_two_clinicians_labels(make_dataset, shared_data, curator, django_user_model):
    """Labels from the annotation engine: items the two clinicians label differently are dropped."""
    from medstudio.annotation import services as ann

    rows = _documents(shared_data, 12)
    ds = make_dataset("to_label", "document", rows)
    question = ann.question_create(user=curator, name="domain", kind="label")
    queue = ann.queue_create(user=curator, name="domain queue", dataset=ds, question=question, annotators_per_item=2)
    truth = {r["id"]: r["domain"] for r in rows}
    for n, name in enumerate(["doc_a", "doc_b"]):
        clinician = django_user_model.objects.create_user(username=name, password="pw", role="clinician")
        while (a := ann.assignment_next(queue=queue, user=clinician)) is not None:
            label = truth[a.item.record.external_id]
            # the second clinician disagrees on the first three medical documents
            if n == 1 and label == "medical" and a.item.record.external_id in {r["id"] for r in rows[:3]}:
                label = "other"
            ann.label_submit(assignment_id=a.pk, user=clinician, answer={"label": label}, revision=a.revision)
    model = services.trained_model_create(user=curator, kind="domain", source={"queue_id": queue.pk},
                                          val_fraction=0.25)
    assert model.status == "ready", model.error
    assert model.n_labelled == 24 and model.n_agreed == 21
    assert model.classes == ["general", "medical"]
    with pytest.raises(ValueError, match="trains on 'rating' questions"):
        services.trained_model_create(user=curator, kind="datarater", source={"queue_id": queue.pk})
