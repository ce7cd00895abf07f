"""Training data sources: one registry that turns a data reference into the JSONL a run trains on.

A run's ``data_ref`` is ``{"type": ..., "id": ...}``. The platform registers ``dataset``,
``selection`` and ``mixture`` here; the preferences stage registers ``preference_set`` (it owns
the pairs and the rules for flips, drops and clinician verdicts). Training consumes any of them
through `export` without knowing which stage made it.

An exporter ``(ref, path) -> dict`` writes one ``{"kind", "content"}`` JSON object per line (the
normalised record schema of medstudio/datasets/formats.py) and returns what it wrote: at least
``name``, ``kind``, ``n_records`` and ``sha256`` of the file, plus what identifies the source
(selection hash, recipe version, mixture plan and achieved shares, counts by origin). That
metadata is stored on the run and on every model it produces (lineage).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

class DataSourceError(ValueError):
    pass


@dataclass(frozen=True)
class DataSource:
    type: str
    label: str
    exporter: Callable[[dict, Path], dict]
    describe: Callable[[dict], dict]  # -> {"name", "kind", "n_records", ...} for validation and display
    options: Callable[[], Iterable[dict]]  # -> [{"id", "name", "kind", "n_records"}], what can be chosen now


_SOURCES: dict[str, DataSource] = {}


def register_data_source(type_: str, *, label: str, exporter, describe, options) -> None:
    _SOURCES[type_] = DataSource(type_, label, exporter, describe, options)


def data_source(type_: str) -> DataSource:
    try:
        return _SOURCES[type_]
    except KeyError:
        raise DataSourceError(f"unknown data source type {type_!r} (known: {', '.join(sorted(_SOURCES))})") from None


def types() -> list[str]:
    return list(_SOURCES)


def describe(ref: dict) -> dict:
    return data_source(ref.get("type", "")).describe(ref)


def export(ref: dict, path: Path) -> dict:
    return data_source(ref.get("type", "")).exporter(ref, path)


def choices_for(kinds: Iterable[str]) -> list[dict]:
    """Every non-empty data object of one of `kinds`, as {"ref", "type", "label", "id", "name", "kind", "n_records"}."""
    kinds = set(kinds)
    out = []
    for src in _SOURCES.values():
        for opt in src.options():
            if opt.get("kind") in kinds and opt.get("n_records"):
                out.append({"ref": f"{src.type}:{opt['id']}", "type": src.type, "label": src.label, **opt})
    return out


def resolve(spec: str) -> dict:
    """`TYPE:NAME` (or `TYPE:#ID`) -> a data ref; the CLI and forms name objects, never bare ids."""
    type_, sep, name = (spec or "").partition(":")
    if not sep or not name:
        raise DataSourceError(f"give the data as TYPE:NAME with TYPE one of {', '.join(_SOURCES)} (got {spec!r})")
    src = data_source(type_)
    opts = list(src.options())
    if name.startswith("#") and name[1:].isdigit():
        hits = [o for o in opts if int(o["id"]) == int(name[1:])]
    else:
        hits = [o for o in opts if o["name"] == name]
    if not hits:
        raise DataSourceError(f"no {src.label.lower()} named {name!r} is ready to train on")
    if len(hits) > 1:
        raise DataSourceError(f"{len(hits)} {src.label.lower()}s are named {name!r}; use {type_}:#ID "
                              f"({', '.join('#' + str(h['id']) for h in hits)})")
    return {"type": type_, "id": int(hits[0]["id"])}


class RecordWriter:
    """Writes `{"kind", "content"}` lines to path.part, hashing them; renamed into place on close."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_suffix(".part")
        self.fh = self.tmp.open("w", encoding="utf-8")
        self.digest, self.n = hashlib.sha256(), 0

    def write(self, kind: str, content: dict, **extra) -> None:
        line = json.dumps({"kind": kind, "content": content, **extra}, ensure_ascii=False, sort_keys=True) + "\n"
        self.fh.write(line)
        self.digest.update(line.encode())
        self.n += 1

    def close(self) -> dict:
        self.fh.close()
        self.tmp.replace(self.path)
        return {"n_records": self.n, "sha256": self.digest.hexdigest()}


# --- plain datasets ---------------------------------------------------------------------------

def _dataset(ref: dict):
    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.filter(pk=ref.get("id")).first()
    if ds is None:
        raise DataSourceError(f"dataset {ref.get('id')!r} does not exist")
    return ds


def _describe_dataset(ref: dict) -> dict:
    ds = _dataset(ref)
    return {"name": ds.name, "kind": ds.kind, "n_records": ds.n_records}


def _export_dataset(ref: dict, path: Path) -> dict:
    ds = _dataset(ref)
    w = RecordWriter(path)
    # Keyset order by id: stable, and the file hash identifies the exact data a run saw.
    for content in ds.records.order_by("id").values_list("content", flat=True).iterator(chunk_size=2000):
        w.write(ds.kind, content)
    return {"name": ds.name, "kind": ds.kind, **w.close()}


