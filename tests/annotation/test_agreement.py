"""Agreement statistics and the consensus rule, checked against hand computations.

Each expected value below is worked out by hand in the comment above it (the formulas are the
textbook ones), so a wrong arrangement of data for the libraries would fail.
"""
from fractions import Fraction

import pytest

from medstudio.annotation.agreement import (
    ADJUDICATED, AGREED, DISAGREED, PENDING, agreement_report, cohen_kappa, consensus,
    fleiss_kappa, krippendorff_alpha,
)


def test_cohen_kappa_matches_hand_computation():
    a = ["m", "m", "m", "g", "g", "m", "g", "m", "m", "g"]
    b = ["m", "m", "g", "g", "g", "m", "m", "m", "m", "g"]
    # po = 8/10; both annotators 6 m / 4 g: pe = .6*.6 + .4*.4 = .52; kappa = .28/.48 = 7/12
    assert cohen_kappa(a, b) == pytest.approx(7 / 12)


def test_quadratic_weighted_kappa_matches_hand_computation():
    a = [1, 2, 3, 1, 2, 3]
    b = [1, 2, 3, 2, 3, 1]
    # observed sum w*O = (0+0+0+1+1+4)/6 = 1; uniform marginals: sum w*E = (1/9)*12 = 4/3
    # kappa = 1 - 1/(4/3) = 1/4
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.25)


def test_cohen_kappa_undefined_cases_return_none():
    assert cohen_kappa(["x"], ["x"]) is None  # one unit
    assert cohen_kappa(["x", "x", "x"], ["x", "x", "x"]) is None  # one category: 0/0
    with pytest.raises(ValueError):
        cohen_kappa(["x", "y"], ["x"])


def test_fleiss_kappa_matches_hand_computation():
    ratings = {
        1: {"r1": "x", "r2": "x", "r3": "x"},
        2: {"r1": "x", "r2": "x", "r3": "y"},
        3: {"r1": "y", "r2": "y", "r3": "y"},
        4: {"r1": "x", "r2": "y", "r3": "y"},
        5: {"r1": "x", "r2": "y"},  # only two raters: left out (Fleiss needs equal counts)
    }
    # P_i = 1, 1/3, 1, 1/3 -> Pbar = 2/3; p_x = p_y = 1/2 -> Pe = 1/2; kappa = (1/6)/(1/2) = 1/3
    kappa, used, n = fleiss_kappa(ratings)
    assert (used, n) == (4, 3)
    assert kappa == pytest.approx(1 / 3)


def test_krippendorff_interval_alpha_matches_hand_computation():
    ratings = {"u1": {"a": 1, "b": 1}, "u2": {"a": 2, "b": 3}, "u3": {"a": 3, "b": 3}}
    # n = 6 pairable values. Do = (1/6) * ((2-3)^2 + (3-2)^2) = 1/3.
    # De = ordered squared differences over all value pairs / (6*5) = 58/30. alpha = 1 - 15/87 = 24/29
    assert krippendorff_alpha(ratings, level="interval") == pytest.approx(24 / 29)


def test_krippendorff_nominal_alpha_with_missing_matches_hand_computation():
    ratings = {
        "u1": {"a": "p", "b": "p"},
        "u2": {"a": "p", "b": "q"},
        "u3": {"a": "q", "b": "q"},
        "u4": {"a": "q"},  # one rating only: not pairable, must not change alpha
    }
    # Do = (1/6)*2 = 1/3; De = (3*3*2)/(6*5) = 3/5; alpha = 1 - 5/9 = 4/9
    assert krippendorff_alpha(ratings, level="nominal") == pytest.approx(4 / 9)


def test_krippendorff_ordinal_alpha_matches_hand_computation():
    ratings = {"u1": {"a": 1, "b": 1}, "u2": {"a": 1, "b": 2}, "u3": {"a": 2, "b": 3}, "u4": {"a": 3, "b": 3}}
    # n_1 = 3, n_2 = 2, n_3 = 3. Ordinal delta^2(c,k) = (sum_{g=c..k} n_g - (n_c+n_k)/2)^2:
    # d(1,2) = 2.5^2, d(2,3) = 2.5^2, d(1,3) = 5^2.  Do = (1/8)(2*6.25 + 2*6.25) = 25/8.
    # De = (1/56) * 2 * (3*2*6.25 + 2*3*6.25 + 3*3*25) = 600/56.  alpha = 1 - (25/8)/(600/56) = 17/24
    assert krippendorff_alpha(ratings, level="ordinal") == pytest.approx(float(Fraction(17, 24)))


