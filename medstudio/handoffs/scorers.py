"""The scorer catalogue: every scorer a stage provides, with what it applies to.

A platform registry so that platform pages (a dataset's "Run scorer" form) can list scorers
without importing the stage that implements them; curation registers its scorers on import of
curation/handlers.py (its AppConfig.ready).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """One typed scorer setting, declared beside the scorer's registration; the launch form turns it
    into a real field (a number input with its range and default, a select, checkboxes...).

    type: "int" | "float" | "bool" | "choice" | "multi" (several of `choices`) | "str" |
    "datasets" (several datasets by name, value = their names) | "scorer_run" (a scorer run of this
    dataset, value = its id). `choices` may be a callable `(dataset) -> [(value, label)]` for lists
    only known at launch (trained model versions). `modes`: shown only when the scorer's "mode"
    param has one of these values. `setting`: the Django setting used when the field is left empty.
    `benchmarks_only` limits a "datasets" param to benchmark datasets.
    """

    name: str
    type: str = "str"
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Any = ()
    help: str = ""
    label: str = ""
    setting: str = ""
    modes: tuple[str, ...] = ()
    benchmarks_only: bool = False


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
    params: tuple[Param, ...] = ()  # typed settings for the launch form (params_schema is the old informal note)


_SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, factory: Callable[[dict], Any] | None = None, *, queue: str = "cpu",
                    description: str = "", params_schema: dict | None = None, corpus_handler=None,
                    batch_size: int = 256, kinds: tuple[str, ...] = (), shardable: bool = False,
                    params: tuple[Param, ...] | list[Param] = ()) -> ScorerSpec:
    if factory is None and corpus_handler is None:
        raise ValueError("a scorer needs a factory or a corpus_handler")
    spec = ScorerSpec(name=name, factory=factory, queue=queue, description=description,
                      params_schema=params_schema or {}, corpus_handler=corpus_handler, batch_size=batch_size,
                      kinds=tuple(kinds), shardable=shardable, params=tuple(params))
    _SCORERS[name] = spec
    return spec


def scorer_params(name: str) -> tuple[Param, ...]:
    """The typed settings of scorer `name` (empty when it declares none: the form offers JSON only)."""
    spec = _SCORERS.get(name)
    return spec.params if spec else ()


def scorers() -> dict[str, ScorerSpec]:
    return dict(sorted(_SCORERS.items()))


def get_scorer(name: str) -> ScorerSpec:
    try:
        return _SCORERS[name]
    except KeyError:
        known = ", ".join(sorted(_SCORERS)) or "none registered"
        raise LookupError(f"Unknown scorer {name!r} (known: {known}).") from None
