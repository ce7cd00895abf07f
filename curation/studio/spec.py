"""Recipe conditions as plain data (no Django import): parsing, validation, canonical form, diffs.

A recipe is a set of conditions that work with any scorer:
  * bounds: per scorer a minimum, a maximum or both (a band, e.g. ConFilter's [low, high]); a record
    without a value from that scorer ("unscored") is dropped unless `keep_unscored`;
  * flags: per filter scorer (rules, PII, dedup, decontamination...), drop the records the filter
    marked keep=False.
Conditions name scorers, not runs, so one recipe applies to any dataset scored by those scorers;
the run each name resolved to is recorded when a recipe is applied.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any


class SpecError(ValueError):
    """A recipe's conditions are malformed (the message says which and why)."""


@dataclass(frozen=True)
class Bound:
    scorer: str
    min: float | None = None
    max: float | None = None
    keep_unscored: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer, "min": self.min, "max": self.max, "keep_unscored": self.keep_unscored}

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            txt = f"{self.min:g} <= {self.scorer} <= {self.max:g}"
        elif self.min is not None:
            txt = f"{self.scorer} >= {self.min:g}"
        elif self.max is not None:
            txt = f"{self.scorer} <= {self.max:g}"
        else:
            txt = f"{self.scorer}: any value"
        return txt + (" (or unscored)" if self.keep_unscored else "")


@dataclass(frozen=True)
class Spec:
    bounds: tuple[Bound, ...] = ()
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"bounds": [b.as_dict() for b in self.bounds], "flags": list(self.flags)}

    def key(self) -> str:
        """Stable hash of the canonical form (cache key, equality across sessions)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:24]

    def bound(self, scorer: str) -> Bound | None:
        return next((b for b in self.bounds if b.scorer == scorer), None)

    def without(self, scorer: str) -> "Spec":
        return Spec(bounds=tuple(b for b in self.bounds if b.scorer != scorer), flags=self.flags)

    def scorers(self) -> list[str]:
        return sorted({b.scorer for b in self.bounds} | set(self.flags))


def _num(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(out):
        raise SpecError(f"{where}: {value!r} is not a finite number")
    return out


def parse_spec(data: dict[str, Any] | None) -> Spec:
    """Validate and canonicalise conditions given as JSON-like data.

    Scorers appear once, sorted. A bound with neither min nor max still means "must be scored".
    """
    data = data or {}
    if not isinstance(data, dict):
        raise SpecError("conditions must be an object with 'bounds' and 'flags'")
    bounds: dict[str, Bound] = {}
    raw_bounds = data.get("bounds") or []
    if not isinstance(raw_bounds, list):
        raise SpecError("'bounds' must be a list")
    for i, raw in enumerate(raw_bounds):
        if not isinstance(raw, dict) or not str(raw.get("scorer") or "").strip():
            raise SpecError(f"bound #{i + 1} needs a scorer name")
        name = str(raw["scorer"]).strip()
        if name in bounds:
            raise SpecError(f"scorer {name!r} has two bounds; give one min/max pair")
        lo = _num(raw.get("min"), f"{name} minimum")
        hi = _num(raw.get("max"), f"{name} maximum")
        if lo is not None and hi is not None and lo > hi:
            raise SpecError(f"{name}: minimum {lo:g} is above maximum {hi:g}")
        keep_unscored = bool(raw.get("keep_unscored", False))
        bounds[name] = Bound(scorer=name, min=lo, max=hi, keep_unscored=keep_unscored)
    raw_flags = data.get("flags") or []
    if not isinstance(raw_flags, list):
        raise SpecError("'flags' must be a list of filter scorer names")
    flags = sorted({str(f).strip() for f in raw_flags if str(f).strip()})
    return Spec(bounds=tuple(bounds[k] for k in sorted(bounds)), flags=tuple(flags))


@dataclass
class SpecDiff:
    added: list[Bound] = field(default_factory=list)
    removed: list[Bound] = field(default_factory=list)
    changed: list[tuple[Bound, Bound]] = field(default_factory=list)
    flags_added: list[str] = field(default_factory=list)
    flags_removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.flags_added or self.flags_removed)

    def lines(self) -> list[str]:
        out = [f"+ {b.describe()}" for b in self.added]
        out += [f"- {b.describe()}" for b in self.removed]
        out += [f"~ {a.describe()}  ->  {b.describe()}" for a, b in self.changed]
        out += [f"+ filter {f}" for f in self.flags_added]
        out += [f"- filter {f}" for f in self.flags_removed]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": [b.as_dict() for b in self.added],
            "removed": [b.as_dict() for b in self.removed],
            "changed": [{"from": a.as_dict(), "to": b.as_dict()} for a, b in self.changed],
            "flags_added": self.flags_added,
            "flags_removed": self.flags_removed,
            "lines": self.lines(),
        }


def diff_specs(old: Spec, new: Spec) -> SpecDiff:
    d = SpecDiff()
    olds = {b.scorer: b for b in old.bounds}
    news = {b.scorer: b for b in new.bounds}
    for name in sorted(olds.keys() | news.keys()):
        a, b = olds.get(name), news.get(name)
        if a is None:
            d.added.append(b)
        elif b is None:
            d.removed.append(a)
        elif a != b:
            d.changed.append((a, b))
    d.flags_added = sorted(set(new.flags) - set(old.flags))
    d.flags_removed = sorted(set(old.flags) - set(new.flags))
    return d


@dataclass(frozen=True)
class BoundMove:
    """`new` differs from `old` only in one side of one scorer's bound: the delta is a value band."""

    scorer: str
    side: str  # "min" | "max"
    old: float | None
    new: float | None


def single_bound_move(old: Spec, new: Spec) -> BoundMove | None:
    """Recognise the common slider step, where an incremental count is far cheaper than a full scan."""
    if old.flags != new.flags:
        return None
    d = diff_specs(old, new)
    if d.added or d.removed or len(d.changed) != 1:
        return None
    a, b = d.changed[0]
    if a.keep_unscored != b.keep_unscored:
        return None
    if a.min != b.min and a.max == b.max:
        return BoundMove(a.scorer, "min", a.min, b.min)
    if a.max != b.max and a.min == b.min:
        return BoundMove(a.scorer, "max", a.max, b.max)
    return None
