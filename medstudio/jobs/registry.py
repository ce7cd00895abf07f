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


# --------------------------------------------------------------------------- how a job kind reads to people
# Stages register, in their handlers module (imported by AppConfig.ready()), a label in words and a
# resolver that names what the job made: `result_links(job) -> [(text, url), ...]`. The platform never
# imports a stage; a kind without an entry reads as its handler's description.

@dataclass(frozen=True)
class KindInfo:
    label: str
    result_links: Callable[[Any], list[tuple[str, str]]] | None = None


_KINDS: dict[str, KindInfo] = {}


def register_job_kind(kind: str, *, label: str, result_links: Callable[[Any], list[tuple[str, str]]] | None = None) -> None:
    _KINDS[kind] = KindInfo(label=label, result_links=result_links)


def kind_info(kind: str) -> KindInfo | None:
    """The registered label and result resolver of a kind (None: the kind reads as its handler's description)."""
    return _KINDS.get(kind)


def kind_label(kind: str) -> str:
    """In the reader's language where the catalogue has the label (stages mark theirs with gettext_noop)."""
    if kind in _KINDS:
        from django.utils.translation import gettext

        return gettext(_KINDS[kind].label)
    spec = _HANDLERS.get(kind)
    if spec and spec.description:
        return spec.description.split(":")[0].split(" (")[0].rstrip(".?")
    return kind.replace("_", " ").replace(".", ": ").capitalize()


def job_result_links(job) -> list[tuple[str, str]]:
    """Links to what a job made; [] when its kind has no resolver or the resolver fails (a deleted object)."""
    info = _KINDS.get(job.kind)
    if info is None or info.result_links is None:
        return []
    try:
        return [(str(t), str(u)) for t, u in (info.result_links(job) or []) if u]
    except Exception:  # a resolver must never turn the job page into a 500
        return []
