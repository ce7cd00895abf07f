"""Domain classifier and DataRater heads (docs/METHODS.md 1.1, 1.3) on the shared public data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from curation.pipeline.base import RecordView
from curation.pipeline.rater import (CLASSIFY, REGRESS, EncoderSpec, RaterModel, RaterScorer, regression_metrics,
                                     train_rater)
from tests.fakes.fixtures import tiny_encoder_path  # noqa: F401

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def _rows(name, n):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"shared data missing: {path}")
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


@pytest.fixture(scope="module")
def domain_data():
    """Medical = Huatuo answers, general = Chinese Wikipedia paragraphs (CMRC/XQuAD)."""
    med = [r["question"] + "\n" + r["answer"] for r in _rows("huatuo26m_test_qa.jsonl", 150)]
    gen = [r["text"] for r in _rows("general_zh.jsonl", 150)]
    return med + gen, ["medical"] * len(med) + ["general"] * len(gen)


def test_hashed_domain_classifier_learns_and_reports_confusion(domain_data, tmp_path):
    texts, labels = domain_data
    model, res = train_rater(texts, labels, task=CLASSIFY, val_fraction=0.2, seed=1)
    m = res.metrics
    assert m["accuracy"] > 0.9  # medical QA vs Wikipedia is an easy split for char n-grams
    assert m["labels"] == ["general", "medical"]
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == res.n_val == 60
    assert np.trace(cm) / cm.sum() == pytest.approx(m["accuracy"])
    # saved and reloaded, it predicts the same
    again = RaterModel.load(model.save(tmp_path / "v1"))
    # records the model has not seen (the first 150 of each file were used for training)
    probe = [_rows("huatuo26m_test_qa.jsonl", 160)[-1]["answer"], _rows("general_zh.jsonl", 160)[-1]["text"]]
    assert [p[0] for p in again.predict(probe)] == [p[0] for p in model.predict(probe)]
    scorer = RaterScorer(again, name="domain", version="1", target_label="medical")
    recs = [RecordView(id=i, kind="document", lang="zh", text=t, content={"text": t}) for i, t in enumerate(probe)]
    out = scorer.score_batch(recs + [RecordView(id=9, kind="document", lang="zh", text="", content={})])
    assert out[0].keep is True and out[0].value > 0.5
    assert out[1].keep is False and out[1].reason == "domain:general" and out[1].value < 0.5
    assert out[2].value is None and out[2].reason == "empty text"


def test_datarater_regression_picks_lowest_mse_and_clips(domain_data):
    texts, labels = domain_data
    # A learnable synthetic target: medical texts rate high, general ones low, with noise.
    rng = np.random.default_rng(0)
    y = np.clip(np.where(np.array(labels) == "medical", 4.0, 1.0) + rng.normal(0, 0.3, len(labels)), 0, 5)
    model, res = train_rater(texts, y.tolist(), task=REGRESS, val_fraction=0.2, seed=0)
    m = res.metrics
    assert m["mse"] == min(m["grid"].values())  # chosen by lowest MSE
    assert res.chosen_param in (0.1, 1.0, 10.0) and m["grid"][str(res.chosen_param)] == m["mse"]
    assert m["mse"] < 0.6 and m["spearman"] > 0.7
    preds = model.predict(["完全无关" * 50, texts[0]])
    assert all(0.0 <= p <= 5.0 for p in preds)


def test_embedding_encoder_path_trains_with_tiny_sentence_transformer(domain_data, tiny_encoder_path):
    texts, labels = domain_data
    spec = EncoderSpec(kind="embedding", model_ref=tiny_encoder_path)
    model, res = train_rater(texts[::5], labels[::5], task=CLASSIFY, encoder=spec, val_fraction=0.25)
    assert 0.0 <= res.metrics["accuracy"] <= 1.0 and res.n_val > 0
    preds = model.predict(texts[:3])
    assert all(lab in ("medical", "general") for lab, _ in preds)
    for _, proba in preds:
        assert sum(proba.values()) == pytest.approx(1.0)


def test_bad_training_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="at least 4"):
        train_rater(["a", "b"], [1, 2], task=REGRESS)
    with pytest.raises(ValueError, match="0-5"):
        train_rater(["a", "b", "c", "d"], [1, 2, 3, 7], task=REGRESS)
    with pytest.raises(ValueError, match="two different labels"):
        train_rater(["a", "b", "c", "d"], ["x"] * 4, task=CLASSIFY)
    with pytest.raises(ValueError, match="unknown encoder"):
        train_rater(["a", "b", "c", "d"], ["x", "y"] * 2, task=CLASSIFY, encoder=EncoderSpec(kind="bow"))


def test_regression_metrics_values():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 4, 3])
    assert m["mse"] == pytest.approx(0.5) and m["spearman"] == pytest.approx(0.8)
    assert regression_metrics([2, 2], [1, 3])["spearman"] is None