def test_report_has_pairwise_matrix_including_a_judge():
    ratings = {
        i: {"user:1": s1, "user:2": s2, "model:judge#1": s3}
        for i, (s1, s2, s3) in enumerate([(0, 0, 1), (1, 1, 1), (2, 3, 2), (3, 3, 3), (4, 5, 4), (5, 5, 5)])
    }
    rep = agreement_report(ratings, level="ordinal")
    assert rep.annotators == ["model:judge#1", "user:1", "user:2"]
    p = rep.pair("user:1", "user:2")
    assert p.n == 6
    assert p.kappa == pytest.approx(cohen_kappa([0, 1, 2, 3, 4, 5], [0, 1, 3, 3, 5, 5], weights="quadratic"))
    assert p.mean_abs_diff == pytest.approx(2 / 6)
    m = rep.matrix("kappa")
    assert m[1][2] == m[2][1] == p.kappa and m[0][0] is None
    assert rep.alpha is not None and 0 < rep.alpha <= 1


def test_nominal_report_uses_fleiss_and_cohen():
    ratings = {
        1: {"r1": "x", "r2": "x", "r3": "x"},
        2: {"r1": "x", "r2": "x", "r3": "y"},
        3: {"r1": "y", "r2": "y", "r3": "y"},
        4: {"r1": "x", "r2": "y", "r3": "y"},
    }
    rep = agreement_report(ratings, level="nominal")
    assert rep.fleiss == pytest.approx(1 / 3)
    # r1 vs r2: x/x, x/x, y/y, x/y -> po = 3/4; r1 3x1y, r2 2x2y -> pe = 3/8+1/8 = 1/2 -> kappa 1/2
    assert rep.pair("r1", "r2").kappa == pytest.approx(0.5)


def test_consensus_excludes_exactly_the_items_the_rule_excludes():
    ratings = {
        "same": {"a": 3, "b": 3},
        "off1": {"a": 3, "b": 4},
        "off2": {"a": 1, "b": 3},
        "off3": {"a": 5, "b": 2},
        "three": {"a": 2, "b": 3, "c": 4},  # spread 2 across three raters
        "alone": {"a": 4},
        "fixed": {"a": 0, "b": 5},
    }
    out = consensus(ratings, level="ordinal", adjudicated={"fixed": 1})
    assert {k for k, v in out.items() if v.status == DISAGREED} == {"off2", "off3", "three"}
    assert out["same"].value == 3 and out["off1"].value == 3.5 and out["off1"].status == AGREED
    assert out["alone"].status == PENDING
    assert (out["fixed"].status, out["fixed"].value) == (ADJUDICATED, 1)
    # the threshold is editable: with 1, items one point apart are set aside too
    strict = consensus(ratings, level="ordinal", threshold=1)
    assert {k for k, v in strict.items() if v.status == DISAGREED} == {"off1", "off2", "off3", "three", "fixed"}


def test_consensus_on_labels_requires_identical_labels():
    out = consensus({1: {"a": "medical", "b": "medical"}, 2: {"a": "medical", "b": "general"}}, level="nominal")
    assert (out[1].status, out[1].value) == (AGREED, "medical")
    assert out[2].status == DISAGREED and out[2].value is None


def test_weighted_kappa_weighs_by_value_even_when_middle_ratings_are_unused():
    a = [0, 0, 5, 5, 0]
    b = [0, 5, 5, 5, 0]
    # categories 0..5, only 0 and 5 used. Quadratic weights (i-j)^2: O = one (0,5) disagreement of 5:
    # sum w*O = 25/5 = 5. Marginals a: 0 x3, 5 x2; b: 0 x2, 5 x3 -> E(0,5) = 3*3/25, E(5,0) = 2*2/25
    # sum w*E = 25 * 13/25 = 13. kappa = 1 - 5/13 = 8/13 (it would be the same with positions here,
    # but not once a third value shows up:)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(8 / 13)
    a2, b2 = [0, 0, 5, 5, 1], [0, 5, 5, 5, 1]
    # values 0,1,5 -> with value distances: O: (0,5) once -> 25/5 = 5.
    # marginals a2: 0:2, 1:1, 5:2; b2: 0:1, 1:1, 5:3. sum over i,j of a_i*b_j*(i-j)^2 / 25:
    # a0: b1*(0) + b1(1)*1 + b3(5)*25*... computed: 2*(1*0 + 1*1 + 3*25) + 1*(1*1 + 1*0 + 3*16) + 2*(1*25 + 1*16 + 3*0)
    expected_e = (2 * (0 + 1 + 75) + 1 * (1 + 0 + 48) + 2 * (25 + 16 + 0)) / 25
    assert cohen_kappa(a2, b2, weights="quadratic") == pytest.approx(1 - 5 / expected_e)
