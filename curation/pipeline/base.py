"""Plain-Python interfaces every curation block implements (no Django import here).

A *filter* answers keep / (drop, reason) for one record; a *scorer* returns a value and details.
Django jobs (curation/scoring.py) load records in bounded batches as `RecordView`s, call the
block, and store one `Score` row per record and scorer run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol


@dataclass(frozen=True)
class RecordView:
    """What a block sees of a record: the normalised content plus a flattened text."""

    id: int
    kind: str  # document | qa | dialogue | mcq | pair
    lang: str  # "zh", "en", ...
    text: str  # all human-readable text of the record, joined with newlines
    content: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    subset: str = ""  # department / subject when the data has one


@dataclass
class ScoreResult:
    """One block's verdict on one record.

    value: the number a threshold acts on (None = unscored, never a silent default);
    keep/reason: for filters, whether the record survives and why not;
    detail: anything worth showing (spans, per-turn values, matched items...).
    """

    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    keep: bool | None = None
    reason: str = ""


class Scorer(Protocol):
    """A per-record block. `name` is the registry key; bump `version` when results change."""

    name: str
    version: str

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]: ...


def filter_result(verdict: bool | tuple[bool, str], value: float | None = None, **detail: Any) -> ScoreResult:
    """Turn a datatrove-style filter verdict (True, or (False, reason)) into a ScoreResult."""
    if verdict is True:
        return ScoreResult(value=value if value is not None else 1.0, detail=detail, keep=True)
    keep, reason = verdict if isinstance(verdict, tuple) else (bool(verdict), "")
    return ScoreResult(value=value if value is not None else float(keep), detail=detail, keep=keep, reason=reason)


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
