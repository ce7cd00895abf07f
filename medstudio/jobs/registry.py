"""Job kinds map to handler functions. A handler does the work of one job through a JobContext."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

_HANDLERS: dict[str, "HandlerSpec"] = {}


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    func: Callable[[Any], dict | None]
    queue: str
    description: str


def job_handler(kind: str, *, queue: str = "default", description: str = "") -> Callable:
    def decorator(func: Callable) -> Callable:
        _HANDLERS[kind] = HandlerSpec(kind=kind, func=func, queue=queue, description=description or (func.__doc__ or "").strip())
        return func

    return decorator


def get_handler(kind: str) -> HandlerSpec:
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise LookupError(f"No job handler registered for kind {kind!r}") from None


def handlers() -> dict[str, HandlerSpec]:
    return dict(_HANDLERS)
