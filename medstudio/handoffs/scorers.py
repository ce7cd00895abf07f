"""The scorer catalogue: every scorer a stage provides, with what it applies to.

A platform registry so that platform pages (a dataset's "Run scorer" form) can list scorers
without importing the stage that implements them; curation registers its scorers on import of
curation/handlers.py (its AppConfig.ready).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    factory: Callable[[dict], Any] | None
    queue: str = "cpu"
    description: str = ""
    params_schema: dict = field(default_factory=dict)
    corpus_handler: Callable[[Any, Any, Any], dict | None] | None = None  # (JobContext, ScorerRun, params)
    batch_size: int = 256
    kinds: tuple[str, ...] = ()  # dataset kinds it applies to; empty = all
    # A corpus handler that only needs its own id range (decontam: every shard builds the small
    # benchmark index and scans its range) can be split like a per-record scorer. MinHash cannot:
    # its clusters cross ranges.
    shardable: bool = False


_SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, factory: Callable[[dict], Any] | None = None, *, queue: str = "cpu",
                    description: str = "", params_schema: dict | None = None, corpus_handler=None,
                    batch_size: int = 256, kinds: tuple[str, ...] = (), shardable: bool = False) -> ScorerSpec:
    if factory is None and corpus_handler is None:
        raise ValueError("a scorer needs a factory or a corpus_handler")
    spec = ScorerSpec(name=name, factory=factory, queue=queue, description=description,
                      params_schema=params_schema or {}, corpus_handler=corpus_handler, batch_size=batch_size,
                      kinds=tuple(kinds), shardable=shardable)
    _SCORERS[name] = spec
    return spec


def scorers() -> dict[str, ScorerSpec]:
    return dict(sorted(_SCORERS.items()))


def get_scorer(name: str) -> ScorerSpec:
    try:
        return _SCORERS[name]
    except KeyError:
        known = ", ".join(sorted(_SCORERS)) or "none registered"
        raise LookupError(f"Unknown scorer {name!r} (known: {known}).") from None
