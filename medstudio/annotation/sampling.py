"""Samples for labelling queues (plain Python, no Django import).

Deterministic given a seed, so a curator can rebuild the same queue and a test can check it.
"""
from __future__ import annotations

import random
from typing import Hashable, Sequence


def random_sample(ids: Sequence[int], n: int, *, seed: int = 0) -> list[int]:
    ids = sorted(ids)
    if n >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, n))


def stratified_sample(rows: Sequence[tuple[int, Hashable]], n: int, *, seed: int = 0) -> list[int]:
    """Proportional allocation across strata (largest remainder), random within each stratum.

    Every stratum that exists gets at least one item when n allows it, so a rare department is
    not left out of a small labelling round.
    """
    strata: dict[Hashable, list[int]] = {}
    for rid, key in rows:
        strata.setdefault("" if key is None else key, []).append(rid)
    total = sum(len(v) for v in strata.values())
    if n >= total:
        return sorted(rid for v in strata.values() for rid in v)
    keys = sorted(strata, key=str)
    quota = {k: n * len(strata[k]) / total for k in keys}
    alloc = {k: int(quota[k]) for k in keys}
    if n >= len(keys):
        for k in keys:
            alloc[k] = max(alloc[k], 1)
    # Hand out (or take back) the remainder by the largest fractional parts, never beyond a stratum's size.
    while sum(alloc.values()) < n:
        k = max((k for k in keys if alloc[k] < len(strata[k])), key=lambda k: (quota[k] - alloc[k], str(k)))
        alloc[k] += 1
    while sum(alloc.values()) > n:
        k = max((k for k in keys if alloc[k] > 1), key=lambda k: (alloc[k] - quota[k], str(k)))
        alloc[k] -= 1
    rng = random.Random(seed)
    out: list[int] = []
    for k in keys:
        members = sorted(strata[k])
        out.extend(rng.sample(members, alloc[k]))
    return sorted(out)


def near_threshold(scored: Sequence[tuple[int, float]], n: int, threshold: float) -> list[int]:
    """The n records whose score lies closest to a threshold: where a curator's cut is least sure."""
    ranked = sorted(scored, key=lambda r: (abs(r[1] - threshold), r[0]))
    return sorted(rid for rid, _ in ranked[:n])
