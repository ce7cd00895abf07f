"""`minhash` as a corpus-run scorer: near-duplicates marked in every shard's score file.

A per-shard scorer cannot find near-duplicates (a document's copy may sit in any other shard), so a
run with `--scorer minhash` scores its other scorers shard by shard first, then runs the staged
dedup (curation/pipeline/corpus/dedup.py) over the shards that have a score file, and finally adds
to each score file, rewritten atomically:

- `minhash_value`: 1.0 for a document dropped as a near-duplicate, else 0.0 (failed checks, as
  the rules count failed rules);
- `minhash_keep`, `minhash_reason` (`near_duplicate_within_source` / `near_duplicate_across_sources`,
  SF-Med's two passes) and `minhash_duplicate_of` (the id of the document kept in its place);
- `keep` / `reason` recomputed over every scorer, minhash last.

Resume: the dedup's signature files are reused, and a score file already carrying the marks of the
same dedup (the same shards and settings: a fingerprint in its metadata) is left alone. When the
set of scored shards changes (a retry of failed shards), every score file is marked again, since a
new shard may hold the copy of a document in an old one.
"""
from __future__ import annotations

import hashlib
import json

MH_COLUMNS = ("minhash_value", "minhash_keep", "minhash_reason", "minhash_duplicate_of")
REASONS = {"source": "near_duplicate_within_source", "merged": "near_duplicate_across_sources"}
# The dedup settings a run may set: checked at launch (curation/corpus/services.check_scorers)
PARAMS = ("threshold", "by_source", "partitions", "num_perm", "bands", "ngram_zh", "ngram_en", "seed",
          "max_bucket_pairs", "docs_per_partition", "pairs_per_verify", "sigs_per_round")
# how the verification is sized, not what it finds: left out of the marks' fingerprint
SIZING = ("pairs_per_verify", "sigs_per_round")
_FP_KEY = b"medstudio.minhash"


def fingerprint(keys: list[str], params: dict) -> str:
    params = {k: v for k, v in params.items() if k not in SIZING}
    return hashlib.sha256(json.dumps({"shards": sorted(keys), "params": params}, sort_keys=True).encode()).hexdigest()[:16]


def mark_shard(out_uri: str, key: str, fp: str) -> dict:
    """Add the dedup's decisions for one shard to its score file (atomically); skipped when the file
    already carries this dedup's marks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.dedup import _paths
    from curation.pipeline.corpus.score import _write_atomic, overall_reason, score_path
    from curation.pipeline.corpus.shards import filesystem

    fs, out_dir = filesystem(out_uri)
    path = score_path(out_dir, key)
    meta = dict(pq.ParquetFile(path, filesystem=fs).schema_arrow.metadata or {})
    if meta.get(_FP_KEY) == fp.encode():
        return {"key": key, "skipped": True, "dropped": None}
    t = pq.read_table(path, filesystem=fs)
    dec = pq.read_table(_paths(out_dir, key)[1], filesystem=fs, columns=["id", "keep", "duplicate_of", "stage"])
    if dec.column("id").to_pylist() != t.column("doc_id").to_pylist():
        raise ValueError(f"shard {key}: the dedup decisions do not list the score file's documents in its order")
    for c in MH_COLUMNS + ("keep", "reason"):
        if c in t.column_names:
            t = t.drop_columns([c])
    keep = dec.column("keep").to_pylist()
    stage = dec.column("stage").to_pylist()
    cols = {"minhash_value": pa.array([0.0 if k else 1.0 for k in keep], pa.float64()),
            "minhash_keep": pa.array(keep, pa.bool_()),
            "minhash_reason": pa.array(["" if k else REASONS.get(s, "near_duplicate") for k, s in zip(keep, stage)], pa.string()),
            "minhash_duplicate_of": dec.column("duplicate_of").cast(pa.string())}
    for name, arr in cols.items():
        t = t.append_column(name, arr)
    scorers = json.loads(meta.get(b"medstudio.scorers", b"{}").decode() or "{}")
    order = [s for s in scorers if s != "minhash" and f"{s}_keep" in t.column_names] + ["minhash"]
    keeps = {s: t.column(f"{s}_keep").to_pylist() for s in order}
    reasons = {s: t.column(f"{s}_reason").to_pylist() for s in order}
    overall_keep, overall = [], []
    for i in range(t.num_rows):
        first = next((s for s in order if not keeps[s][i]), None)
        overall_keep.append(first is None)
        overall.append("" if first is None else overall_reason(first, reasons[first][i]))
    t = t.append_column("keep", pa.array(overall_keep, pa.bool_())).append_column("reason", pa.array(overall, pa.string()))
    meta[_FP_KEY] = fp.encode()
    t = t.replace_schema_metadata(meta)

    def w(tmp):
        with fs.open_output_stream(tmp) as fh:
            pq.write_table(t, fh)

    _write_atomic(fs, path, w)
    return {"key": key, "skipped": False, "dropped": keep.count(False), "kept": sum(overall_keep)}


def scored_keys(out_uri: str) -> list[str]:
    """The shards of a run that have a score file."""
    import pyarrow.fs as pafs

    from curation.pipeline.corpus.shards import filesystem

    fs, out_dir = filesystem(out_uri)
    suffix = ".scores.parquet"
    return sorted(i.base_name[: -len(suffix)] for i in fs.get_file_info(pafs.FileSelector(out_dir))
                  if i.type == pafs.FileType.File and i.base_name.endswith(suffix))


def run_minhash(spec: dict, keys: list[str], *, log) -> dict:
    """The dedup over the scored shards `keys`, then each score file marked (Ray tasks)."""
    import ray

    from curation.pipeline.corpus.dedup import DedupSpec, run_dedup

    params = dict(spec["scorers"]["minhash"] or {})  # checked at launch
    if not keys:
        log("minhash: no shard was scored, nothing to compare")
        return {"docs": 0, "dropped": 0, "clusters": 0, "partitions": 0, "marked": 0, "already_marked": 0}
    fp = fingerprint(keys, params)
    if spec.get("dedup_sigs_per_round"):  # the site's setting, unless the run sets its own
        params.setdefault("sigs_per_round", int(spec["dedup_sigs_per_round"]))
    res = run_dedup(DedupSpec(uri=spec["uri"], out_dir=spec["out_dir"], mapping=spec.get("mapping") or {},
                              keys=sorted(keys), **params), log=log)
    mark = ray.remote(num_cpus=1, max_retries=2)(mark_shard)
    marked = ray.get([mark.remote(spec["out_dir"], k, fp) for k in sorted(keys)])
    return {"docs": res["docs"], "dropped": res["dropped"], "clusters": res["clusters"], "partitions": res["partitions"],
            "marked": sum(not m["skipped"] for m in marked), "already_marked": sum(m["skipped"] for m in marked)}
