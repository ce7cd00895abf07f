"""A job's params and result as fields people read (no Python dicts on the page)."""
from __future__ import annotations

from typing import Any

# keys that are shown elsewhere on the page (links, the bad-lines table) or mean nothing to a reader
HIDDEN = {"validation", "files", "usage"}
NAMES = {"n_records": "Records", "n_tokens": "Tokens", "n_written": "Written", "sha256": "SHA-256",
         "max_rel_error": "Largest ratio error", "content_hash": "Content hash", "id_from": "From record",
         "id_to": "To record", "records_changed": "Records changed", "shard_records": "Records in shard"}


def _label(key: str) -> str:
    if key in NAMES:
        return NAMES[key]
    words = key.removesuffix("_id").replace("_", " ").strip()
    return (words[:1].upper() + words[1:]) if words else key


def _value(v: Any, depth: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        if depth > 1 or not v:
            return "—" if not v else f"{len(v)} fields"
        return ", ".join(f"{_label(str(k)).lower()} {_value(x, depth + 1)}" for k, x in list(v.items())[:12])
    if isinstance(v, (list, tuple)):
        if not v:
            return "none"
        shown = ", ".join(_value(x, depth + 1) for x in v[:10])
        return shown + (f" … ({len(v)} in all)" if len(v) > 10 else "")
    return str(v)


def readable_fields(data: dict | None, *, hide: set[str] = frozenset()) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        return []
    return [(_label(k), _value(v)) for k, v in data.items() if k not in HIDDEN and k not in hide]
