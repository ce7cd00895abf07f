"""Inter-annotator agreement and the consensus rule (plain Python, no Django import).

Inputs are always `ratings: {unit: {annotator: value}}` where a unit is an item (or an item's
turn) and an annotator is any string ("user:7", "model:gpt-4o#1", "scorer:deita#3"), so agreement
between two clinicians, a clinician and a judge, or a clinician and a scorer is one computation.

The statistics come from well-kept libraries: Cohen's and weighted kappa from scikit-learn,
Fleiss' kappa from statsmodels, Krippendorff's alpha from `krippendorff`. This module only
arranges the data for them and handles the degenerate cases (too few shared units, one category)
by returning None instead of a NaN or an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Hashable, Mapping

Ratings = Mapping[Hashable, Mapping[str, Any]]

# docs/METHODS.md 1.1 and 1.3: documents whose two scores differ by about 2 points or more are dropped
# (DataRater labels); documents whose two domain labels differ are dropped (classifier labels).
DEFAULT_CONSENSUS_THRESHOLD = 2.0


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _pairs(ratings: Ratings, a: str, b: str) -> tuple[list, list]:
    xs, ys = [], []
    for per in ratings.values():
        if a in per and b in per and per[a] is not None and per[b] is not None:
            xs.append(per[a])
            ys.append(per[b])
    return xs, ys


def cohen_kappa(xs: list, ys: list, *, weights: str | None = None) -> float | None:
    """Cohen's kappa (weights=None) or weighted kappa ("linear" / "quadratic") via scikit-learn.

    None when undefined: fewer than two shared units, or both annotators used one single
    category (expected agreement 1, kappa 0/0).
    """
    if len(xs) != len(ys):
        raise ValueError("the two annotators' label lists differ in length")
    if len(xs) < 2:
        return None
    if weights is None:
        xs, ys = [str(x) for x in xs], [str(y) for y in ys]
    if len(set(xs) | set(ys)) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    import warnings

    labels = None
    if weights is not None and all(float(v).is_integer() for v in list(xs) + list(ys)):
        # scikit-learn weights by position in `labels`, not by value: without the full run of
        # integers, ratings 0 and 5 would count as neighbours when nobody used 1-4.
        lo, hi = int(min(min(xs), min(ys))), int(max(max(xs), max(ys)))
        labels = list(range(lo, hi + 1))
        xs, ys = [int(v) for v in xs], [int(v) for v in ys]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _clean(cohen_kappa_score(xs, ys, labels=labels, weights=weights))


def fleiss_kappa(ratings: Ratings, *, n_raters: int | None = None) -> tuple[float | None, int, int]:
    """Fleiss' kappa via statsmodels over the units rated by exactly `n_raters` annotators.

    Fleiss needs the same number of ratings per unit; by default the most common count is used
    and units with another count are left out. Returns (kappa, units used, raters per unit).
    """
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa as sm_fleiss

    rows = [[v for v in per.values() if v is not None] for per in ratings.values()]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return None, 0, 0
    if n_raters is None:
        counts: dict[int, int] = {}
        for r in rows:
            counts[len(r)] = counts.get(len(r), 0) + 1
        n_raters = max(counts, key=lambda k: (counts[k], k))
    rows = [r for r in rows if len(r) == n_raters]
    if len(rows) < 2:
        return None, len(rows), n_raters
    cats = sorted({str(v) for r in rows for v in r})
    if len(cats) < 2:
        return None, len(rows), n_raters
    index = {c: i for i, c in enumerate(cats)}
    data = np.array([[index[str(v)] for v in r] for r in rows])
    table, _ = aggregate_raters(data, n_cat=len(cats))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _clean(sm_fleiss(table, method="fleiss")), len(rows), n_raters


def krippendorff_alpha(ratings: Ratings, *, level: str = "ordinal", annotators: list[str] | None = None) -> float | None:
    """Krippendorff's alpha via the `krippendorff` package; missing ratings are allowed.

    Nominal values may be any hashable (they are coded to integers); ordinal/interval values must be
    numbers. None when fewer than two units carry two or more ratings, or only one value occurs.
    """
    import numpy as np
    import krippendorff

    annotators = annotators or sorted({a for per in ratings.values() for a in per})
    units = [u for u, per in ratings.items() if sum(1 for a in annotators if per.get(a) is not None) >= 2]
    if len(units) < 2 or len(annotators) < 2:
        return None
    values = {ratings[u][a] for u in units for a in annotators if ratings[u].get(a) is not None}
    if len(values) < 2:
        return None
    if level == "nominal":
        code = {v: i for i, v in enumerate(sorted(values, key=str))}
        conv = lambda v: float(code[v])  # noqa: E731
        domain = sorted(code.values())
    else:
        conv = float
        # Ordinal alpha ranks over the value domain; give it the values actually seen.
        domain = sorted(float(v) for v in values)
    data = np.full((len(annotators), len(units)), np.nan)
    for j, u in enumerate(units):
        for i, a in enumerate(annotators):
            v = ratings[u].get(a)
            if v is not None:
                data[i, j] = conv(v)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _clean(krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                                         value_domain=domain if level != "interval" else None))


@dataclass
class PairAgreement:
    a: str
    b: str
    n: int  # shared units
    kappa: float | None  # Cohen (nominal) or weighted kappa (ordinal)
    alpha: float | None  # Krippendorff's alpha on the two annotators alone
    exact: float | None  # share of shared units with identical values
    mean_abs_diff: float | None = None  # ordinal only
    spearman: float | None = None  # ordinal only: scale-free, the fair view of a scorer vs clinicians


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho via SciPy; None below three pairs or when either side is constant."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    from scipy.stats import spearmanr

    return _clean(float(spearmanr(xs, ys).statistic))


@dataclass
class AgreementReport:
    level: str
    annotators: list[str]
    pairs: list[PairAgreement] = field(default_factory=list)
    fleiss: float | None = None  # nominal only
    fleiss_units: int = 0
    alpha: float | None = None  # all annotators together
    n_units: int = 0

    def matrix(self, stat: str = "kappa") -> list[list[float | None]]:
        """Square matrix over `annotators` (diagonal None) of one pairwise statistic."""
        idx = {a: i for i, a in enumerate(self.annotators)}
        m: list[list[float | None]] = [[None] * len(self.annotators) for _ in self.annotators]
        for p in self.pairs:
            v = getattr(p, stat)
            m[idx[p.a]][idx[p.b]] = v
            m[idx[p.b]][idx[p.a]] = v
        return m

    def pair(self, a: str, b: str) -> PairAgreement | None:
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p
        return None


def _to_number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def agreement_report(ratings: Ratings, *, level: str, weights: str = "quadratic", round_for_kappa: bool = True) -> AgreementReport:
    """Pairwise and overall agreement on one field.

    level "nominal": Cohen's kappa per pair, Fleiss' kappa overall, nominal alpha.
    level "ordinal": weighted kappa per pair (quadratic weights by default), ordinal alpha.
    Non-integer ratings (a scorer's 3.7, a mean over turns) are rounded for kappa only, since kappa
    needs categories; alpha and the mean absolute difference use the raw values.
    """
    annotators = sorted({a for per in ratings.values() for a, v in per.items() if v is not None})
    rep = AgreementReport(level=level, annotators=annotators)
    rep.n_units = sum(1 for per in ratings.values() if sum(v is not None for v in per.values()) >= 2)
    for a, b in combinations(annotators, 2):
        xs, ys = _pairs(ratings, a, b)
        n = len(xs)
        if level == "nominal":
            kappa = cohen_kappa(xs, ys)
            mad = rho = None
        else:
            fx, fy = [_to_number(x) for x in xs], [_to_number(y) for y in ys]
            keep = [(x, y) for x, y in zip(fx, fy) if x is not None and y is not None]
            fx, fy = [k[0] for k in keep], [k[1] for k in keep]
            n = len(fx)
            if round_for_kappa:
                kappa = cohen_kappa([int(round(x)) for x in fx], [int(round(y)) for y in fy], weights=weights)
            else:
                kappa = cohen_kappa(fx, fy, weights=weights)
            mad = sum(abs(x - y) for x, y in zip(fx, fy)) / n if n else None
            rho = _spearman(fx, fy)
        two = {u: {a: per[a], b: per[b]} for u, per in ratings.items() if per.get(a) is not None and per.get(b) is not None}
        alpha = krippendorff_alpha(two, level=level, annotators=[a, b]) if n >= 2 else None
        exact = (sum(1 for x, y in zip(xs, ys) if x == y) / len(xs)) if xs else None
        rep.pairs.append(PairAgreement(a=a, b=b, n=n, kappa=kappa, alpha=alpha, exact=exact, mean_abs_diff=mad,
                                       spearman=rho))
    if level == "nominal":
        rep.fleiss, rep.fleiss_units, _ = fleiss_kappa(ratings)
    rep.alpha = krippendorff_alpha(ratings, level=level, annotators=annotators)
    return rep


# ---------------------------------------------------------------------------------- consensus

AGREED = "agreed"
DISAGREED = "disagreed"
PENDING = "pending"
ADJUDICATED = "adjudicated"


@dataclass
class ConsensusItem:
    unit: Hashable
    status: str  # agreed | disagreed | pending | adjudicated
    value: Any  # the consensus value (None unless agreed or adjudicated)
    values: list[Any]
    spread: float | None = None  # max - min for ordinal ratings


def consensus(ratings: Ratings, *, level: str, threshold: float = DEFAULT_CONSENSUS_THRESHOLD, min_labels: int = 2,
              adjudicated: Mapping[Hashable, Any] | None = None) -> dict[Hashable, ConsensusItem]:
    """The papers' rule (docs/METHODS.md 1.1, 1.3): an item with ratings that differ by `threshold`
    or more (max - min, ordinal) or with differing labels (nominal) is set aside; otherwise its
    consensus value is the mean rating (ordinal) or the shared label (nominal). Items with fewer
    than `min_labels` ratings are pending. A curator's adjudication overrides the rule.
    """
    adjudicated = adjudicated or {}
    out: dict[Hashable, ConsensusItem] = {}
    for unit, per in ratings.items():
        vals = [v for v in per.values() if v is not None]
        if unit in adjudicated and adjudicated[unit] is not None:
            out[unit] = ConsensusItem(unit, ADJUDICATED, adjudicated[unit], vals)
            continue
        if len(vals) < min_labels:
            out[unit] = ConsensusItem(unit, PENDING, None, vals)
            continue
        if level == "nominal":
            same = len({str(v) for v in vals}) == 1
            out[unit] = ConsensusItem(unit, AGREED if same else DISAGREED, vals[0] if same else None, vals)
        else:
            nums = [float(v) for v in vals]
            spread = max(nums) - min(nums)
            # A tiny epsilon so that 3.0 vs 1.0 with threshold 2 counts as "differ by 2" even when
            # the ratings are means that came out as 2.9999999.
            agreed = spread < threshold - 1e-9
            out[unit] = ConsensusItem(unit, AGREED if agreed else DISAGREED,
                                      (sum(nums) / len(nums)) if agreed else None, vals, spread)
    return out
