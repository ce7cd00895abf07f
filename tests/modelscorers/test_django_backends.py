"""Model scorers with the other backends: Deita through a chat judge, DataRater on an embedding encoder."""
from __future__ import annotations

import math

import pytest

from medstudio.handoffs.models import Score, ScorerRun
from curation.modelscorers import services
from curation.scoring import scorer_run_start
from tests.fakes.fixtures import tiny_encoder_path  # noqa: F401
from tests.fakes.openai_server import Status, fake_openai_server

pytestmark = pytest.mark.django_db

QA_ROWS = [
    {"id": "q1", "question": "高血压患者饮食要注意什么？", "answer": "低盐低脂，多吃蔬菜，戒烟限酒。"},
    {"id": "q2", "question": "FAIL 这个问题让判官出错", "answer": "随便"},
    {"id": "q3", "question": "感冒发烧吃什么药？", "answer": "可用对乙酰氨基酚退热，多喝水。"},
]


def test_deita_by_chat_judge_marks_failed_items_only(make_dataset, curator, settings):
    ds = make_dataset("qa_judge", "qa", QA_ROWS)

    def judge(req):
        text = req["messages"][0]["content"]
        if "FAIL" in text:
            return Status(500)
        digit = "5" if "complexity" in text else "4"
        return {"content": digit, "logprobs": {"content": [{"token": digit, "logprob": 0.0, "bytes": None,
                                                             "top_logprobs": [{"token": digit, "logprob": 0.0,
                                                                               "bytes": None}]}]}}

    settings.MEDSTUDIO_CHAT_URL = ""
    with pytest.raises(ValueError, match="MEDSTUDIO_CHAT_URL"):
        scorer_run_start(user=curator, dataset=ds, scorer="deita", params={"mode": "chat"})
    with fake_openai_server(chat=judge) as url:
        settings.MEDSTUDIO_CHAT_URL = str(url)
        run = scorer_run_start(user=curator, dataset=ds, scorer="deita", params={"mode": "chat", "max_retries": 1})
    run.refresh_from_db()
    assert run.status == "succeeded" and run.params["model"].startswith("chat:")
    by_id = {s.record.external_id: s for s in Score.objects.filter(run=run).select_related("record")}
    assert by_id["q1"].value == pytest.approx(20.0) and by_id["q3"].value == pytest.approx(20.0)
    assert by_id["q2"].value is None and "unscored" in by_id["q2"].reason
    assert "500" in by_id["q2"].detail["turns"][0]["error"]
    assert not math.isnan(by_id["q1"].detail["turns"][0]["c"])


def test_datarater_on_embedding_encoder(make_dataset, curator, tiny_encoder_path):
    rows = [{"id": f"d{i}", "text": ("头痛发热咳嗽，建议就医。" if i % 2 else "The city hosts a film festival.") * (1 + i % 3),
             "r1": 4 if i % 2 else 1, "r2": 4 if i % 2 else 2} for i in range(24)]
    ds = make_dataset("emb_rated", "document", rows)
    model = services.trained_model_create(user=curator, kind="datarater", encoder="embedding",
                                          encoder_model=tiny_encoder_path,
                                          source={"dataset_id": ds.pk, "fields": ["r1", "r2"]}, val_fraction=0.25)
    assert model.status == "ready", model.error
    assert model.job.queue == "gpu" and model.n_agreed == 24 and "mse" in model.metrics
    run = services.model_score_start(user=curator, model=model, dataset=ds)
    run.refresh_from_db()
    assert run.status == "succeeded"
    values = list(Score.objects.filter(run=run).values_list("value", flat=True))
    assert len(values) == 24 and all(0.0 <= v <= 5.0 for v in values)
    assert ScorerRun.objects.get(pk=run.pk).model_ref == "datarater:v1"


def test_deita_by_chat_judge_through_a_registered_backend(make_dataset, curator, settings, monkeypatch):
    from medstudio.backends.services import backend_save

    settings.MEDSTUDIO_CHAT_URL = ""
    monkeypatch.setenv("MEDSTUDIO_TEST_KEY", "sk-deita")
    ds = make_dataset("qa_reg", "qa", [QA_ROWS[0]])
    digit = {"content": "3", "logprobs": {"content": [{"token": "3", "logprob": 0.0, "bytes": None,
                                                      "top_logprobs": [{"token": "3", "logprob": 0.0, "bytes": None}]}]}}
    with fake_openai_server(chat=[digit]) as url:
        backend_save(actor=None, name="deita-judge", base_url=str(url), model="judge-x", api_key_env="MEDSTUDIO_TEST_KEY")
        run = scorer_run_start(user=curator, dataset=ds, scorer="deita", params={"mode": "chat", "chat_backend": "deita-judge"})
        seen = url.chat_requests()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.params["model"] == "chat:judge-x"
    assert run.params["chat"]["backend"] == "deita-judge" and "sk-deita" not in str(run.params)
    assert {s["json"]["model"] for s in seen} == {"judge-x"}
    assert {s["headers"]["authorization"] for s in seen} == {"Bearer sk-deita"}
    assert Score.objects.get(run=run).value == pytest.approx(9.0)  # c x q = 3 x 3
    with pytest.raises(ValueError, match="No enabled model backend named 'gone'"):
        scorer_run_start(user=curator, dataset=ds, scorer="deita", params={"mode": "chat", "chat_backend": "gone"})
