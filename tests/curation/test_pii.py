"""PII detection (checksums, phones, e-mail, IP, personal URLs), spans, counts and redaction."""
import json
import os
import random
from pathlib import Path

import pytest

from curation.pipeline import pii
from curation.pipeline.base import RecordView

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def _make_cn_id(rng):
    """A resident ID with a valid mod 11-2 check digit, computed here independently."""
    body = f"{rng.randint(110000, 659000)}{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # ISO 7064 MOD 11-2 weights
    check = (12 - sum(int(d) * w for d, w in zip(body, weights)) % 11) % 11
    return body + ("X" if check == 10 else str(check))


def _make_card(rng, prefix="6222", length=19):
    digits = [int(c) for c in prefix] + [rng.randint(0, 9) for _ in range(length - len(prefix) - 1)]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed(digits + [check])):
            if i % 2:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return "".join(map(str, digits + [check]))


def test_cn_id_checksum_and_date():
    rng = random.Random(1)
    for _ in range(200):
        good = _make_cn_id(rng)
        assert pii.cn_id_valid(good), good
        wrong = good[:17] + ("0" if good[17] != "0" else "1")
        assert not pii.cn_id_valid(wrong)
    assert not pii.cn_id_valid("110105194902301234")  # 30 February


def test_luhn():
    rng = random.Random(2)
    for _ in range(200):
        card = _make_card(rng)
        assert pii.luhn_valid(card)
        assert not pii.luhn_valid(card[:-1] + str((int(card[-1]) + 1) % 10))


def test_detects_every_type_with_spans_and_counts():
    rng = random.Random(3)
    cid, card = _make_cn_id(rng), _make_card(rng)
    card_grouped = " ".join(card[i:i + 4] for i in range(0, len(card), 4))
    text = (f"患者张某，身份证{cid}，手机 138-1234-5678，座机010-62751234，邮箱 zhang.san@example.com。"
            f"卡号 {card_grouped}。Call +44 20 7946 0958 from 192.168.10.20 or see https://weibo.com/u/1234567 "
            f"and https://www.who.int/health-topics.")
    spans = pii.detect(text)
    got = {(s.type, s.text) for s in spans}
    assert ("cn_id", cid) in got
    assert ("phone", "138-1234-5678") in got
    assert ("phone", "010-62751234") in got
    assert ("email", "zhang.san@example.com") in got
    assert ("bank_card", card_grouped) in got
    assert ("phone", "+44 20 7946 0958") in got
    assert ("ip", "192.168.10.20") in got
    assert ("personal_url", "https://weibo.com/u/1234567") in got
    assert not any("who.int" in s.text for s in spans), "an organisation URL is not personal"
    for s in spans:
        assert text[s.start:s.end] == s.text
    assert pii.counts(spans) == {"cn_id": 1, "phone": 3, "email": 1, "bank_card": 1, "ip": 1, "personal_url": 1}


def test_medical_numbers_are_not_pii():
    text = ("血压 120/80 mmHg，血糖 6.1 mmol/L，2023-10-12 复查，1600-1800 年间的记载，"
            "WBC 4.5×10^9/L，剂量 0.25 mg，牙式 1-3.1.4.2-3，版本 1.2.3.4，住院号 20231012。")
    assert pii.detect(text) == []


def test_redaction_replaces_spans_and_keeps_the_rest():
    text = "请联系 13812345678 或 a.b@example.org，谢谢"
    assert pii.redact(text) == "请联系 [PHONE] 或 [EMAIL]，谢谢"
    assert pii.detect(pii.redact(text)) == []
    content = {"turns": [{"role": "user", "content": "我的电话13812345678"}, {"role": "assistant", "content": "好的"}],
               "meta": {"note": "mail x@y.com"}}
    red, counts = pii.redact_content(content)
    assert red["turns"][0]["content"] == "我的电话[PHONE]" and red["turns"][1]["content"] == "好的"
    assert red["meta"]["note"] == "mail [EMAIL]"
    assert counts == {"phone": 1, "email": 1}
    assert content["turns"][0]["content"] == "我的电话13812345678", "the input is not modified"


def test_scorer_counts_and_reason():
    scorer = pii.PiiScorer()
    res = scorer.score_batch([RecordView(1, "qa", "zh", "电话13812345678，13912345678"), RecordView(2, "qa", "zh", "没有个人信息")])
    assert (res[0].value, res[0].keep, res[0].reason) == (2.0, False, "pii:phone")
    assert res[0].detail["counts"] == {"phone": 2}
    assert (res[1].value, res[1].keep) == (0.0, True)
    with pytest.raises(ValueError, match="unknown PII types"):
        pii.PiiScorer(types=["passport"])


def test_shared_medical_qa_has_few_detections():
    """On real consultations PII is rare: a flood of hits would mean false positives."""
    texts = []
    with open(DATA / "huatuo26m_test_qa.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            texts.append(r["question"] + "\n" + r["answer"])
    flagged = [t for t in texts if pii.detect(t)]
    assert len(flagged) <= 0.01 * len(texts), flagged[:5]


def test_north_american_numbers_in_english_text():
    spans = pii.detect("That would be (202) 225-2815. Or call 650-253-0000 ext. The year 1600-1800 is not a phone.")
    assert [(s.type, s.text) for s in spans] == [("phone", "(202) 225-2815"), ("phone", "650-253-0000")]
    # Chinese text keeps the mainland rules only
    assert pii.detect("请在1600-1800之间来电") == []
