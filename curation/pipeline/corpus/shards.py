"""Shard discovery, counting and reading for a corpus: Parquet or JSONL (plain, .gz, .zst), on a local
folder or any URI pyarrow.fs understands (file://, s3://, gs://, hdfs://).

Nothing here imports Django; errors a curator must see are `ShardError` with a plain reason.
"""
from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".jsonl.gz": "jsonl.gz",
           ".json.gz": "jsonl.gz", ".jsonl.zst": "jsonl.zst", ".json.zst": "jsonl.zst"}


class ShardError(Exception):
    """A shard cannot be read as declared (unreadable file, bad footer, bad line, missing column)."""


@dataclass
class Mapping:
    text: str = "text"
    id: str = "id"
    lang: str = "lang"
    source: str = "source"
    turns: str = ""  # dialogue corpora: a list of {"role", "content"} (the text is then the turns joined)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Mapping":
        d = d or {}
        return cls(**{k: d[k] for k in ("text", "id", "lang", "source", "turns") if d.get(k)})


@dataclass
class ShardInfo:
    path: str          # the path as the filesystem names it (no scheme)
    fmt: str
    n_docs: int | None
    size: int
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def shard_format(path: str) -> str | None:
    low = path.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if low.endswith(ext):
            return FORMATS[ext]
    return None


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a local path or URI."""
    import pyarrow.fs as pafs

    if "://" not in uri:
        import os

        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def is_local(fs) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def uri_of(fs, path: str) -> str:
    """The URI that names `path` of `fs` again through `filesystem` (a local path stays a path)."""
    return path if is_local(fs) else f"{fs.type_name}://{path}"


def join_uri(base: str, *parts: str) -> str:
    """base/part/...: for a path or a URI (pathlib would fold s3:// into s3:/)."""
    return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])


def parent_uri(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as fh:
        return fh.read()


def list_shards(uri: str) -> tuple[Any, list[tuple[str, str, int]]]:
    """(fs, [(path, fmt, size)]) of every shard file under uri (a folder, or one file), sorted."""
    import pyarrow.fs as pafs

    fs, root = filesystem(uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ShardError(f"{uri}: not found")
    if info.type == pafs.FileType.File:
        infos = [info]
    else:
        infos = [i for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.type == pafs.FileType.File]
    out = []
    for i in infos:
        rel = i.path[len(root):].lstrip("/") if i.path.startswith(root) else i.path.rsplit("/", 1)[-1]
        if any(part.startswith((".", "_")) for part in rel.split("/")):  # _scores/, .tmp files
            continue
        fmt = shard_format(i.path)
        if fmt:
            out.append((i.path, fmt, i.size or 0))
    out.sort()
    return fs, out


def _open_text(fs, path: str, fmt: str):
    raw = fs.open_input_stream(path, compression=None)  # decompressed here, whatever the extension's case
    if fmt == "jsonl.gz":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8")
    if fmt == "jsonl.zst":
        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
    return io.TextIOWrapper(raw, encoding="utf-8")


def count_docs(fs, path: str, fmt: str) -> int:
    """Documents in a shard: the Parquet footer's row count, or JSONL's non-blank lines (read once)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with fs.open_input_file(path) as fh:
                return pq.ParquetFile(fh).metadata.num_rows
        n = 0
        with _open_text(fs, path, fmt) as fh:
            for line in fh:
                if line.strip():
                    n += 1
        return n
    except ShardError:
        raise
    except Exception as exc:  # corrupt footer, bad gzip/zstd stream, undecodable bytes
        raise ShardError(f"{type(exc).__name__}: {exc}") from exc


def iter_docs(fs, path: str, fmt: str, mapping: Mapping, batch_size: int = 1000) -> Iterator[list[dict]]:
    """Batches of {"id", "text", "lang", "source"} from one shard, in file order.

    A missing text column, a bad JSON line, a non-string text: ShardError (the whole shard fails,
    nothing of it is committed). A missing id falls back to "<shard-stem>:<row>".
    """
    stem = path.rsplit("/", 1)[-1]
    row = 0

    def norm(d: dict) -> dict:
        nonlocal row
        row += 1
        if mapping.turns:
            turns = d.get(mapping.turns)
            if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
                raise ShardError(f"row {row}: turns field {mapping.turns!r} is not a list of {{role, content}} objects")
            turns = [{"role": str(t.get("role") or ""), "content": str(t.get("content") or "")} for t in turns]
            doc_id = d.get(mapping.id)
            return {"id": str(doc_id) if doc_id not in (None, "") else f"{stem}:{row}",
                    "text": "\n".join(t["content"] for t in turns), "turns": turns,
                    "lang": str(d.get(mapping.lang) or ""), "source": str(d.get(mapping.source) or "")}
        if mapping.text not in d:
            raise ShardError(f"row {row}: missing text field {mapping.text!r}")
        text = d[mapping.text]
        if not isinstance(text, str):
            raise ShardError(f"row {row}: text field {mapping.text!r} is {type(text).__name__}, not a string")
        doc_id = d.get(mapping.id)
        return {"id": str(doc_id) if doc_id not in (None, "") else f"{stem}:{row}", "text": text,
                "lang": str(d.get(mapping.lang) or ""), "source": str(d.get(mapping.source) or "")}

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with fs.open_input_file(path) as fh:
                pf = pq.ParquetFile(fh)
                names = set(pf.schema_arrow.names)
                need = mapping.turns or mapping.text
                if need not in names:
                    raise ShardError(f"missing column {need!r} (columns: {', '.join(sorted(names))})")
                cols = [c for c in (need, mapping.id, mapping.lang, mapping.source) if c in names]
                for rb in pf.iter_batches(batch_size=batch_size, columns=list(dict.fromkeys(cols))):
                    yield [norm(d) for d in rb.to_pylist()]
            return
        batch: list[dict] = []
        with _open_text(fs, path, fmt) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ShardError(f"line {lineno}: bad JSON ({exc.msg})") from None
                if not isinstance(d, dict):
                    raise ShardError(f"line {lineno}: not a JSON object")
                batch.append(norm(d))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch
    except ShardError:
        raise
    except Exception as exc:
        raise ShardError(f"{type(exc).__name__}: {exc}") from exc


def scan(uri: str) -> list[ShardInfo]:
    """Every shard under uri with its document count (or the reason it could not be counted)."""
    fs, found = list_shards(uri)
    out = []
    for path, fmt, size in found:
        try:
            out.append(ShardInfo(path=path, fmt=fmt, n_docs=count_docs(fs, path, fmt), size=size))
        except ShardError as exc:
            out.append(ShardInfo(path=path, fmt=fmt, n_docs=None, size=size, error=str(exc)))
    return out


def sample_docs(uri_fs_path: tuple[Any, str, str], mapping: Mapping, rows: list[int]) -> list[dict]:
    """The docs at the given 0-based row numbers of one shard (for the corpus page's random sample)."""
    fs, path, fmt = uri_fs_path
    want = set(rows)
    out, i = [], 0
    for batch in iter_docs(fs, path, fmt, mapping):
        for d in batch:
            if i in want:
                out.append({**d, "row": i})
            i += 1
        if i > max(want, default=-1):
            break
    return out
