"""CPT mixture planner (pure Python, no Django).

docs/METHODS.md section 1.6, two-stage mixing, both ratios counted in tokens:
  * Stable CPT: high-quality medical : general = 19 : 1, Chinese : English = 1 : 9.
  * Boost CPT:  very-high-quality medical : open-source medical SFT = 1 : 1, Chinese : English = 4 : 6.

A curator tags each source (a frozen selection) with a category and gives a token budget. The
planner decides how many tokens to draw from every (source, language) cell so that both marginal
ratios hold, shows how often each source is repeated (epochs > 1 = up-sampling, < 1 = a subset),
and `realize` turns the token plan into concrete record draws whose achieved ratios are reported
next to the targets.

The two marginals (category and language) leave freedom inside the category x language table.
`strategy="independent"` gives every category the same language split (the plain reading of the
papers' two ratios); `strategy="min_epochs"` instead picks the table that minimises the largest
repetition factor of any cell (a small linear programme), which matters when, e.g., Chinese
medical text is scarce but Chinese general text is plentiful. "independent" falls back to
"min_epochs" when a cell it needs is empty. A target language no source has is dropped with a
warning and the remaining language weights renormalised (docs/METHODS.md 1.6).
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Sequence


class MixingError(ValueError):
    """The requested mixture cannot be built from the given sources (message says why)."""


@dataclass(frozen=True)
class MixTargets:
    """Target token ratios; weights need not sum to 1 (19:1 is given as {"medical": 19, "general": 1})."""

    categories: dict[str, float]
    langs: dict[str, float]

    def shares(self) -> tuple[dict[str, float], dict[str, float]]:
        return _normalise(self.categories, "category"), _normalise(self.langs, "language")


# Defaults from docs/METHODS.md 1.6 (CareBot); editable in the app.
STABLE_CPT = MixTargets(categories={"medical": 19.0, "general": 1.0}, langs={"zh": 1.0, "en": 9.0})
BOOST_CPT = MixTargets(categories={"medical": 1.0, "sft": 1.0}, langs={"zh": 4.0, "en": 6.0})
PRESETS: dict[str, MixTargets] = {"stable": STABLE_CPT, "boost": BOOST_CPT}


@dataclass(frozen=True)
class MixSource:
    """One tagged input: its name (e.g. a selection id), category tag and available tokens per language."""

    name: str
    category: str
    tokens_by_lang: dict[str, int]


@dataclass
class CellPlan:
    """What is drawn from one source in one language."""

    source: str
    category: str
    lang: str
    available: int
    planned: float  # tokens, before rounding to whole records

    @property
    def epochs(self) -> float:
        return self.planned / self.available if self.available else 0.0


@dataclass
class MixPlan:
    """`targets` are the ratios the plan meets: the requested ones, less any language no source has
    (its share renormalised away over the others; `missing` says which and what it would have been)."""

    budget: int
    targets: MixTargets
    strategy: str
    cells: list[CellPlan]
    notes: list[str] = field(default_factory=list)
    requested: MixTargets | None = None
    missing: list[dict[str, Any]] = field(default_factory=list)

    def source_epochs(self) -> dict[str, float]:
        """Repetition factor per source over all its languages (what a curator sees first)."""
        drawn: dict[str, float] = {}
        avail: dict[str, int] = {}
        for c in self.cells:
            drawn[c.source] = drawn.get(c.source, 0.0) + c.planned
            avail[c.source] = avail.get(c.source, 0) + c.available
        return {s: (drawn[s] / avail[s] if avail[s] else 0.0) for s in drawn}

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "strategy": self.strategy,
            "targets": asdict(self.targets),
            "requested_targets": asdict(self.requested or self.targets),
            "cells": [dict(asdict(c), epochs=c.epochs) for c in self.cells],
            "source_epochs": self.source_epochs(),
            "notes": list(self.notes),
            "missing": [dict(m) for m in self.missing],
        }


def _normalise(weights: dict[str, float], what: str) -> dict[str, float]:
    if not weights:
        raise MixingError(f"no {what} targets given")
    if any((w is None) or (not math.isfinite(float(w))) or float(w) < 0 for w in weights.values()):
        raise MixingError(f"{what} weights must be finite and >= 0: {weights}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise MixingError(f"{what} weights sum to 0: {weights}")
    return {k: float(v) / total for k, v in weights.items() if float(v) > 0}


def plan_mixture(
    sources: Sequence[MixSource],
    targets: MixTargets,
    budget: int,
    strategy: str = "independent",
    max_epochs: float | None = None,
) -> MixPlan:
    """Split `budget` tokens over sources so that category and language token ratios match `targets`.

    Inside one (category, language) cell, sources are drawn in proportion to what they hold, so
    they all repeat equally often. Tokens in languages or categories without a target are not drawn
    (a note says so). A target language that no source has (no English in a Chinese corpus under
    the default zh:en = 1:9) is not an error: it is reported in `plan.missing` ("0 of N tokens
    planned") and the other languages' weights are renormalised to fill the budget (zh:en = 1:9
    without English -> zh = 100%). Only when no target language is available at all does planning
    fail. `max_epochs` rejects plans that would repeat any cell more often than that.
    """
    if budget <= 0:
        raise MixingError("the token budget must be positive")
    if strategy not in {"independent", "min_epochs"}:
        raise MixingError(f"unknown strategy {strategy!r} (independent | min_epochs)")
    requested = targets
    cat_share, lang_share = targets.shares()
    notes: list[str] = []
    missing: list[dict[str, Any]] = []
    have = {lang for s in sources if s.category in cat_share for lang, n in s.tokens_by_lang.items() if n > 0}
    absent = [lang for lang in lang_share if lang not in have]
    if absent and len(absent) == len(lang_share):
        raise MixingError("no source has tokens in any target language (" + ", ".join(repr(x) for x in absent) + ")")
    if absent:
        for lang in absent:
            missing.append({"lang": lang, "share": lang_share[lang], "tokens": round(budget * lang_share[lang])})
        targets = MixTargets(categories=dict(targets.categories),
                             langs={k: v for k, v in targets.langs.items() if k not in absent})
        cat_share, lang_share = targets.shares()

    avail: dict[tuple[str, str], int] = {}
    for s in sources:
        for lang, n in s.tokens_by_lang.items():
            if n < 0:
                raise MixingError(f"source {s.name}: negative token count for {lang}")
            if s.category not in cat_share or lang not in lang_share:
                if n:
                    notes.append(f"source {s.name}: {n} {lang} tokens in category {s.category!r} have no target and are left out")
                continue
            avail[(s.category, lang)] = avail.get((s.category, lang), 0) + int(n)
    for cat in cat_share:
        if not any(avail.get((cat, lang), 0) for lang in lang_share):
            raise MixingError(f"no source with tokens for category {cat!r} (target share {cat_share[cat]:.1%})")
    for lang in lang_share:
        if not any(avail.get((cat, lang), 0) for cat in cat_share):
            raise MixingError(f"no source with {lang!r} tokens (target share {lang_share[lang]:.1%})")

    cats, langs = list(cat_share), list(lang_share)
    table: dict[tuple[str, str], float] | None = None
    used = strategy
    if strategy == "independent":
        table = {(c, l): budget * cat_share[c] * lang_share[l] for c in cats for l in langs}
        empty = [k for k, v in table.items() if v > 0 and not avail.get(k, 0)]
        if empty:
            notes.append(
                "no tokens for " + ", ".join(f"{c}/{l}" for c, l in empty)
                + ": language split differs between categories (min_epochs plan)"
            )
            table, used = None, "min_epochs"
    if table is None:
        table = _min_epochs_table(cats, langs, cat_share, lang_share, avail, budget)

    cells: list[CellPlan] = []
    for s in sources:
        for lang, n in sorted(s.tokens_by_lang.items()):
            key = (s.category, lang)
            if key not in table or not n:
                continue
            share = n / avail[key]
            cells.append(CellPlan(source=s.name, category=s.category, lang=lang, available=int(n), planned=table[key] * share))
    plan = MixPlan(budget=int(budget), targets=targets, strategy=used, cells=cells, notes=notes, requested=requested,
                   missing=missing)
    if max_epochs is not None:
        worst = max((c.epochs for c in cells), default=0.0)
        if worst > max_epochs:
            raise MixingError(f"plan repeats a source {worst:.2f} times, above the limit of {max_epochs}")
    return plan


def _min_epochs_table(cats, langs, cat_share, lang_share, avail, budget) -> dict[tuple[str, str], float]:
    """LP: minimise t subject to x_cl <= t * avail_cl, row sums = category targets, column sums = language targets."""
    import numpy as np
    from scipy.optimize import linprog  # scipy's HiGHS solver: exact and faster than anything hand-written

    keys = [(c, l) for c in cats for l in langs]
    n = len(keys)
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    a_ub, b_ub = [], []
    bounds = []
    for i, k in enumerate(keys):
        row = np.zeros(n + 1)
        row[i] = 1.0
        row[-1] = -float(avail.get(k, 0))
        a_ub.append(row)
        b_ub.append(0.0)
        bounds.append((0, None) if avail.get(k, 0) else (0, 0))
    bounds.append((0, None))
    a_eq, b_eq = [], []
    for c in cats:
        a_eq.append([1.0 if k[0] == c else 0.0 for k in keys] + [0.0])
        b_eq.append(budget * cat_share[c])
    for l in langs[:-1]:  # the last language column is implied by the others
        a_eq.append([1.0 if k[1] == l else 0.0 for k in keys] + [0.0])
        b_eq.append(budget * lang_share[l])
    res = linprog(cost, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=np.array(a_eq), b_eq=b_eq, bounds=bounds, method="highs")
    if not res.success:
        raise MixingError(f"these sources cannot meet both ratios ({res.message})")
    return {k: max(0.0, float(res.x[i])) for i, k in enumerate(keys)}


# --- from a token plan to concrete records --------------------------------------------------------------


@dataclass(frozen=True)
class RecordRef:
    id: int
    lang: str
    n_tokens: int


@dataclass
class Draw:
    """One drawn record: `epoch` counts repeats of the same record (0 = first copy)."""

    source: str
    category: str
    record_id: int
    lang: str
    n_tokens: int
    epoch: int


@dataclass
class Realised:
    draws: list[Draw]
    tokens_by_category: dict[str, int]
    tokens_by_lang: dict[str, int]
    tokens_by_cell: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.tokens_by_category.values())

    def achieved(self, targets: MixTargets) -> dict[str, Any]:
        """Achieved shares next to target shares, and the relative error of each category/lang ratio."""
        cat_t, lang_t = targets.shares()
        total = self.total or 1
        out: dict[str, Any] = {"categories": {}, "langs": {}}
        for name, tgt, got in (("categories", cat_t, self.tokens_by_category), ("langs", lang_t, self.tokens_by_lang)):
            for key, share in tgt.items():
                out[name][key] = {"target": share, "achieved": got.get(key, 0) / total, "tokens": got.get(key, 0)}
        out["max_rel_error"] = max(
            abs(v["achieved"] - v["target"]) / v["target"]
            for group in (out["categories"], out["langs"])
            for v in group.values()
        )
        return out


def _seeded_shuffle(items: list[RecordRef], seed: str) -> list[RecordRef]:
    rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    out = list(items)
    rng.shuffle(out)
    return out


def realize(plan: MixPlan, records: dict[str, Iterable[RecordRef]], seed: str = "medstudio-mix") -> Realised:
    """Draw whole records to meet each cell's planned tokens.

    Full passes over a cell cover whole epochs; the remainder is a seeded random subset taken until
    the running total is as close as possible to the plan, so the error per cell stays below one
    record's length. Records too long for the remaining need are skipped rather than overshooting.
    """
    by_src_lang: dict[tuple[str, str], list[RecordRef]] = {}
    for name, refs in records.items():
        for r in refs:
            by_src_lang.setdefault((name, r.lang), []).append(r)
    draws: list[Draw] = []
    by_cat: dict[str, int] = {}
    by_lang: dict[str, int] = {}
    by_cell: dict[str, int] = {}
    for cell in plan.cells:
        pool = by_src_lang.get((cell.source, cell.lang), [])
        pool_tokens = sum(r.n_tokens for r in pool)
        if not pool or pool_tokens <= 0:
            if cell.planned > 0:
                raise MixingError(f"source {cell.source} has no {cell.lang} records to draw {cell.planned:.0f} tokens from")
            continue
        got = 0
        target = cell.planned
        epoch = 0
        while target - got >= pool_tokens:
            for r in pool:
                draws.append(Draw(cell.source, cell.category, r.id, r.lang, r.n_tokens, epoch))
            got += pool_tokens
            epoch += 1
        for r in _seeded_shuffle(pool, f"{seed}:{cell.source}:{cell.lang}:{epoch}"):
            need = target - got
            if need <= 0:
                break
            # take the record when it brings the total closer to the target than leaving it out
            if r.n_tokens <= 2 * need:
                draws.append(Draw(cell.source, cell.category, r.id, r.lang, r.n_tokens, epoch))
                got += r.n_tokens
        by_cat[cell.category] = by_cat.get(cell.category, 0) + got
        by_lang[cell.lang] = by_lang.get(cell.lang, 0) + got
        key = f"{cell.source}/{cell.lang}"
        by_cell[key] = by_cell.get(key, 0) + got
    return Realised(draws=draws, tokens_by_category=by_cat, tokens_by_lang=by_lang, tokens_by_cell=by_cell)


def interleave(draws: Sequence[Draw], seed: str = "medstudio-mix") -> list[Draw]:
    """A seeded shuffle of the whole mixture, so shards mix sources and languages evenly."""
    rng = random.Random(int(hashlib.sha256(f"{seed}:interleave".encode()).hexdigest()[:16], 16))
    out = list(draws)
    rng.shuffle(out)
    return out


def shard(draws: Iterable[Draw], shard_tokens: int) -> Iterator[list[Draw]]:
    """Cut a draw sequence into consecutive shards of about `shard_tokens` tokens (never empty)."""
    if shard_tokens <= 0:
        raise MixingError("shard size must be positive")
    cur: list[Draw] = []
    size = 0
    for d in draws:
        cur.append(d)
        size += d.n_tokens
        if size >= shard_tokens:
            yield cur
            cur, size = [], 0
    if cur:
        yield cur
