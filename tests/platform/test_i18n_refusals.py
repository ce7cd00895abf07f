"""Issue 18.8: a launch the services refuse (training pre-flight, evaluation, corpus studio) reads in
the reader's language; the English text (CLI, logs, other tests) is unchanged. The record and
model names inside the message are data and stay as they are."""
import json

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

pytestmark = pytest.mark.django_db

MCQ = [{"id": "m1", "question": "Which organ pumps blood?", "options": {"A": "Heart", "B": "Liver"}, "answer": "A"}]


def test_refused_training_launch_in_chinese(client_for, make_dataset, tmp_path, settings):
    """The pre-flight's model problem (from the Django-free pipeline, translated by the caller) and
    the wrong data kind, with the language cookie."""
    from training import services
    from training.forms import RunForm

    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    model = tmp_path / "no-tokenizer"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    base = services.model_ref_create(actor=None, name="bare-config", path=str(model))
    docs = make_dataset("docs", "document", [{"id": "d0", "text": "发热三天，伴咳嗽。"}])
    data = {k: ("on" if v is True else v) for k, v in RunForm.initial_for("sft").items() if v is not False and v is not None}
    data.update(base_model=base.pk, data=f"dataset:{docs.pk}", learning_rate="-1")
    c = client_for("admin")
    c.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    html = c.post(reverse("training:run_new"), data).content.decode()
    assert f"bare-config: {model} 中没有分词器" in html and "请把分词器保存在模型旁边" in html
    assert "sft 阶段在 qa 或 dialogue 或 mcq 类型的记录上训练，而 &#x27;docs&#x27; 中是 document 记录" in html
    assert "必须在 (0, 1) 区间内" in html  # the spec's own check (training/pipeline/specs.py), translated too
    assert "has no tokenizer" not in html and "trains on" not in html and "must be in (0, 1)" not in html
    from training.models import TrainingRun

    assert not TrainingRun.objects.exists()
    c.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    en = c.post(reverse("training:run_new"), data).content.decode()
    assert f"{model} has no tokenizer (tokenizer.json, tokenizer.model or vocab file)" in en and "分词器" not in en
    assert "must be in (0, 1)" in en


def test_refused_evaluation_launch_in_chinese(client_for, make_dataset, tiny_llama_path, tmp_path):  # noqa: F811
    from medstudio.datasets.models import Dataset
    from training.evaluation import services
    from training.evaluation.models import EvalRun

    ds = make_dataset("bench", "mcq", MCQ)
    Dataset.objects.filter(pk=ds.pk).update(n_records=0)
    resp = client_for("admin").post(reverse("evaluation:run_new"), {
        "kind": "mcq", "dataset": ds.pk, "backend": "transformers", "path": tiny_llama_path},
        HTTP_ACCEPT_LANGUAGE="zh-Hans")
    html = resp.content.decode()
    assert resp.status_code == 400 and "数据集 &#x27;bench&#x27; 中没有记录：请先导入数据，或选择其他数据集" in html
    assert "has no records" not in html
    # The model check inside the service message: the pipeline's problem text is translated too.
    Dataset.objects.filter(pk=ds.pk).update(n_records=1)
    ds.refresh_from_db()
    missing = str(tmp_path / "missing-model")
    with translation.override("zh-hans"), pytest.raises(services.EvalConfigError) as zh:
        services.eval_run_start(user=None, kind="mcq", dataset=ds, model_name="m",
                                model_spec={"backend": "transformers", "path": missing})
    assert str(zh.value).startswith(f"模型路径 {missing!r}：{missing!r} 不是本地模型目录")
    assert str(zh.value).endswith("请选择一个已注册的模型，或修正路径") and zh.value.field == "path"
    assert not EvalRun.objects.exists()


def test_corpus_studio_refusal_in_chinese(tmp_path, client_for):
    from curation.corpus.services import corpus_register
    from tests.corpus.conftest import docs, write_parquet

    d = tmp_path / "c"
    d.mkdir()
    write_parquet(d / "a.parquet", docs(4, 0))
    c = corpus_register(actor=None, name="fresh", uri=str(d))
    cur = client_for("curator")
    cur.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    r = cur.post(reverse("curation:corpus_studio_freeze", args=[c.pk]), {"selection_name": "a"}, follow=True)
    html = r.content.decode()
    assert r.status_code == 200 and "语料 fresh 还没有评分运行" in html and "no scoring run yet" not in html
