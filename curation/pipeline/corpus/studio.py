"""Threshold studio over a corpus's score files (docs/METHODS.md, "Thresholds on a corpus").

Counts come straight from the per-shard score Parquet files through DuckDB: a query reads only the
columns the conditions name (plus lang, source, n_chars), in parallel over the files, so five
conditions over ten million documents answer in well under a second on two cores (bench/
bench_corpus_studio.py) without loading anything into Postgres.

A condition is (column, op, value) on a score-file column such as ``rules_value`` or
``pii_keep``. Columns are checked against the files' schema and values are bound as parameters,
so no text a user types reaches the SQL.

Score files on object storage (an s3:// or gs:// output URI) are read through pyarrow.fs as one
Arrow dataset that DuckDB scans (DuckDB's own httpfs extension would be a download at run time).

A frozen selection is a manifest: the conditions, each score file's sha256 and row count, and one
Parquet file of kept document ids per shard. Its counts are exact and do not move when score files
are rewritten later (the hashes tell that they were).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass

_VIEWS = itertools.count()
OPS = {">=": ">=", "<=": "<=", ">": ">", "<": "<", "==": "=", "!=": "<>"}


class StudioError(ValueError):
    """A condition names an unknown column or operator, or there are no score files."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: float | bool | str

    @classmethod
    def parse(cls, text: str) -> "Condition":
        """'rules_value >= 0.5' -> Condition (for the CLI)."""
        for op in sorted(OPS, key=len, reverse=True):
            if op in text:
                col, raw = (p.strip() for p in text.split(op, 1))
                low = raw.lower()
                value: float | bool | str = (low == "true") if low in ("true", "false") else raw
                if not isinstance(value, bool):
                    try:
                        value = float(raw)
                    except ValueError:
                        value = raw.strip("'\"")
                return cls(col, op, value)
        raise StudioError(f"no operator in {text!r}; use one of {', '.join(OPS)}")


def score_files(out_dir: str) -> list[str]:
    """The run's score files, sorted: local paths, or URIs on object storage."""
    import pyarrow.fs as pafs

    from curation.pipeline.corpus.shards import filesystem, uri_of

    try:
        fs, root = filesystem(out_dir)
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except (OSError, ValueError) as exc:
        raise StudioError(f"{out_dir}: cannot be listed ({exc})") from exc
    files = sorted(uri_of(fs, i.path) for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".scores.parquet"))
    if not files:
        raise StudioError(f"no score files under {out_dir}: run the corpus scorers first")
    return files


def _relation(con, files: list[str]) -> tuple[str, list]:
    """(FROM clause, its parameters) reading `files` with columns matched by name. Local files go
    to DuckDB's read_parquet (parallel, with projection pushdown); files on object storage are one
    pyarrow dataset (their unified schema) that DuckDB scans, also reading only the columns asked."""
    if "://" not in files[0]:
        return "read_parquet(?, union_by_name=true)", [files]
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.shards import filesystem

    fs, _ = filesystem(files[0])
    paths = [filesystem(f)[1] for f in files]
    schema = pa.unify_schemas([pq.read_schema(p, filesystem=fs) for p in paths]).remove_metadata()
    name = f"scores_{next(_VIEWS)}"
    con.register(name, pads.dataset(paths, schema=schema, format="parquet", filesystem=fs))
    return name, []


def _scan(files: list[str], threads: int | None = None) -> tuple:
    """(connection, FROM clause, its parameters, {column: type}) over `files`: the relation is set
    up once (on object storage that reads every footer) and serves the schema and the query."""
    con = _connect(threads)
    rel, params = _relation(con, files)
    rows = con.execute(f"DESCRIBE SELECT * FROM {rel}", params).fetchall()
    return con, rel, params, {r[0]: r[1] for r in rows}


def _where(conditions: list[Condition], schema: dict[str, str]) -> tuple[str, list]:
    parts, params = [], []
    for c in conditions:
        if c.column not in schema:
            known = ", ".join(sorted(k for k in schema if k.endswith(("_value", "_keep")) or k in ("n_chars", "lang", "source")))
            raise StudioError(f"unknown column {c.column!r}; score files have: {known}")
        if c.op not in OPS:
            raise StudioError(f"unknown operator {c.op!r}; use one of {', '.join(OPS)}")
        parts.append(f'"{c.column}" {OPS[c.op]} ?')
        params.append(c.value)
    return (" AND ".join(parts) or "TRUE"), params


def _connect(threads: int | None = None):
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def counts(out_dir: str, conditions: list[Condition], *, threads: int | None = None) -> dict:
    """Kept documents and characters per (lang, source) under the conditions, with totals."""
    files = score_files(out_dir)
    con, rel, rel_params, schema = _scan(files, threads)
    where, params = _where(conditions, schema)
    has_tokens = "n_tokens" in schema
    tokens = "coalesce(sum(CASE WHEN k THEN n_tokens END), 0)" if has_tokens else "NULL"
    t0 = time.perf_counter()
    # the conditions are evaluated once per row (k), then summed per group
    rows = con.execute(
        f"""SELECT lang, source, count(*) AS docs, sum(k::INTEGER) AS kept,
                   coalesce(sum(CASE WHEN k THEN n_chars END), 0) AS kept_chars, {tokens} AS kept_tokens
            FROM (SELECT lang, source, n_chars, {'n_tokens,' if has_tokens else ''} coalesce({where}, FALSE) AS k
                  FROM {rel})
            GROUP BY lang, source ORDER BY lang, source""",
        params + rel_params).fetchall()
    by = [{"lang": r[0], "source": r[1], "docs": r[2], "kept": r[3], "kept_chars": int(r[4]),
           "kept_tokens": None if r[5] is None else int(r[5])} for r in rows]
    return {"docs": sum(b["docs"] for b in by), "kept": sum(b["kept"] for b in by),
            "kept_chars": sum(b["kept_chars"] for b in by),
            "kept_tokens": sum(b["kept_tokens"] or 0 for b in by) if has_tokens else None, "by": by, "files": len(files),
            "seconds": time.perf_counter() - t0}