def _dataset_options():
    from medstudio.datasets.models import Dataset

    # Benchmarks are evaluation sets: never offered as training data.
    for ds in Dataset.objects.filter(is_benchmark=False, helper_role="").order_by("name"):
        yield {"id": ds.pk, "name": ds.name, "kind": ds.kind, "n_records": ds.n_records}


register_data_source("dataset", label="Dataset", exporter=_export_dataset, describe=_describe_dataset, options=_dataset_options)


# --- selections -------------------------------------------------------------------------------

def _selection(ref: dict):
    from .models import Selection

    sel = Selection.objects.filter(pk=ref.get("id")).first()
    if sel is None:
        raise DataSourceError(f"selection {ref.get('id')!r} does not exist")
    if sel.status != Selection.Status.READY:
        raise DataSourceError(f"selection {sel.name!r} is {sel.status}, not ready")
    return sel


def _selection_kind(sel) -> str:
    from .selectors import selection_kinds

    kinds = selection_kinds(sel)
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _describe_selection(ref: dict) -> dict:
    sel = _selection(ref)
    return {"name": sel.name, "kind": _selection_kind(sel), "n_records": sel.n_records, "content_hash": sel.content_hash,
            "recipe_version": sel.recipe_version_id}


def _export_selection(ref: dict, path: Path) -> dict:
    from .selectors import selection_records

    sel = _selection(ref)
    kind_of = dict(sel.datasets.values_list("id", "kind"))
    w = RecordWriter(path)
    for ds_id, content in selection_records(sel).values_list("dataset_id", "content").iterator(chunk_size=2000):
        w.write(kind_of[ds_id], content)
    return {**_describe_selection(ref), **w.close()}


def _selection_options():
    from .models import Selection

    for sel in Selection.objects.filter(status=Selection.Status.READY).prefetch_related("datasets"):
        yield {"id": sel.pk, "name": sel.name, "kind": _selection_kind(sel), "n_records": sel.n_records}


register_data_source("selection", label="Selection", exporter=_export_selection, describe=_describe_selection,
                     options=_selection_options)


# --- mixtures ---------------------------------------------------------------------------------

def _mixture(ref: dict):
    from .models import Mixture

    mix = Mixture.objects.filter(pk=ref.get("id")).first()
    if mix is None:
        raise DataSourceError(f"mixture {ref.get('id')!r} does not exist")
    if mix.status != "succeeded" or not mix.path:
        raise DataSourceError(f"mixture {mix.name!r} has not been drawn yet ({mix.status})")
    return mix


def _describe_mixture(ref: dict) -> dict:
    mix = _mixture(ref)
    return {"name": mix.name, "kind": "document", "n_records": int((mix.achieved or {}).get("n_draws") or _mixture_draws(mix)),
            "mixture_stage": mix.stage, "targets": mix.targets}


def _mixture_draws(mix) -> int:
    n = 0
    for name in mix.files:
        if name.startswith("shard-"):
            with open(Path(mix.path) / name, "rb") as fh:
                n += sum(1 for _ in fh)
    return n


def _shares(counter: Counter) -> dict[str, float]:
    total = sum(counter.values()) or 1
    return {k: round(v / total, 6) for k, v in sorted(counter.items())}


def _export_mixture(ref: dict, path: Path) -> dict:
    """The mixture's drawn plan, shard by shard in draw order: what the curator planned is what trains."""
    mix = _mixture(ref)
    w = RecordWriter(path)
    by_cat, by_lang = Counter(), Counter()
    for name in mix.files:
        if not name.startswith("shard-"):
            continue
        try:
            fh = open(Path(mix.path) / name, encoding="utf-8")
        except OSError as exc:
            raise DataSourceError(f"mixture {mix.name!r}: shard {name} cannot be read ({exc.strerror})") from exc
        with fh:
            for line in fh:
                d = json.loads(line)
                w.write("document", {"text": d["text"]}, category=d.get("category", ""), lang=d.get("lang", ""))
                by_cat[d.get("category", "")] += int(d.get("n_tokens") or 0)
                by_lang[d.get("lang", "")] += int(d.get("n_tokens") or 0)
    info = w.close()
    return {"name": mix.name, "kind": "document", **info, "mixture_stage": mix.stage,
            "targets": mix.targets, "achieved": {"categories": _shares(by_cat), "langs": _shares(by_lang),
                                                 "tokens": sum(by_cat.values())}}


def _mixture_options():
    from .models import Mixture

    for mix in Mixture.objects.filter(status="succeeded"):
        yield {"id": mix.pk, "name": mix.name, "kind": "document", "n_records": (mix.achieved or {}).get("n_draws") or _mixture_draws(mix)}


register_data_source("mixture", label="Mixture", exporter=_export_mixture, describe=_describe_mixture, options=_mixture_options)
