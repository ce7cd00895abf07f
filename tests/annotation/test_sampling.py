from collections import Counter

from medstudio.annotation.sampling import near_threshold, random_sample, stratified_sample


def test_random_sample_is_deterministic_and_bounded():
    ids = list(range(100))
    a = random_sample(ids, 10, seed=3)
    assert a == random_sample(ids, 10, seed=3) and len(set(a)) == 10
    assert a != random_sample(ids, 10, seed=4)
    assert random_sample(ids[:5], 10) == ids[:5]


def test_stratified_sample_is_proportional_and_keeps_rare_strata():
    rows = [(i, "内科") for i in range(80)] + [(100 + i, "外科") for i in range(18)] + [(200, "儿科"), (201, "儿科")]
    got = stratified_sample(rows, 10, seed=1)
    by = Counter("内科" if r < 100 else "外科" if r < 200 else "儿科" for r in got)
    assert len(got) == 10 and by["儿科"] >= 1
    # quotas 80% / 18% / 2% of 10 = 8 / 1.8 / 0.2 -> floors 8 / 1 / 0; the rare stratum is lifted to 1,
    # which already makes 10, so nothing is left for the largest remainder
    assert by == Counter({"内科": 8, "外科": 1, "儿科": 1})
    # without a rare stratum the remainder goes by the largest fractional part
    got = stratified_sample(rows[:98], 10, seed=1)
    assert Counter(r < 100 for r in got) == Counter({True: 8, False: 2})


def test_near_threshold_picks_closest_scores():
    scored = [(1, 0.1), (2, 2.4), (3, 2.6), (4, 4.9), (5, 2.5), (6, 3.4)]
    assert near_threshold(scored, 3, 2.5) == [2, 3, 5]
