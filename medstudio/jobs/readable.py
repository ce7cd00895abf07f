"""A job's params and result as fields people read (no Python dicts on the page)."""
from __future__ import annotations

from typing import Any

# keys that are shown elsewhere on the page (links, the bad-lines table) or mean nothing to a reader
HIDDEN = {"validation", "files", "usage"}


def gettext_noop(message: str) -> str:
    """Marks a field name for the translation catalogue (the job page translates labels)."""
    return message


NAMES = {"n_records": gettext_noop("Records"), "n_tokens": gettext_noop("Tokens"), "n_written": gettext_noop("Written"),
         "sha256": "SHA-256", "max_rel_error": gettext_noop("Largest ratio error"),
         "content_hash": gettext_noop("Content hash"), "id_from": gettext_noop("From record"),
         "id_to": gettext_noop("To record"), "records_changed": gettext_noop("Records changed"),
         "shard_records": gettext_noop("Records in shard"), "inserted": gettext_noop("Inserted"),
         "already_present": gettext_noop("Already present"), "rows": gettext_noop("Rows"),
         "file_name": gettext_noop("File name"), "dataset": gettext_noop("Dataset"), "kind": gettext_noop("Kind"),
         "format": gettext_noop("Format"), "skip_bad": gettext_noop("Skip bad"), "scorer": gettext_noop("Scorer"),
         "shards": gettext_noop("Shards"), "run": gettext_noop("Run"), "model": gettext_noop("Model")}


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
