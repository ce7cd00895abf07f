"""ConFilter (docs/METHODS.md 2.2): the one-pass computation equals a naive turn-by-turn one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from curation.pipeline.base import RecordView
from curation.pipeline.confilter import ConFilter, Exchange, confilter_naive, encode_exchanges, parse_dialogue
from medstudio.inference.lm import TransformersLM
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


@pytest.fixture(scope="module")
def lm(tiny_llama_path):
    return TransformersLM(tiny_llama_path, setting="MEDSTUDIO_CONFILTER_MODEL", token_budget=4096)


def dialogue(turns, system=None, rid=1):
    content = {"turns": [{"role": r, "content": c} for r, c in turns]}
    if system:
        content["system"] = system
    return RecordView(id=rid, kind="dialogue", lang="zh", text="", content=content)


SIX_TURNS = dialogue(
    [("user", "医生您好，我最近总是头痛。"), ("assistant", "头痛多久了？有没有发烧？"),
     ("user", "三天了，没有发烧。"), ("assistant", "晚上睡眠怎么样？"),
     ("user", "睡不好，经常醒。"), ("assistant", "可能是紧张性头痛，建议规律作息。"),
     ("user", "需要吃药吗？"), ("assistant", "可以短期服用布洛芬，注意不要空腹。"),
     ("user", "Can I drink coffee?"), ("assistant", "Limit coffee; it can make sleep worse."),
     ("user", "谢谢医生"), ("assistant", "不客气，如果加重请到神经内科就诊。")],
    system="你是一名专业的医生。",
)


def assert_same(fast, slow, atol=1e-4):
    assert (fast.value is None) == (slow.value is None)
    if fast.value is not None:
        assert abs(fast.value - slow.value) < atol
    assert fast.detail["truncated_turns"] == slow.detail["truncated_turns"]
    for a, b in zip(fast.detail["turns"], slow.detail["turns"], strict=True):
        assert a["status"] == b["status"]
        for key in ("loss_cond", "loss_direct", "cf"):
            if a.get(key) is None:
                assert b.get(key) is None
            else:
                assert abs(a[key] - b[key]) < atol, (key, a, b)


def test_reply_spans_cover_exactly_the_reply_text(lm):
    ex = parse_dialogue(SIX_TURNS).exchanges
    ids, spans = encode_exchanges(lm.tokenizer, "你是一名专业的医生。", ex)
    assert len(spans) == 6
    for (s, e), x in zip(spans, ex):
        assert lm.tokenizer.decode(ids[s:e]) == x.assistant
    # the template is respected: every reply starts after an assistant header
    text = lm.tokenizer.decode(ids)
    assert text.count("<|im_start|>assistant\n") == 6 and text.startswith("<|im_start|>system\n你是一名专业的医生。")


def test_one_pass_equals_naive_on_six_turns(lm):
    fast = ConFilter(lm).score_batch([SIX_TURNS])[0]
    slow = confilter_naive(lm, SIX_TURNS)
    assert_same(fast, slow)
    turns = fast.detail["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5, 6]
    assert turns[0]["cf"] == 1.0 and turns[0]["status"] == "first"
    # turn 1: conditioned and direct inputs are the same tokens
    assert abs(turns[0]["loss_cond"] - turns[0]["loss_direct"]) < 1e-5
    cfs = [t["cf"] for t in turns[1:]]
    assert fast.value == pytest.approx(np.mean(cfs))
    assert fast.detail["cf_min"] == min(cfs) and fast.detail["cf_max"] == max(cfs)
    # a random tiny LM still gives distinct per-turn values (the test can tell turns apart)
    assert len({round(c, 6) for c in cfs}) == len(cfs)


def test_conditioned_loss_matches_hand_computation(lm):
    import torch

    tok = lm.tokenizer
    text = ("<|im_start|>user\n头痛三天<|im_end|>\n<|im_start|>assistant\n有没有发烧？<|im_end|>\n"
            "<|im_start|>user\n没有<|im_end|>\n<|im_start|>assistant\n")
    reply = "建议多休息"
    prefix = tok.encode(text, add_special_tokens=False)
    reply_ids = tok.encode(reply, add_special_tokens=False)
    seq = prefix + reply_ids + tok.encode("<|im_end|>\n", add_special_tokens=False)
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([seq])).logits[0].float(), -1)
    expected = -np.mean([logp[len(prefix) + k - 1, t].item() for k, t in enumerate(reply_ids)])
    rec = dialogue([("user", "头痛三天"), ("assistant", "有没有发烧？"), ("user", "没有"), ("assistant", reply)])
    got = ConFilter(lm).score_batch([rec])[0].detail["turns"][1]["loss_cond"]
    assert got == pytest.approx(expected, abs=1e-4)


def test_left_truncation_drops_whole_exchanges_and_still_matches_naive(lm):
    full_len = len(encode_exchanges(lm.tokenizer, "你是一名专业的医生。", parse_dialogue(SIX_TURNS).exchanges)[0])
    limit = int(full_len * 0.6)
    fast = ConFilter(lm, max_length=limit).score_batch([SIX_TURNS])[0]
    slow = confilter_naive(lm, SIX_TURNS, max_length=limit)
    k = fast.detail["truncated_turns"]
    assert 0 < k < 6
    assert [t["status"] for t in fast.detail["turns"][:k]] == ["truncated"] * k
    assert fast.detail["turns"][k]["status"] == "first"
    assert_same(fast, slow)
    tiny = ConFilter(lm, max_length=5).score_batch([SIX_TURNS])[0]
    assert tiny.value is None and "max_length" in tiny.reason


def test_single_exchange_and_wrong_kinds_are_unscored_not_defaulted(lm):
    qa = RecordView(id=2, kind="qa", lang="zh", text="", content={"question": "头痛怎么办", "answer": "多休息"})
    doc = RecordView(id=3, kind="document", lang="zh", text="x", content={"text": "x"})
    empty = dialogue([("user", "只有问题")])
    out = ConFilter(lm).score_batch([qa, doc, empty])
    assert [r.value for r in out] == [None, None, None]
    assert "CF undefined" in out[0].reason and out[0].detail["turns"][0]["cf"] == 1.0
    assert "dialogues" in out[1].reason
    assert "no user/assistant" in out[2].reason


def test_parse_dialogue_merges_and_pairs():
    rec = dialogue([("assistant", "你好"), ("user", "a"), ("user", "b"), ("assistant", "c"), ("assistant", "d"),
                    ("user", "e")])
    parsed = parse_dialogue(rec)
    assert parsed.exchanges == [Exchange("a\nb", "c\nd")]
    assert len(parsed.notes) == 2


def _shared_dialogues(n):
    path = DATA / "cmtmedqa_multiturn.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if sum(t["role"] == "assistant" for t in row["turns"]) >= 3:
                out.append(RecordView(id=len(out), kind="dialogue", lang=row["lang"], text="",
                                      content={"turns": row["turns"]}))
            if len(out) >= n:
                break
    return out


def test_one_pass_equals_naive_on_cmtmedqa_multiturn(lm):
    records = _shared_dialogues(6)
    fast = ConFilter(lm, max_length=1024).score_batch(records)  # several real dialogues batched together
    for rec, got in zip(records, fast):
        assert got.value is not None
        assert_same(got, confilter_naive(lm, rec, max_length=1024))
