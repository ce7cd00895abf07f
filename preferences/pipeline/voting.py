"""Voting over judges and reward models (SF-Med, docs/METHODS.md 3.3-3.4), plain Python + numpy.

Strength of a pair = mean over K voters of r_k(chosen) - r_k(rejected). The lowest `flip_frac`
(SF-Med: 10%) are taken as mislabelled and swapped; the highest `drop_frac` (10%) are removed as
too easy. Voters are trained reward models, or (the cheaper variant) K judges' scores.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

FLIP = "flip"
DROP = "drop"
KEEP = "keep"
UNSCORED = "unscored"

# SF-Med (docs/METHODS.md 3.4): lowest 10% flipped, highest 10% dropped.
DEFAULT_FLIP_FRAC = 0.10
DEFAULT_DROP_FRAC = 0.10


def best_worst_by_vote(scores: Sequence[Sequence[float]]) -> dict[str, Any]:
    """scores[k][i]: judge k's score of answer i. Each judge votes for its best and its worst answer.

    A judge whose top (or bottom) score is shared splits its vote evenly among the tied answers.
    An answer needs a strict majority of the K judges to be "best" (or "worst"); otherwise None,
    and the caller keeps the item apart as a tie instead of forcing an order.
    """
    k = len(scores)
    n = len(scores[0]) if k else 0
    best_votes = [0.0] * n
    worst_votes = [0.0] * n
    for row in scores:
        hi, lo = max(row), min(row)
        top = [i for i, s in enumerate(row) if s == hi]
        bottom = [i for i, s in enumerate(row) if s == lo]
        if hi == lo:
            continue  # this judge sees no difference: it abstains
        for i in top:
            best_votes[i] += 1 / len(top)
        for i in bottom:
            worst_votes[i] += 1 / len(bottom)
    half = k / 2
    best = max(range(n), key=lambda i: best_votes[i]) if n else None
    worst = max(range(n), key=lambda i: worst_votes[i]) if n else None
    return {
        "best": best if best is not None and best_votes[best] > half else None,
        "worst": worst if worst is not None and worst_votes[worst] > half else None,
        "best_votes": best_votes,
        "worst_votes": worst_votes,
    }


def preference_strengths(
    chosen: Sequence[Sequence[float | None]], rejected: Sequence[Sequence[float | None]]
) -> list[float | None]:
    """chosen[k][p], rejected[k][p]: voter k's reward (or judge score) of pair p's two answers.

    Returns mean_k (chosen - rejected) per pair, over the voters that scored both answers;
    None where no voter did (a failed judge is left out, never counted as 0).
    """
    if len(chosen) != len(rejected):
        raise ValueError("chosen and rejected need the same number of voters")
    if not chosen:
        return []
    c = np.array(chosen, dtype=float)  # None -> nan
    r = np.array(rejected, dtype=float)
    if c.shape != r.shape:
        raise ValueError("chosen and rejected need the same number of pairs per voter")
    d = c - r
    n = (~np.isnan(d)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(d, axis=0) / n
    return [None if k == 0 else float(m) for m, k in zip(mean, n)]


def select_by_strength(
    strengths: Sequence[float | None], *, flip_frac: float = DEFAULT_FLIP_FRAC, drop_frac: float = DEFAULT_DROP_FRAC
) -> list[str]:
    """Action per pair: flip the lowest `flip_frac`, drop the highest `drop_frac`, keep the rest.

    Fractions are of the scored pairs, rounded down; equal strengths are ranked by position so the
    result is deterministic. Unscored pairs are left alone ("unscored").
    """
    if not (0 <= flip_frac <= 1 and 0 <= drop_frac <= 1 and flip_frac + drop_frac <= 1):
        raise ValueError("flip_frac and drop_frac must lie in [0, 1] and sum to at most 1")
    s = np.array([np.nan if v is None else v for v in strengths], dtype=float)
    scored = np.flatnonzero(~np.isnan(s))
    order = scored[np.argsort(s[scored], kind="stable")]
    n = len(order)
    n_flip = int(math.floor(flip_frac * n + 1e-9))
    n_drop = int(math.floor(drop_frac * n + 1e-9))
    actions = np.full(len(s), KEEP, dtype=object)
    actions[np.isnan(s)] = UNSCORED
    actions[order[:n_flip]] = FLIP
    if n_drop:
        actions[order[n - n_drop :]] = DROP
    return actions.tolist()


def histogram(values: Sequence[float | None], bins: int = 20) -> dict[str, Any]:
    """Counts of the strength distribution for the plot (edges + counts), ignoring None."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"edges": [], "counts": []}
    lo, hi = min(xs), max(xs)
    if hi == lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    counts = [0] * bins
    for x in xs:
        counts[min(int((x - lo) / width), bins - 1)] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}
