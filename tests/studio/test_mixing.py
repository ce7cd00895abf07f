"""Mixture planner (pure Python) on the shared public data: the paper's ratios must hold in tokens."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from curation.pipeline.mixing import (
    BOOST_CPT,
    STABLE_CPT,
    MixingError,
    MixSource,
    MixTargets,
    RecordRef,
    interleave,
    plan_mixture,
    realize,
    shard,
)

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _tokens(text: str) -> int:
    # rough CJK-aware count (one per Han character, one per other word); only ratios matter here
    return len(_CJK.findall(text)) + len(_CJK.sub(" ", text).split())


def _load(name: str, fields: tuple[str, ...], start_id: int) -> list[RecordRef]:
    out = []
    with open(DATA / name, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            text = "\n".join(str(row.get(f, "")) for f in fields)
            out.append(RecordRef(id=start_id + i, lang=row["lang"], n_tokens=max(1, _tokens(text))))
    return out


@pytest.fixture(scope="module")
def pools() -> dict[str, list[RecordRef]]:
    return {
        "med_zh": _load("huatuo26m_test_qa.jsonl", ("question", "answer"), 1_000_000)
        + _load("zh_med_qa_toyhom.jsonl", ("question", "answer"), 2_000_000),
        "med_en": _load("pubmedqa.jsonl", ("context",), 3_000_000),
        "sft_en": _load("pubmedqa.jsonl", ("question", "explanation"), 7_000_000),
        "gen_en": _load("general_en.jsonl", ("title", "text"), 4_000_000),
        "gen_zh": _load("general_zh.jsonl", ("title", "text"), 5_000_000),
        "sft_zh": _load("cmtmedqa_multiturn.jsonl", ("turns",), 6_000_000),
    }


def _sources(pools, tags: dict[str, str]) -> list[MixSource]:
    out = []
    for name, cat in tags.items():
        by_lang: dict[str, int] = {}
        for r in pools[name]:
            by_lang[r.lang] = by_lang.get(r.lang, 0) + r.n_tokens
        out.append(MixSource(name=name, category=cat, tokens_by_lang=by_lang))
    return out


def _ratio(a: int, b: int) -> float:
    return a / b


@pytest.mark.parametrize("strategy", ["independent", "min_epochs"])
def test_stable_cpt_achieves_19_to_1_and_1_to_9_within_one_percent(pools, strategy):
    tags = {"med_zh": "medical", "med_en": "medical", "gen_en": "general", "gen_zh": "general"}
    plan = plan_mixture(_sources(pools, tags), STABLE_CPT, budget=3_000_000, strategy=strategy)
    assert plan.strategy == strategy
    # planned tokens meet the ratios exactly before rounding to records
    med = sum(c.planned for c in plan.cells if c.category == "medical")
    gen = sum(c.planned for c in plan.cells if c.category == "general")
    zh = sum(c.planned for c in plan.cells if c.lang == "zh")
    en = sum(c.planned for c in plan.cells if c.lang == "en")
    assert med / gen == pytest.approx(19.0, rel=1e-9)
    assert zh / en == pytest.approx(1 / 9, rel=1e-9)
    assert med + gen == pytest.approx(3_000_000, rel=1e-9)

    real = realize(plan, {k: pools[k] for k in tags}, seed="t")
    got_cat = real.tokens_by_category
    got_lang = real.tokens_by_lang
    assert _ratio(got_cat["medical"], got_cat["general"]) == pytest.approx(19.0, rel=0.01)
    assert _ratio(got_lang["zh"], got_lang["en"]) == pytest.approx(1 / 9, rel=0.01)
    assert real.total == pytest.approx(3_000_000, rel=0.01)
    assert real.achieved(STABLE_CPT)["max_rel_error"] < 0.01
    # the recorded draws add up to the reported totals
    assert sum(d.n_tokens for d in real.draws) == real.total


def test_stable_cpt_shows_upsampling_epochs(pools):
    """English medical text is scarce in the shared data, so the plan must repeat it and say so."""
    tags = {"med_zh": "medical", "med_en": "medical", "gen_en": "general", "gen_zh": "general"}
    plan = plan_mixture(_sources(pools, tags), STABLE_CPT, budget=3_000_000)
    epochs = plan.source_epochs()
    med_en_avail = sum(r.n_tokens for r in pools["med_en"])
    expected = 3_000_000 * 0.95 * 0.9 / med_en_avail
    assert epochs["med_en"] == pytest.approx(expected, rel=1e-9)
    assert epochs["med_en"] > 1
    real = realize(plan, {k: pools[k] for k in tags}, seed="t")
    repeats = [d for d in real.draws if d.source == "med_en"]
    assert max(d.epoch for d in repeats) == int(expected)  # whole passes are visible per draw
    # down-sampled sources are drawn at most once
    assert epochs["gen_en"] < 1
    assert max(d.epoch for d in real.draws if d.source == "gen_en") == 0


def test_min_epochs_lowers_the_worst_repetition(pools):
    tags = {"med_zh": "medical", "med_en": "medical", "gen_en": "general", "gen_zh": "general"}
    srcs = _sources(pools, tags)
    ind = plan_mixture(srcs, STABLE_CPT, budget=3_000_000, strategy="independent")
    lp = plan_mixture(srcs, STABLE_CPT, budget=3_000_000, strategy="min_epochs")
    assert max(c.epochs for c in lp.cells) <= max(c.epochs for c in ind.cells) + 1e-9


def test_boost_cpt_1_to_1_and_4_to_6(pools):
    tags = {"med_zh": "medical", "med_en": "medical", "sft_zh": "sft", "sft_en": "sft"}
    plan = plan_mixture(_sources(pools, tags), BOOST_CPT, budget=1_000_000)
    real = realize(plan, {k: pools[k] for k in tags}, seed="b")
    assert _ratio(real.tokens_by_category["medical"], real.tokens_by_category["sft"]) == pytest.approx(1.0, rel=0.01)
    assert _ratio(real.tokens_by_lang["zh"], real.tokens_by_lang["en"]) == pytest.approx(4 / 6, rel=0.01)


def test_edited_targets_are_respected(pools):
    tags = {"med_zh": "medical", "gen_zh": "general", "gen_en": "general", "med_en": "medical"}
    targets = MixTargets(categories={"medical": 3, "general": 1}, langs={"zh": 1, "en": 1})
    real = realize(plan_mixture(_sources(pools, tags), targets, budget=400_000), {k: pools[k] for k in tags})
    assert real.tokens_by_category["medical"] / real.tokens_by_category["general"] == pytest.approx(3.0, rel=0.01)
    assert real.tokens_by_lang["zh"] / real.tokens_by_lang["en"] == pytest.approx(1.0, rel=0.01)


def test_boost_falls_back_to_min_epochs_when_a_cell_is_empty(pools):
    # Chinese-only SFT data: the independent split would need English SFT tokens that do not exist
    tags = {"med_zh": "medical", "med_en": "medical", "sft_zh": "sft"}
    targets = MixTargets(categories={"medical": 1, "sft": 1}, langs={"zh": 6, "en": 4})
    plan = plan_mixture(_sources(pools, tags), targets, budget=600_000)
    assert plan.strategy == "min_epochs"
    assert any("sft/en" in n for n in plan.notes)
    assert sum(c.planned for c in plan.cells if c.source == "sft_zh") == pytest.approx(300_000, rel=1e-6)
    real = realize(plan, {k: pools[k] for k in tags}, seed="b")
    assert real.achieved(targets)["max_rel_error"] < 0.01


def test_boost_with_only_chinese_sft_cannot_reach_4_to_6(pools):
    # SFT is half the tokens and all Chinese, but Chinese may only be 40%: no plan exists
    srcs = _sources(pools, {"med_zh": "medical", "med_en": "medical", "sft_zh": "sft"})
    with pytest.raises(MixingError, match="cannot meet both ratios"):
        plan_mixture(srcs, BOOST_CPT, budget=600_000)


def test_missing_category_is_a_clear_error(pools):
    srcs = _sources(pools, {"med_zh": "medical", "med_en": "medical"})
    with pytest.raises(MixingError, match="general"):
        plan_mixture(srcs, STABLE_CPT, budget=100_000)


def test_missing_language_is_a_warning_and_the_rest_is_renormalised():
    # the default zh:en = 1:9 over a corpus with no English: plan Chinese only, and say what is missing
    srcs = [MixSource("a", "medical", {"zh": 1000}), MixSource("b", "general", {"zh": 1000})]
    plan = plan_mixture(srcs, STABLE_CPT, budget=1000)
    assert plan.missing == [{"lang": "en", "share": pytest.approx(0.9), "tokens": 900}]
    assert not any("en" in n for n in plan.notes)  # a warning of its own, not a note
    assert plan.targets.langs == {"zh": 1.0} and plan.requested == STABLE_CPT
    assert sum(c.planned for c in plan.cells) == pytest.approx(1000)
    by_cat = {c.category: c.planned for c in plan.cells}
    assert by_cat["medical"] / by_cat["general"] == pytest.approx(19)  # the category ratio still holds
    d = plan.as_dict()
    assert d["missing"][0]["lang"] == "en" and d["requested_targets"]["langs"] == {"zh": 1.0, "en": 9.0}
    # three languages, one missing: the other two keep their ratio to each other
    three = MixTargets(categories={"medical": 1}, langs={"zh": 2, "en": 6, "fr": 2})
    plan = plan_mixture([MixSource("a", "medical", {"zh": 5000, "en": 5000})], three, budget=800)
    planned = {c.lang: c.planned for c in plan.cells}
    assert planned["en"] / planned["zh"] == pytest.approx(3) and sum(planned.values()) == pytest.approx(800)
    assert [m["lang"] for m in plan.missing] == ["fr"] and plan.missing[0]["tokens"] == 160


def test_no_target_language_at_all_is_a_clear_error():
    srcs = [MixSource("a", "medical", {"fr": 100}), MixSource("b", "general", {"fr": 100})]
    with pytest.raises(MixingError, match="'zh'"):
        plan_mixture(srcs, STABLE_CPT, budget=1000)


def test_impossible_language_split_is_a_clear_error():
    # English exists, but only in general text, which may be only 5%: 90% English cannot be met
    srcs = [MixSource("a", "medical", {"zh": 1000}), MixSource("b", "general", {"zh": 100, "en": 1000})]
    with pytest.raises(MixingError, match="cannot meet both ratios"):
        plan_mixture(srcs, STABLE_CPT, budget=1000)


def test_bad_inputs_are_rejected():
    srcs = [MixSource("a", "medical", {"zh": 100, "en": 100}), MixSource("b", "general", {"zh": 10, "en": 10})]
    with pytest.raises(MixingError):
        plan_mixture(srcs, STABLE_CPT, budget=0)
    with pytest.raises(MixingError):
        plan_mixture(srcs, MixTargets({"medical": -1, "general": 1}, {"zh": 1}), budget=10)
    with pytest.raises(MixingError, match="limit"):
        plan_mixture(srcs, STABLE_CPT, budget=100_000, max_epochs=4)


def test_untargeted_languages_are_left_out_with_a_note():
    srcs = [MixSource("a", "medical", {"zh": 1000, "en": 1000, "fr": 500}), MixSource("b", "general", {"zh": 100, "en": 100})]
    plan = plan_mixture(srcs, STABLE_CPT, budget=1000)
    assert all(c.lang != "fr" for c in plan.cells)
    assert any("fr" in n for n in plan.notes)


def test_shards_cover_the_mixture_in_order(pools):
    tags = {"med_zh": "medical", "med_en": "medical", "gen_en": "general", "gen_zh": "general"}
    real = realize(plan_mixture(_sources(pools, tags), STABLE_CPT, budget=200_000), {k: pools[k] for k in tags})
    mixed = interleave(real.draws, seed="s")
    assert sorted((d.record_id, d.epoch) for d in mixed) == sorted((d.record_id, d.epoch) for d in real.draws)
    shards = list(shard(mixed, 50_000))
    assert [d for s in shards for d in s] == mixed
    assert all(sum(d.n_tokens for d in s) >= 50_000 for s in shards[:-1])
    assert len(shards) >= 4
