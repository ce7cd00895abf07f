"""Reading a frozen corpus selection back, shard by shard (no Django).

A selection folder (studio.freeze; a local path or a URI on object storage) holds manifest.json
and kept/<shard>.kept.parquet (the kept document ids). `iter_selection` streams the kept documents
in manifest order: for each shard it reads that shard's kept ids (one small Parquet file), then the
shard itself in pyarrow batches, yielding the documents whose id was kept. Memory is one shard's kept ids plus one batch.
"""
from __future__ import annotations

import json
from typing import Iterator


class SelectionError(ValueError):
    """The selection folder or a shard it names cannot be read as frozen."""


def read_manifest(dest: str) -> dict:
    from curation.pipeline.corpus.shards import join_uri, read_bytes

    path = join_uri(dest, "manifest.json")
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        raise SelectionError(f"{path}: no manifest (the selection was never frozen there, or was moved)") from None
    except ValueError as exc:
        raise SelectionError(f"{path}: not a manifest ({exc})") from None


def iter_selection(dest: str, *, batch_size: int = 1000) -> Iterator[tuple[str, list[dict]]]:
    """(shard key, [kept docs {"id", "text", "lang", "source"}]) batches, shard by shard.

    A shard whose documents no longer match its frozen kept count (the shard was rewritten after
    the freeze) raises SelectionError naming it: the data a run trains on is exactly what was frozen."""
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.shards import Mapping, ShardError, filesystem, iter_docs, join_uri, shard_format

    manifest = read_manifest(dest)
    src = manifest.get("source") or {}
    if not src.get("uri"):
        raise SelectionError(f"{dest}: the manifest does not name its corpus's URI (frozen by an older version: freeze it again)")
    fs, _ = filesystem(src["uri"])
    kept_fs, kept_root = filesystem(dest)
    mapping = Mapping.from_dict(src.get("mapping"))
    for sh in manifest["shards"]:
        if not sh.get("kept"):
            continue
        kept_file = join_uri(kept_root, "kept", f"{sh['shard']}.kept.parquet")
        try:
            ids = set(pq.read_table(kept_file, columns=["doc_id"], filesystem=kept_fs).column("doc_id").to_pylist())
        except (OSError, ValueError) as exc:
            raise SelectionError(f"shard {sh['shard']}: kept ids unreadable ({exc})") from exc
        path = sh.get("source_path") or ""
        fmt = shard_format(path)
        if not fmt:
            raise SelectionError(f"shard {sh['shard']}: no source shard recorded")
        n = 0
        try:
            for batch in iter_docs(fs, path, fmt, mapping, batch_size=batch_size):
                out = [d for d in batch if d["id"] in ids]
                n += len(out)
                if out:
                    yield sh["shard"], out
        except ShardError as exc:
            raise SelectionError(f"shard {sh['shard']} ({path}): {exc}") from exc
        if n != sh["kept"]:
            raise SelectionError(f"shard {sh['shard']}: {n} documents match its kept ids, {sh['kept']} were frozen "
                                 "(the shard changed since the freeze)")
