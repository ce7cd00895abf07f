"""MinHash-LSH near-duplicate search against exact Jaccard on shared data with planted duplicates."""
import json
import os
import random
from pathlib import Path

import pytest

from curation.pipeline.minhash import MinHashConfig, choose_keeper, find_near_duplicates
from curation.pipeline.textutil import is_cjk_text, ngrams, normalize, tokens

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def _load(name, field, limit):
    out = []
    with open(DATA / name, encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)[field]
            if len(text) > 200:
                out.append(text)
            if len(out) >= limit:
                break
    return out


def _mutate(text, rate, rng):
    """Replace/delete/insert about `rate` of the tokens (characters for zh, words for en)."""
    cjk = is_cjk_text(text)
    units = list(text) if cjk else text.split()
    pool = list("的一是在不了有和人这中大为上个国我以要他") if cjk else "the of and to in a is was for on that with as by".split()
    out = []
    for u in units:
        r = rng.random()
        if r < rate / 3:
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice(pool))
            continue
        out.append(u)
        if r < rate:
            out.append(rng.choice(pool))
    return ("" if cjk else " ").join(out)


def _exact(a, b, cfg):
    """Reference Jaccard, independent of the hashed implementation: Python sets of n-gram strings."""
    def grams(t):
        n = cfg.ngram_zh if is_cjk_text(t) else cfg.ngram_en
        return set(ngrams(tokens(normalize(t), normalized=True), n))

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


@pytest.fixture(scope="module")
def planted():
    rng = random.Random(7)
    zh = _load("general_zh.jsonl", "text", 250)
    en = _load("general_en.jsonl", "text", 250)
    texts = zh + en
    n_orig = len(texts)
    pairs = []
    for i in rng.sample(range(n_orig), 240):
        rate = rng.choice([0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.35])
        texts.append(_mutate(texts[i], rate, rng))
        pairs.append((i, len(texts) - 1))
    return texts, pairs


def test_recall_at_0_8_and_no_false_positives_below_0_5(planted):
    texts, pairs = planted
    cfg = MinHashConfig()
    res = find_near_duplicates(texts, cfg)
    truth = {p: _exact(texts[p[0]], texts[p[1]], cfg) for p in pairs}
    high = [p for p, j in truth.items() if j >= 0.8]
    assert len(high) >= 60, "the planted set must contain enough pairs above the threshold"
    assert any(j < 0.5 for j in truth.values()), "and pairs well below it"
    found = sum(1 for p in high if p in res.pairs)
    assert found / len(high) >= 0.95
    # every reported pair is checked against the independent reference
    reported_j = [_exact(texts[i], texts[j], cfg) for i, j in res.pairs]
    assert sum(1 for j in reported_j if j < 0.5) <= 0.01 * max(len(reported_j), 1)
    for (i, j), sim in res.pairs.items():
        assert sim == pytest.approx(_exact(texts[i], texts[j], cfg), abs=1e-9)


def test_sketching_in_blocks_gives_the_same_result(planted, monkeypatch):
    from curation.pipeline import minhash

    texts, _ = planted
    cfg = MinHashConfig(verify="estimate")
    whole = find_near_duplicates(texts, cfg)
    monkeypatch.setattr(minhash, "SKETCH_BLOCK", 37)  # blocks that split the planted pairs
    blocks = find_near_duplicates(texts, cfg)
    assert blocks.pairs == whole.pairs and blocks.dropped() == whole.dropped() and len(whole.pairs) >= 60


def test_estimate_verification_has_few_false_positives_below_0_5(planted):
    texts, pairs = planted
    cfg = MinHashConfig(verify="estimate")
    res = find_near_duplicates(texts, cfg)
    reported_j = [_exact(texts[i], texts[j], cfg) for i, j in res.pairs]
    assert reported_j, "estimate verification must still find the planted duplicates"
    assert sum(1 for j in reported_j if j < 0.5) <= 0.01 * len(reported_j)


