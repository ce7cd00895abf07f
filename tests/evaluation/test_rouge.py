"""ROUGE-L with character tokens for Chinese, against an independent by-character LCS."""
import json
import os
import random

import pytest

from training.pipeline.rouge import rouge_l, rouge_win_tie_loss, tokenize, win_tie_loss

DATA = os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")


def lcs_len(a, b):
    # plain O(n*m) DP written independently of rouge-score's implementation
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def char_reference_f(pred, ref):
    keep = lambda s: [c for c in s if "\u4e00" <= c <= "\u9fff"]
    p, r = keep(pred), keep(ref)
    lcs = lcs_len(p, r)
    if not lcs:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


def test_default_rouge_score_gives_zero_on_chinese_but_ours_does_not():
    from rouge_score import rouge_scorer
    pred, ref = "多喝水，注意休息，必要时就医。", "注意休息，多喝水，如有发热请就医。"
    assert rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure == 0.0
    got = rouge_l(pred, ref)
    # LCS "注意休息…就医" = 6 of 12 predicted and 14 reference characters
    assert (got.precision, got.recall) == (pytest.approx(6 / 12), pytest.approx(6 / 14))


def test_chinese_rouge_equals_by_character_lcs_on_real_answers():
    path = os.path.join(DATA, "huatuo26m_test_qa.jsonl")
    if not os.path.exists(path):
        pytest.skip("shared data not available")
    with open(path, encoding="utf-8") as f:
        answers = [json.loads(line)["answer"] for _, line in zip(range(60), f)]
    # keep only CJK characters so the reference and ours see the same units
    answers = ["".join(c for c in a if "\u4e00" <= c <= "\u9fff")[:150] for a in answers]
    rng = random.Random(0)
    for i in range(0, 60, 2):
        ref, other = answers[i], answers[i + 1]
        # a prediction sharing part of the reference: shuffled chunks of it plus another answer
        chunks = [ref[j:j + 7] for j in range(0, len(ref), 7)]
        rng.shuffle(chunks)
        pred = "".join(chunks[: len(chunks) // 2]) + other[:40]
        got = rouge_l(pred, ref).fmeasure
        assert got == pytest.approx(char_reference_f(pred, ref), abs=1e-12)
        if len(chunks) >= 2:  # the prediction then holds part of the reference verbatim
            assert got > 0


def test_precision_and_recall_follow_prediction_and_reference_lengths():
    s = rouge_l("头痛", "头痛发热")
    assert s.precision == pytest.approx(1.0)
    assert s.recall == pytest.approx(0.5)


def test_mixed_text_keeps_english_words_whole_and_drops_punctuation():
    assert tokenize("HbA1c 偏高，Take Metformin!") == ["hba1c", "偏", "高", "take", "metformin"]


def test_win_tie_loss_from_individual_scores_skips_missing():
    w = win_tie_loss([0.9, 0.5, 0.3, None, 0.4], [0.1, 0.5, 0.6, 0.2, 0.41], margin=0.02)
    assert (w.win, w.tie, w.loss) == (1, 2, 1)
    with pytest.raises(ValueError):
        win_tie_loss([1.0], [1.0, 2.0])


def test_rouge_win_tie_loss_prefers_output_closer_to_reference():
    refs = ["多喝水注意休息", "按时服用降压药", "低盐饮食"]
    a = ["多喝水注意休息", "按时服用降压药物", "低盐饮食"]
    b = ["去医院", "按时服用降压药物", None]
    w = rouge_win_tie_loss(a, b, refs)
    assert (w.win, w.tie, w.loss) == (1, 1, 0)
