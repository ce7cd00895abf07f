"""Training data sources: turn a data reference into the JSONL file a run trains on.

A run's ``data_ref`` is ``{"type": ..., "id": ...}``. Built in: ``"dataset"`` (a plain dataset,
every record). The hook for selections, mixtures and preference sets (built by other engineers):

    from training.data import register_data_source
    register_data_source("selection", exporter, label=lambda ref: "...", kinds=("qa", "dialogue"))

where ``exporter(ref: dict, path: Path) -> dict`` writes one ``{"kind", "content"}`` JSON object per
line (the platform's normalised record schema) and returns metadata merged into ``data_ref``:
at least ``n_records`` and ``sha256`` of the file, plus ``version``/``recipe_hash`` when the source
has them. That metadata ends up on every ModelRef the run produces (lineage).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class DataSourceError(ValueError):
    pass


@dataclass(frozen=True)
class DataSource:
    type: str
    exporter: Callable[[dict, Path], dict]
    describe: Callable[[dict], dict]  # -> {"name", "kind"} for validation and display


_SOURCES: dict[str, DataSource] = {}


def register_data_source(type_: str, exporter: Callable[[dict, Path], dict], describe: Callable[[dict], dict]) -> None:
    _SOURCES[type_] = DataSource(type_, exporter, describe)


def data_source(type_: str) -> DataSource:
    try:
        return _SOURCES[type_]
    except KeyError:
        raise DataSourceError(f"unknown data source type {type_!r} (known: {', '.join(sorted(_SOURCES))})") from None


def describe(ref: dict) -> dict:
    return data_source(ref.get("type", "")).describe(ref)


def export(ref: dict, path: Path) -> dict:
    return data_source(ref.get("type", "")).exporter(ref, path)


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
    digest = hashlib.sha256()
    n = 0
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8") as fh:
        # Keyset order by id: stable, and the file hash identifies the exact data a run saw.
        for content in ds.records.order_by("id").values_list("content", flat=True).iterator(chunk_size=2000):
            line = json.dumps({"kind": ds.kind, "content": content}, ensure_ascii=False, sort_keys=True) + "\n"
            fh.write(line)
            digest.update(line.encode())
            n += 1
    tmp.replace(path)
    return {"name": ds.name, "kind": ds.kind, "n_records": n, "sha256": digest.hexdigest()}


register_data_source("dataset", _export_dataset, _describe_dataset)