def test_clusters_keep_one_member_by_policy():
    base = "高血压患者应当低盐饮食，规律服药，定期监测血压，并且注意休息和适量运动，避免情绪激动。" * 3
    texts = [base, base + "谢谢。", "完全不同的一段话，讲的是糖尿病患者的饮食控制和运动疗法的注意事项以及胰岛素的使用。" * 2, base]
    res = find_near_duplicates(texts, policy="first")
    assert res.clusters() == {0: [0, 1, 3]}
    assert res.dropped() == {1, 3}
    res = find_near_duplicates(texts, policy="longest")
    assert res.dropped() == {0, 3}
    res = find_near_duplicates(texts, policy="score", scores={0: 0.1, 1: 0.2, 3: 0.9})
    assert res.dropped() == {0, 1}
    assert res.decisions[0].duplicate_of == 3


def test_score_policy_needs_scores_and_ranks_unscored_last():
    with pytest.raises(ValueError, match="scorer run"):
        choose_keeper([1, 2], "score")
    assert choose_keeper([1, 2, 3], "score", scores={2: None, 3: 0.5}) == 3
    with pytest.raises(ValueError, match="unknown keep policy"):
        choose_keeper([1, 2], "newest")


def test_per_source_then_merged():
    a = "The patient presented with chest pain radiating to the left arm and was given aspirin before transfer to the cardiology ward for further evaluation."
    b = "A completely different note about a child with fever, cough and a runny nose for three days, treated with fluids and rest at home by the parents."
    texts = [a, a + " Stable.", b, a, b + " Recovered."]
    sources = ["s1", "s1", "s1", "s2", "s2"]
    res = find_near_duplicates(texts, sources=sources)
    stages = {i: d.stage for i, d in res.decisions.items() if not d.keep}
    # within s1: 1 duplicates 0; after merging: 3 (s2) duplicates 0 and 4 (s2) duplicates 2
    assert stages == {1: "source", 3: "merged", 4: "merged"}
    assert res.decisions[3].duplicate_of == 0 and res.decisions[4].duplicate_of == 2


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of bands"):
        MinHashConfig(num_perm=100, bands=32)
    with pytest.raises(ValueError, match="unknown minhash settings"):
        MinHashConfig.from_params({"num_perms": 64})
    cfg = MinHashConfig.from_params({"num_perm": "64", "bands": "16", "threshold": "0.7"})
    assert (cfg.num_perm, cfg.rows, cfg.threshold) == (64, 4, 0.7)
    assert MinHashConfig().candidate_probability(0.8) >= 0.95


def test_empty_and_short_texts_are_not_duplicates_of_everything():
    res = find_near_duplicates(["", "", "短", "a b", "另一段完全不同而且足够长的文本内容用于测试"])
    assert all(d.index not in (0, 1) for d in res.decisions.values())


def test_batch_sketch_equals_per_text_signatures(planted):
    import numpy as np

    from curation.pipeline.minhash import shingle_sets, signatures, sketch

    texts = planted[0][:200] + ["", "短", "a b", "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ text", "full-width abc 123 text"]
    cfg = MinHashConfig()
    fast, counts = sketch(texts, cfg)
    grams = shingle_sets(texts, cfg)
    slow = signatures(grams, cfg)
    assert np.array_equal(fast, slow)
    assert np.array_equal(fast[-1], fast[-2]), "NFKC: full-width and ASCII forms sketch the same"
    assert counts[200] == 0 and counts[201] == 1


def test_numpy_tokeniser_matches_the_regex_tokeniser(planted):
    from curation.pipeline.minhash import _norm_tokens, batch_tokens
    from curation.pipeline.textutil import is_cjk_text

    texts = planted[0][:150] + ["", "İstanbul ǅ ﬁne Ｆｕｌｌ １２３", "a\x00b", "𠀀𠀁 abc 高血压 x_y 3.5mg"]
    flat, counts, cjk = batch_tokens(texts)
    assert [int(c) for c in counts] == [len(_norm_tokens(t.replace("\x00", " "))) for t in texts]
    assert [bool(c) for c in cjk[:150]] == [is_cjk_text(t) for t in texts[:150]]
    # equal tokens hash equal, different tokens differ (here: within one text)
    f2, c2, _ = batch_tokens(["abc 高 abc x", "高"])
    assert f2[0] == f2[2] and f2[1] == f2[4] and len({int(f2[0]), int(f2[1]), int(f2[3])}) == 3
