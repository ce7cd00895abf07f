"""Rule filters: each rule fires on text built to break it, and not on clean medical text."""
import json
import os
from pathlib import Path

import pytest

from curation.pipeline.base import RecordView
from curation.pipeline.rules import RuleConfig, RuleFilter, RulesScorer
from curation.pipeline.textutil import count_tokens
from medstudio.datasets.convert import text_fields

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))

CLEAN_EN = ("Hypertension is a common condition in which the long-term force of the blood against the artery "
            "walls is high enough that it may eventually cause health problems, such as heart disease. "
            "Blood pressure is determined both by the amount of blood the heart pumps and the amount of "
            "resistance to blood flow in the arteries. The more blood the heart pumps and the narrower the "
            "arteries, the higher the blood pressure. A reading is given in millimetres of mercury.")
CLEAN_ZH = ("高血压是一种常见的慢性疾病，指血液在血管中流动时对血管壁造成的压力持续高于正常值。长期高血压会增加心脏病、"
            "脑卒中和肾脏疾病的风险。治疗通常包括改变生活方式，例如减少食盐摄入、规律运动、控制体重和戒烟限酒，"
            "必要时在医生指导下服用降压药物，并定期监测血压。")


def failed(text, kind="document", **cfg):
    return RuleFilter(RuleConfig(**cfg)).check(text, kind)[0]


def test_clean_text_passes_in_both_languages():
    assert failed(CLEAN_EN) == []
    assert failed(CLEAN_ZH) == []


def test_cjk_aware_token_count():
    assert count_tokens("高血压 is common") == 5
    assert "too_few_tokens" in failed("高血压很常见。", min_tokens=50)
    assert "too_few_tokens" not in failed(CLEAN_ZH, min_tokens=50)
    # short SFT records use their own floor
    assert "too_few_tokens" not in failed("头痛三天怎么办？建议及时就医。", kind="qa")


def test_special_characters_and_symbols():
    assert "special_chars" in failed(CLEAN_EN + " ☆★☆★♪♪♪ ■■■ ◆◆◆ ♥♥♥ " * 30)
    assert "symbol_word_ratio" in failed(CLEAN_EN + " # ... # ... #" * 10)


def test_repetition_rules():
    assert "dup_lines" in failed("\n".join([CLEAN_EN] + ["Click here to subscribe to our newsletter today."] * 6))
    rep = "the patient should take the tablet twice a day with food and water " * 12
    assert {"top_ngram_repetition", "dup_ngram_repetition"} & set(failed(rep))
    zh_rep = CLEAN_ZH + "本院专家团队经验丰富，欢迎来电咨询预约挂号。" * 8
    assert "dup_ngram_repetition" in failed(zh_rep)


def test_non_text_rules():
    urls = CLEAN_EN + " " + " ".join(f"https://example.com/page/{i}?ref=nav" for i in range(40))
    assert "url_heavy" in failed(urls)
    html = "<div class='nav'><a href='/x'>" + CLEAN_EN + "</a></div>" + "<span class='ad-slot'></span>" * 20
    assert "markup_heavy" in failed(html)
    assert "boilerplate" in failed(CLEAN_EN + "\nLorem ipsum dolor sit amet.")


def test_layout_rules_only_for_documents():
    lines = "\n".join(f"- item {i} short" for i in range(80))
    f = failed(lines)
    assert "bullet_lines" in f or "short_lines" in f
    assert not {"bullet_lines", "short_lines", "line_punctuation"} & set(failed(lines, kind="qa"))


def test_toxic_word_lists_and_medical_words_are_safe():
    assert "toxic" in failed(CLEAN_EN + " You are a fucking idiot.")
    assert "toxic" in failed(CLEAN_ZH + "你这个傻逼")
    medical = CLEAN_EN + " Examination of the penis, vagina and breast showed no lesions; the sex of the fetus is male."
    assert "toxic" not in failed(medical)
    assert "toxic" not in failed(CLEAN_ZH + "服用三黄片后症状缓解。杂种优势是遗传学概念。")


def test_toxic_list_is_configurable(tmp_path):
    words = tmp_path / "en.txt"
    words.write_text("# custom\nhypertension\n", encoding="utf-8")
    assert "toxic" in failed(CLEAN_EN, toxic_words_en=str(words))
    with pytest.raises(ValueError, match="not found"):
        RuleFilter(RuleConfig(toxic_words_en=str(tmp_path / "missing.txt")))


def test_private_information_rule_and_disable():
    assert failed(CLEAN_ZH + "联系电话13812345678。")[0] == "pii"
    assert "pii" not in failed(CLEAN_ZH + "联系电话13812345678。", disabled=("pii",))


def test_from_params_rejects_typos_and_casts():
    cfg = RuleConfig.from_params({"min_tokens": "20", "disabled": "pii,toxic", "max_dup_ngram_char_ratio": {"5": 0.5}})
    assert cfg.min_tokens == 20 and cfg.disabled == ("pii", "toxic") and cfg.max_dup_ngram_char_ratio == {5: 0.5}
    with pytest.raises(ValueError, match="unknown rule settings"):
        RuleConfig.from_params({"min_token": 20})
    with pytest.raises(ValueError, match="unknown rules"):
        RuleFilter(RuleConfig(disabled=("nope",)))


