"""Voting math: strengths, flip/drop selection, and the planted-noise check."""
from __future__ import annotations

import random

import pytest

from preferences.pipeline.voting import DROP, FLIP, KEEP, UNSCORED, best_worst_by_vote, histogram, preference_strengths, select_by_strength


def test_strength_is_mean_over_voters_of_reward_difference():
    chosen = [[3.0, 1.0], [5.0, None]]
    rejected = [[1.0, 2.0], [2.0, 0.0]]
    assert preference_strengths(chosen, rejected) == [2.5, -1.0]
    assert preference_strengths([[None]], [[1.0]]) == [None]


def test_select_flips_lowest_and_drops_highest_fractions():
    s = [0.5, -2.0, 3.0, 0.1, None, 1.0, 0.2, 0.3, 0.4, 0.6, 0.7]
    actions = select_by_strength(s, flip_frac=0.1, drop_frac=0.2)
    # 10 scored pairs: floor(1.0) flipped, floor(2.0) dropped.
    assert actions[1] == FLIP and actions[2] == DROP and actions[5] == DROP and actions[4] == UNSCORED
    assert Counter_of(actions) == {FLIP: 1, DROP: 2, KEEP: 7, UNSCORED: 1}
    assert set(select_by_strength(s, flip_frac=0, drop_frac=0)) == {KEEP, UNSCORED}
    with pytest.raises(ValueError):
        select_by_strength(s, flip_frac=0.7, drop_frac=0.5)


def Counter_of(xs):
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def test_planted_label_noise_is_mostly_what_gets_flipped():
    """Synthetic set: each answer has a latent quality; 10% of pairs are planted with swapped labels.
    K noisy voters (reward = quality + voter noise) should put the planted pairs at the bottom."""
    rng = random.Random(0)
    n, k = 500, 5
    q_chosen, q_rejected, planted = [], [], set()
    for i in range(n):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        hi, lo = max(a, b) + 0.5, min(a, b)
        if rng.random() < 0.1:
            hi, lo = lo, hi
            planted.add(i)
        q_chosen.append(hi)
        q_rejected.append(lo)
    chosen = [[q + rng.gauss(0, 0.5) for q in q_chosen] for _ in range(k)]
    rejected = [[q + rng.gauss(0, 0.5) for q in q_rejected] for _ in range(k)]
    actions = select_by_strength(preference_strengths(chosen, rejected))
    flipped = {i for i, a in enumerate(actions) if a == FLIP}
    assert len(flipped) == n // 10
    precision = len(flipped & planted) / len(flipped)
    assert precision > 0.7, precision
    # A random flip of the same size would hit planted pairs ~10% of the time.
    dropped = {i for i, a in enumerate(actions) if a == DROP}
    assert len(dropped & planted) == 0


def test_best_worst_vote_needs_a_strict_majority():
    v = best_worst_by_vote([[1, 5, 3], [2, 4, 1], [5, 1, 3]])
    assert v["best"] == 1 and v["worst"] is None  # worst votes: 0, 1, 2 -> 1 of 3 each way, no majority
    assert v["worst_votes"] == [1.0, 1.0, 1.0]
    assert best_worst_by_vote([[3, 3], [3, 3]])["best"] is None  # all abstain


def test_histogram_counts_everything():
    h = histogram([0.0, 0.5, 1.0, None, 1.0], bins=4)
    assert sum(h["counts"]) == 4 and h["counts"][-1] == 2 and len(h["edges"]) == 5