def columns(out_dir: str) -> dict[str, list[str]]:
    """The score files' threshold columns: {"values": [S_value...], "keeps": [S_keep...]} (sorted)."""
    schema = _scan(score_files(out_dir))[3]
    return {"values": sorted(c for c, t in schema.items() if c.endswith("_value") and t in ("DOUBLE", "FLOAT")),
            "keeps": sorted(c for c, t in schema.items() if c.endswith("_keep") and t == "BOOLEAN")}


def histogram(out_dir: str, column: str, *, bins: int = 40, split: str = "") -> dict:
    """Equal-width bins of one value column over every score file: {"lo", "hi", "n", "series":
    {label: counts}} (one series "all", or one per lang / source when split names it)."""
    files = score_files(out_dir)
    con, rel, rel_params, schema = _scan(files)
    if column not in schema:
        raise StudioError(f"unknown column {column!r}")
    if split not in ("", "lang", "source"):
        raise StudioError(f"split by lang or source, not {split!r}")
    valid = f'"{column}" IS NOT NULL AND NOT isnan("{column}")'
    lo, hi, n = con.execute(f'SELECT min("{column}"), max("{column}"), count(*) FROM {rel} '
                            f"WHERE {valid}", rel_params).fetchall()[0]
    if lo is None:
        return {"lo": None, "hi": None, "n": 0, "series": {}}
    width = (hi - lo) / bins if hi > lo else 1.0
    label = split if split else "'all'"
    rows = con.execute(
        f"""SELECT {label} AS s, least(CAST(floor(("{column}" - ?) / ?) AS INTEGER), {bins - 1}) AS b, count(*)
            FROM {rel} WHERE {valid} GROUP BY s, b""", [lo, width] + rel_params).fetchall()
    series: dict[str, list[int]] = {}
    for s, b, c in sorted(rows, key=lambda r: (str(r[0]), r[1])):
        series.setdefault(str(s or "-"), [0] * bins)[int(b)] += c
    return {"lo": float(lo), "hi": float(hi if hi > lo else lo + 1.0), "n": int(n), "series": series}


def _sha256(uri: str) -> str:
    from curation.pipeline.corpus.shards import filesystem

    fs, path = filesystem(uri)
    h = hashlib.sha256()
    with fs.open_input_stream(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_path(uri: str) -> str:
    """The shard a score file was computed from (score.py writes it into the file's metadata)."""
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.shards import filesystem

    fs, path = filesystem(uri)
    meta = pq.read_schema(path, filesystem=fs).metadata or {}
    return meta.get(b"medstudio.source_path", b"").decode()


def freeze(out_dir: str, conditions: list[Condition], dest: str, *, name: str = "", source: dict | None = None) -> dict:
    """Write the frozen selection (kept ids per shard + manifest) under dest, a folder or a URI;
    returns the manifest.

    `source` ({"uri", "mapping"} of the corpus) goes into the manifest with each shard's source
    path, so that a reader (training) can stream the kept documents without the database."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.score import _write_atomic
    from curation.pipeline.corpus.shards import filesystem, join_uri

    files = score_files(out_dir)
    con, _, _, schema = _scan(files)
    where, params = _where(conditions, schema)
    fs, root = filesystem(dest)
    fs.create_dir(join_uri(root, "kept"), recursive=True)
    shards = []
    for f in files:
        key = f.rsplit("/", 1)[1][: -len(".scores.parquet")]
        rel, rel_params = _relation(con, [f])
        total = con.execute(f"SELECT count(*) FROM {rel}", rel_params).fetchall()[0][0]
        kept = con.sql(f"SELECT doc_id, n_chars FROM {rel} WHERE {where} ORDER BY doc_id",
                       params=rel_params + params).to_arrow_table()
        target = join_uri(root, "kept", f"{key}.kept.parquet")
        # atomic: a shard's kept file is complete or absent
        _write_atomic(fs, target, lambda tmp: pq.write_table(kept, tmp, filesystem=fs))
        shards.append({"shard": key, "score_file": f, "sha256": _sha256(f), "docs": total, "kept": kept.num_rows,
                       "kept_chars": int(pc.sum(kept.column("n_chars")).as_py() or 0),
                       "kept_file": join_uri(dest, "kept", f"{key}.kept.parquet"), "source_path": _source_path(f)})
    manifest = {"name": name, "conditions": [[c.column, c.op, c.value] for c in conditions],
                "docs": sum(s["docs"] for s in shards), "kept": sum(s["kept"] for s in shards),
                "kept_chars": sum(s["kept_chars"] for s in shards), "source": source or {}, "shards": shards}
    body = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")

    def write(tmp):
        with fs.open_output_stream(tmp) as fh:
            fh.write(body)

    _write_atomic(fs, join_uri(root, "manifest.json"), write)
    return manifest


def verify_frozen(dest: str) -> list[str]:
    """Score files whose content changed since the selection was frozen (empty: still exact)."""
    from curation.pipeline.corpus.shards import join_uri, read_bytes

    manifest = json.loads(read_bytes(join_uri(dest, "manifest.json")).decode("utf-8"))
    changed = []
    for s in manifest["shards"]:
        try:
            same = _sha256(s["score_file"]) == s["sha256"]
        except FileNotFoundError:
            same = False
        if not same:
            changed.append(s["shard"])
    return changed