def test_scorer_on_shared_data_gives_plausible_reasons():
    rows = []
    with open(DATA / "hh_rlhf_harmless_pairs.jsonl", encoding="utf-8") as fh:
        for _, line in zip(range(300), fh):
            rows.append(json.loads(line))
    recs = [RecordView(i, "pair", "en", "\n".join(text_fields("pair", r)), r) for i, r in enumerate(rows)]
    res = RulesScorer().score_batch(recs)
    dropped = [r for r in res if not r.keep]
    # red-teaming dialogues: some toxic drops, but most records are plain conversation
    assert any(r.reason == "toxic" for r in dropped)
    assert len(dropped) < 0.5 * len(res)
    for r in res:
        assert r.value == len(r.detail["failed"]) and (r.reason == (r.detail["failed"] or [""])[0])


def _ref_top(toks, n):
    grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    if not grams:
        return 0.0
    best = max(set(grams), key=lambda g: (grams.count(g), sum(map(len, g))))
    c = grams.count(best)
    return 0.0 if c < 2 else c * sum(map(len, best)) / sum(map(len, toks))


def _ref_dup(toks, n):
    seen, covered = set(), [False] * len(toks)
    for i in range(len(toks) - n + 1):
        g = tuple(toks[i:i + n])
        if g in seen:
            for j in range(i, i + n):
                covered[j] = True
        seen.add(g)
    return sum(len(t) for t, c in zip(toks, covered) if c) / max(sum(map(len, toks)), 1)


def test_vectorised_ngram_measures_match_a_plain_python_reference():
    import random

    from curation.pipeline.rules import _NgramView

    rng = random.Random(5)
    vocab = ["a", "bb", "ccc", "dddd", "高", "血压", "the", "patient"]
    wide = [f"w{i}" for i in range(40)]  # repeats that stop at some n, so the view's "no repeat from n on" skips the rest
    for case in range(400):
        words = wide if case % 2 else vocab
        toks = [rng.choice(words[: rng.randint(2, len(words))]) for _ in range(rng.randint(0, 60))]
        view = _NgramView(toks)
        ns = list(range(2, 11))
        if case % 4 >= 2:
            rng.shuffle(ns)  # the skip holds whatever order the measures are asked in
        for n in ns:
            assert view.dup_ratio(n) == pytest.approx(_ref_dup(toks, n))
            assert view.top_ratio(n) == pytest.approx(_ref_top(toks, n))


# ---------------------------------------------------------------- each rule block alone

BLOCK_FAILURES = {
    # block name: (text that breaks it, kind, expected reason)
    "length": ("Fever for three days.", "document", "too_few_tokens"),
    "pii": (CLEAN_ZH + "联系电话13812345678。", "document", "pii"),
    "toxic": (CLEAN_EN + " You are a fucking idiot.", "document", "toxic"),
    "symbols": (CLEAN_EN + " ☆★☆★♪♪♪ ■■■ ◆◆◆ ♥♥♥ " * 30, "document", "special_chars"),
    "non_text": (CLEAN_EN + " " + " ".join(f"https://example.com/page/{i}?ref=nav" for i in range(40)), "document",
                 "url_heavy"),
    "word_shape": (" ".join(["a"] * 60), "qa", "mean_word_length"),
    "layout": ("\n".join(f"- item {i} short" for i in range(80)), "document", "bullet_lines"),
    "repetition": ("\n".join([CLEAN_EN] + ["Click here to subscribe to our newsletter today."] * 6), "document",
                   "dup_lines"),
}


def test_rule_blocks_cover_every_rule_once_in_priority_order():
    from curation.pipeline.rules import BLOCKS

    assert [b.name for b in BLOCKS] == list(BLOCK_FAILURES)
    assert tuple(r for b in BLOCKS for r in b.rules) == RuleFilter.RULE_ORDER
    assert len(set(RuleFilter.RULE_ORDER)) == len(RuleFilter.RULE_ORDER)


@pytest.mark.parametrize("name", list(BLOCK_FAILURES))
def test_each_rule_block_alone_accepts_clean_text_and_rejects_its_failure(name):
    from curation.pipeline.rules import BLOCKS

    block = {b.name: b for b in BLOCKS}[name](RuleConfig())
    text, kind, reason = BLOCK_FAILURES[name]
    assert block(CLEAN_EN) is True
    assert block(CLEAN_ZH) is True
    assert block(text, kind) == (False, reason)
    assert reason in block.rules
    # the whole filter gives the same reason among its failures
    assert reason in failed(text, kind)
    # a disabled rule is not reported by its block either
    assert type(block)(RuleConfig(disabled=block.rules))(text, kind) is True


def test_filter_runs_only_the_configured_blocks_in_their_order():
    from curation.pipeline.rules import LengthBlock, RepetitionBlock

    rep = "\n".join(["Click here to subscribe to our newsletter today."] * 6)
    assert failed(rep)[:1] == ["too_few_tokens"] and "dup_lines" in failed(rep)
    only_rep = RuleFilter(RuleConfig(), blocks=(RepetitionBlock,))
    assert only_rep.check(rep)[0] == ["dup_lines"]
    assert only_rep(rep) == (False, "dup_lines")
    assert RuleFilter(RuleConfig(), blocks=(LengthBlock,))(CLEAN_EN) is True
    with pytest.raises(ValueError, match="unknown rules"):
        RuleFilter(RuleConfig(disabled=("pii",)), blocks=(LengthBlock,))
