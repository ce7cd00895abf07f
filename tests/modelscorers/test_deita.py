"""Deita (docs/METHODS.md 2.1): expected digit over the six digit tokens, s = c * q, dialogue mean, unscored."""
from __future__ import annotations

import math

import numpy as np
import pytest

from curation.pipeline.base import RecordView
from curation.pipeline.deita import (COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE, ChatDigitScorer, Deita, LMDigitScorer,
                                     digit_token_ids, expected_digit)
from medstudio.inference.chat import ChatBackend
from medstudio.inference.lm import TransformersLM
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.fakes.openai_server import Status, fake_openai_server

QA = RecordView(id=1, kind="qa", lang="zh", text="", content={"question": "高血压怎么治疗？", "answer": "低盐饮食，按时服药。"})
DIALOGUE = RecordView(id=2, kind="dialogue", lang="zh", text="", content={"turns": [
    {"role": "user", "content": "头痛三天"}, {"role": "assistant", "content": "有没有发烧？"},
    {"role": "user", "content": "没有发烧"}, {"role": "assistant", "content": "建议多休息，观察。"}]})


def test_expected_digit_is_softmax_expectation():
    lp = [math.log(p) for p in (0.1, 0.1, 0.2, 0.2, 0.3, 0.1)]
    assert expected_digit(lp) == pytest.approx(1 * .1 + 2 * .1 + 3 * .2 + 4 * .2 + 5 * .3 + 6 * .1)
    # renormalised over the six digits: a constant shift changes nothing
    assert expected_digit([v - 7.0 for v in lp]) == pytest.approx(expected_digit(lp))
    # digits missing from a top-k list count as probability 0
    assert expected_digit([float("nan")] * 4 + [0.0, float("-inf")]) == 5.0
    assert expected_digit([float("nan")] * 6) is None


@pytest.fixture(scope="module")
def lm(tiny_llama_path):
    return TransformersLM(tiny_llama_path, setting="MEDSTUDIO_DEITA_COMPLEXITY_MODEL")


def test_lm_digit_scorer_matches_hand_softmax(lm):
    import torch

    scorer = LMDigitScorer(lm, COMPLEXITY_TEMPLATE)
    (value, detail), = scorer.score([{"instruction": "高血压怎么治疗？"}])
    ids = lm.tokenizer.encode(COMPLEXITY_TEMPLATE.format(instruction="高血压怎么治疗？"))
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    digits = digit_token_ids(lm.tokenizer)
    p = torch.softmax(logits[digits], -1).numpy()
    assert value == pytest.approx(float(np.dot(p, np.arange(1, 7))), abs=1e-5)
    assert 1.0 <= value <= 6.0 and 0 < detail["digit_mass"] <= 1


def test_lm_digit_scorer_shortens_long_inputs_but_keeps_template_tail(lm):
    scorer = LMDigitScorer(lm, QUALITY_TEMPLATE, max_length=64)
    seq = scorer._encode({"instruction": "头痛" * 200, "output": "休息" * 200})
    assert len(seq) <= 64
    assert lm.tokenizer.decode(seq).endswith("##Quality: ")


def test_deita_s_is_c_times_q_and_dialogue_mean(lm):
    c = LMDigitScorer(lm, COMPLEXITY_TEMPLATE)
    q = LMDigitScorer(lm, QUALITY_TEMPLATE)
    qa, dlg = Deita(c, q).score_batch([QA, DIALOGUE])
    (c1, _), = c.score([{"instruction": "高血压怎么治疗？"}])
    (q1, _), = q.score([{"instruction": "高血压怎么治疗？", "output": "低盐饮食，按时服药。"}])
    assert qa.value == pytest.approx(c1 * q1, abs=1e-4)  # batched (padded) vs alone: float noise only
    turns = dlg.detail["turns"]
    assert len(turns) == 2
    for t in turns:
        assert t["s"] == pytest.approx(t["c"] * t["q"])
    assert dlg.value == pytest.approx((turns[0]["s"] + turns[1]["s"]) / 2)


class _NoDistributionLM:
    """An LM whose next-token distribution is unusable (e.g. a server that returns no digits)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.max_length = 512

    def next_token_logprobs(self, seqs, cands):
        return np.full((len(seqs), len(cands)), np.nan)


def test_no_usable_distribution_is_unscored_not_defaulted(lm):
    bad = LMDigitScorer(_NoDistributionLM(lm.tokenizer), QUALITY_TEMPLATE)
    res = Deita(LMDigitScorer(lm, COMPLEXITY_TEMPLATE), bad).score_batch([QA, DIALOGUE])
    assert [r.value for r in res] == [None, None]
    assert "unscored" in res[0].reason
    doc = RecordView(id=3, kind="document", lang="zh", text="x", content={"text": "x"})
    assert Deita(bad, bad).score_batch([doc])[0].value is None


def _logprob_reply(probs):
    top = [{"token": str(d), "logprob": math.log(p), "bytes": None} for d, p in probs.items()]
    first = max(probs, key=probs.get)
    return {"content": str(first), "logprobs": {"content": [
        {"token": str(first), "logprob": math.log(probs[first]), "bytes": None, "top_logprobs": top}]}}


def test_chat_judge_uses_logprobs_then_text_and_marks_failures():
    def script(req):
        text = req["messages"][0]["content"]
        if "FAIL" in text:
            return Status(400)
        if "quality" in text:
            return "I'd say 4."  # no logprobs: the digit in the text is used
        return _logprob_reply({4: 0.5, 5: 0.5})

    with fake_openai_server(chat=script) as url:
        backend = ChatBackend(url, "judge", max_retries=0)
        from curation.pipeline.deita import JUDGE_COMPLEXITY, JUDGE_QUALITY

        deita = Deita(ChatDigitScorer(backend, JUDGE_COMPLEXITY), ChatDigitScorer(backend, JUDGE_QUALITY))
        fail = RecordView(id=9, kind="qa", lang="en", text="", content={"question": "FAIL", "answer": "x"})
        good, bad = deita.score_batch([QA, fail])
        sent = url.chat_requests()[0]["json"]
        assert sent["logprobs"] is True and sent["top_logprobs"] == 20
    assert good.value == pytest.approx(4.5 * 4.0)
    assert good.detail["turns"][0]["c"] == pytest.approx(4.5)
    assert bad.value is None and "400" in bad.detail["turns"][0]["error"]
