"""MinHash-LSH near-duplicate removal over a sharded corpus, as a staged job on Ray
(docs/METHODS.md, "Corpus-scale dedup").

The single-machine path (curation/pipeline/minhash.py) holds every signature in memory. Here the
same method runs in four stages whose memory does not grow with the corpus:

1. signatures, one Ray task per shard: the shard's texts are sketched with the same tokeniser,
   n-grams and rensa R-MinHash as the single-machine path, and written (atomically) to
   ``<out>/_dedup/sig/<shard>.parquet`` (document number, id, source, signature);
2. band buckets, one Ray task per partition: each (band, band key[, source]) bucket belongs to
   exactly one of ``partitions`` partitions (a hash of the key), so a task reads only its slice
   of every signature file, forms the bucket's candidate pairs exactly as the single-machine path
   does (all pairs, or a star around the first member for a bucket larger than
   ``max_bucket_pairs``) and verifies them by signature agreement (the ``estimate`` verifier: the
   exact n-gram Jaccard would need the texts of both members in one place);
3. connected components of the verified pairs, on the driver: its memory is the number of
   duplicate *pairs*, not documents (as datatrove's clustering stage). The lowest document
   number of each component is kept (policy ``first``: corpus order);
4. keep or drop, one Ray task per shard: ``<out>/_dedup/<shard>.dedup.parquet`` with id, keep,
   duplicate_of and cluster for every document of the shard.

SF-Med's order: stages 2-3 run first within each source (the bucket key includes the source),
then once across sources over the survivors. With one source only the first pass runs, as in the
single-machine path. Documents are numbered shard by shard in the corpus's sorted shard order, so
on the same texts in the same order both paths find the same clusters and drop the same
documents (a test checks it).

Memory per task: stage 1 one shard; stage 2 about ``docs x bands / partitions`` band entries (40
bytes each) plus the signatures of the documents in its candidate pairs, and by default
``partitions`` grows with the corpus (one per ``docs_per_partition`` documents), which bounds it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curation.pipeline.minhash import _P, MinHashConfig, UnionFind, sketch

EMPTY = np.iinfo(np.uint32).max
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class DedupSpec:
    uri: str
    out_dir: str
    mapping: dict
    num_perm: int = 128
    bands: int = 32
    threshold: float = 0.8
    ngram_zh: int = 5
    ngram_en: int = 5
    seed: int = 42
    max_bucket_pairs: int = 64
    # 0: one partition per `docs_per_partition` documents, so a stage-2 task holds about the same
    # number of band entries (docs_per_partition x bands, 40 bytes each) whatever the corpus size
    partitions: int = 0
    by_source: bool = True
    docs_per_partition: int = 100_000
    # only these shard keys (a corpus run dedups the shards it scored); None: every shard
    keys: list[str] | None = None

    def config(self) -> MinHashConfig:
        return MinHashConfig(num_perm=self.num_perm, bands=self.bands, threshold=self.threshold,
                             ngram_zh=self.ngram_zh, ngram_en=self.ngram_en, seed=self.seed, verify="estimate",
                             max_bucket_pairs=self.max_bucket_pairs)


def _source_hash(sources: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in sources],
                    dtype=np.uint64)


def _band_keys(sig: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """(N, bands) uint64: each band's rows folded into one key, as candidate_pairs does."""
    s = sig.astype(np.uint64)
    r = cfg.rows
    keys = np.empty((s.shape[0], cfg.bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(cfg.bands):
            key = s[:, b * r].copy()
            for j in range(1, r):
                key = key * _P + s[:, b * r + j]
            keys[:, b] = key
    return keys


def _paths(out_dir: str, key: str) -> tuple[str, str]:
    base = f"{out_dir.rstrip('/')}/_dedup"
    return f"{base}/sig/{key}.parquet", f"{base}/{key}.dedup.parquet"


# -- stage 1 -----------------------------------------------------------------------------------

def signatures_shard(spec: dict, shard: dict) -> dict:
    """Sketch one shard into its signature file (skipped when the file exists: resume)."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.score import _write_atomic
    from curation.pipeline.corpus.shards import Mapping, filesystem, iter_docs

    s = DedupSpec(**spec)
    cfg = s.config()
    fs, _ = filesystem(s.uri)
    sig_path, _ = _paths(s.out_dir, shard["key"])
    if fs.get_file_info(sig_path).type != pafs.FileType.NotFound:
        # reused when its documents are numbered as now (a different set of shards shifts the numbers)
        first = pq.read_table(sig_path, filesystem=fs, columns=["doc"]).column("doc").to_numpy()
        if first.size == 0 or int(first[0]) == shard["first_doc"]:
            return {"key": shard["key"], "docs": int(first.size), "skipped": True}
    ids, sources, sigs = [], [], []
    for batch in iter_docs(fs, shard["path"], shard["fmt"], Mapping.from_dict(s.mapping), batch_size=2000):
        sig, _ = sketch([d["text"] for d in batch], cfg)
        sigs.append(sig)
        ids += [d["id"] for d in batch]
        sources += [d["source"] for d in batch]
    sig = np.concatenate(sigs) if sigs else np.zeros((0, cfg.num_perm), dtype=np.uint32)
    doc = shard["first_doc"] + np.arange(len(ids), dtype=np.int64)
    table = pa.table({"doc": doc, "id": pa.array(ids, pa.string()), "source": pa.array(sources, pa.string()),
                      "sig": pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), cfg.num_perm)})
    fs.create_dir(sig_path.rsplit("/", 1)[0], recursive=True)
    _write_atomic(fs, sig_path, lambda tmp: pq.write_table(table, tmp, filesystem=fs))
    return {"key": shard["key"], "docs": len(ids), "skipped": False}


def _read_sig(fs, path: str, num_perm: int, columns=("doc", "source", "sig")) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(path, filesystem=fs, columns=list(columns))
    out: dict[str, Any] = {}
    if "doc" in columns:
        out["doc"] = t.column("doc").to_numpy()
    if "id" in columns:
        out["id"] = t.column("id").to_pylist()
    if "source" in columns:
        out["source"] = t.column("source").to_pylist()
    if "sig" in columns:
        flat = t.column("sig").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out["sig"] = flat.reshape(-1, num_perm).astype(np.uint32, copy=False)
    return out


# -- stage 2 -----------------------------------------------------------------------------------

def buckets_partition(spec: dict, sig_paths: list[str], partition: int, within_source: bool,
                      dropped: np.ndarray) -> list[tuple[int, int, float]]:
    """Verified candidate pairs (doc a < doc b, similarity) of the buckets in one partition.

    Two reads of the signature files keep the task's memory to its slice of band entries: the
    first keeps only (band, key, source, doc) of the entries in this partition (40 bytes each, about
    docs x bands / partitions of them) and forms the candidate pairs; the second keeps the
    signatures of the documents in those pairs only. (Keeping every signature beside its entries
    held almost every document's 512 bytes in every task, since with 32 bands nearly every document
    has a band in each of 8 partitions: memory grew with the corpus whatever the partitions.)
    """
    from curation.pipeline.corpus.shards import filesystem

    s = DedupSpec(**spec)
    cfg = s.config()
    fs, _ = filesystem(s.uri)
    P = np.uint64(s.partitions)
    bands_col, keys_col, src_col, doc_col = [], [], [], []
    for path in sig_paths:
        part = _read_sig(fs, path, cfg.num_perm)
        if not len(part["doc"]):
            continue
        alive = ~np.all(part["sig"] == EMPTY, axis=1)  # empty texts are nobody's duplicate
        if dropped.size:
            alive &= ~np.isin(part["doc"], dropped)
        if not alive.any():
            continue
        doc, sig = part["doc"][alive], part["sig"][alive]
        src = (_source_hash([x for x, a in zip(part["source"], alive) if a]) if within_source
               else np.zeros(doc.size, dtype=np.uint64))
        keys = _band_keys(sig, cfg)
        del part, sig
        with np.errstate(over="ignore"):
            mixed = keys ^ (src[:, None] * _MIX) ^ (np.arange(cfg.bands, dtype=np.uint64)[None, :] * _P)
        rows, bands = np.nonzero(mixed % P == np.uint64(partition))
        if rows.size == 0:
            continue
        bands_col.append(bands.astype(np.int64))
        keys_col.append(keys[rows, bands])
        src_col.append(src[rows])
        doc_col.append(doc[rows].astype(np.int64))
    if not doc_col:
        return []
    band, key, src = np.concatenate(bands_col), np.concatenate(keys_col), np.concatenate(src_col)
    docs = np.concatenate(doc_col)
    del bands_col, keys_col, src_col, doc_col
    order = np.lexsort((docs, src, key, band))
    band, key, src, docs = band[order], key[order], src[order], docs[order]
    new = np.concatenate(([True], (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (src[1:] != src[:-1])))
    starts = np.flatnonzero(new)
    ends = np.concatenate((starts[1:], [band.size]))
    del band, key, src, new, order
    pairs: set[tuple[int, int]] = set()
    multi = ends - starts >= 2  # most buckets hold one document: only the others reach Python
    for a, b in zip(starts[multi].tolist(), ends[multi].tolist()):
        members = docs[a:b].tolist()  # sorted by document number within the bucket
        if b - a <= cfg.max_bucket_pairs:
            pairs.update((members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members)))
        else:
            pairs.update((members[0], m) for m in members[1:])
    if not pairs:
        return []
    del docs, starts, ends
    # second read: the signatures of the documents in a candidate pair, and nothing else
    needed = np.unique(np.fromiter((d for pair in pairs for d in pair), dtype=np.int64, count=2 * len(pairs)))
    sigs: dict[int, np.ndarray] = {}
    for path in sig_paths:
        part = _read_sig(fs, path, cfg.num_perm, ("doc", "sig"))
        hit = np.isin(part["doc"], needed)
        if hit.any():
            sigs.update(zip(part["doc"][hit].tolist(), part["sig"][hit]))
    out = []
    for da, db in sorted(pairs):  # a deterministic edge order
        sim = float(np.mean(sigs[da] == sigs[db]))
        if sim >= cfg.threshold:
            out.append((da, db, sim))
    return out


# -- stage 3 -----------------------------------------------------------------------------------

def components(edges: list[tuple[int, int, float]]) -> tuple[dict[int, int], list[list[int]]]:
    """(dropped doc -> its kept doc, components); the lowest document of a component is kept."""
    uf = UnionFind()
    for a, b, _ in edges:
        uf.union(a, b)
    dropped: dict[int, int] = {}
    groups = uf.groups()
    for members in groups:
        keeper = members[0]
        for m in members[1:]:
            dropped[m] = keeper
    return dropped, groups


# -- stage 4 -----------------------------------------------------------------------------------

def decisions_shard(spec: dict, shard: dict, dropped: dict[int, tuple[int, str]], cluster: dict[int, int],
                    ids: dict[int, str]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.score import _write_atomic
    from curation.pipeline.corpus.shards import filesystem

    s = DedupSpec(**spec)
    fs, _ = filesystem(s.uri)
    sig_path, out_path = _paths(s.out_dir, shard["key"])
    part = _read_sig(fs, sig_path, s.num_perm, columns=("doc", "id"))
    docs = part["doc"].tolist()
    keep = [d not in dropped for d in docs]
    table = pa.table({
        "id": pa.array(part["id"], pa.string()), "shard": pa.array([shard["key"]] * len(docs), pa.string()),
        "keep": pa.array(keep, pa.bool_()),
        "duplicate_of": pa.array([ids.get(dropped[d][0]) if d in dropped else None for d in docs], pa.string()),
        "stage": pa.array([dropped[d][1] if d in dropped else None for d in docs], pa.string()),
        "cluster": pa.array([ids.get(cluster[d]) if d in cluster else None for d in docs], pa.string()),
    })
    _write_atomic(fs, out_path, lambda tmp: pq.write_table(table, tmp, filesystem=fs))
    return {"key": shard["key"], "docs": len(docs), "dropped": len(docs) - sum(keep)}


# -- driver ------------------------------------------------------------------------------------

def plan_shards(uri: str, keys: list[str] | None = None) -> list[dict]:
    """Shards in corpus order with the number of their first document (from the shard metadata);
    `keys`: only those shards (the others are not opened)."""
    from curation.pipeline.corpus.score import shard_key
    from curation.pipeline.corpus.shards import count_docs, filesystem, list_shards

    fs, found = list_shards(uri)
    _, root = filesystem(uri)
    shards, first = [], 0
    wanted = None if keys is None else set(keys)
    for path, fmt, _size in found:
        key = shard_key(root, path)
        if wanted is not None and key not in wanted:
            continue
        n = count_docs(fs, path, fmt)
        shards.append({"path": path, "fmt": fmt, "key": key, "first_doc": first, "n_docs": n})
        first += n
    return shards


def run_dedup(spec: DedupSpec, *, log=print) -> dict:
    """Run the four stages on the Ray cluster this process is connected to (ray.init first)."""
    import ray

    t0 = time.monotonic()
    raw = asdict(spec)
    shards = plan_shards(spec.uri, spec.keys)
    sig_task = ray.remote(num_cpus=1, max_retries=2)(signatures_shard)
    bucket_task = ray.remote(num_cpus=1, max_retries=2)(buckets_partition)
    decide_task = ray.remote(num_cpus=1, max_retries=2)(decisions_shard)
    stats = ray.get([sig_task.remote(raw, sh) for sh in shards])
    n_docs = sum(s["docs"] for s in stats)
    if raw["partitions"] <= 0:
        raw["partitions"] = max(1, -(-n_docs // max(1, spec.docs_per_partition)))
    log(f"stage 1: signatures of {n_docs} documents in {len(shards)} shard(s) "
        f"({sum(s['skipped'] for s in stats)} reused); {raw['partitions']} bucket partition(s)")
    sig_paths = [_paths(spec.out_dir, sh["key"])[0] for sh in shards]
    n_sources = len({src for p in sig_paths for src in _read_sig(_fs(spec.uri), p, spec.num_perm, ("source",))["source"]})
    passes = [("source", True)] if spec.by_source else []
    if not spec.by_source or n_sources > 1:
        passes.append(("merged", False))
    dropped: dict[int, tuple[int, str]] = {}
    all_edges: list[tuple[int, int, float]] = []
    for stage, within in passes:
        gone = ray.put(np.array(sorted(dropped), dtype=np.int64))
        edges = [e for part in ray.get([bucket_task.remote(raw, sig_paths, p, within, gone)
                                        for p in range(raw["partitions"])]) for e in part]
        found, groups = components(edges)
        all_edges += edges
        for doc, keeper in found.items():
            dropped[doc] = (keeper, stage)
        log(f"stage 2-3 ({stage}): {len(edges)} verified pair(s), {len(groups)} cluster(s), {len(found)} dropped")
    uf = UnionFind()
    for a, b, _ in all_edges:
        uf.union(a, b)
    cluster: dict[int, int] = {}
    for members in uf.groups():
        kept = [m for m in members if m not in dropped]
        cid = kept[0] if kept else members[0]
        for m in members:
            cluster[m] = cid
    ids: dict[int, str] = {}
    wanted = np.array(sorted(set(cluster) | {k for k, _ in dropped.values()}), dtype=np.int64)
    if wanted.size:
        for p in sig_paths:
            part = _read_sig(_fs(spec.uri), p, spec.num_perm, ("doc", "id"))
            hit = np.isin(part["doc"], wanted)
            ids.update({int(d): part["id"][i] for i, d in zip(np.flatnonzero(hit), part["doc"][hit])})
    dref, cref, iref = ray.put(dropped), ray.put(cluster), ray.put(ids)
    per_shard = ray.get([decide_task.remote(raw, sh, dref, cref, iref) for sh in shards])
    total = sum(s["docs"] for s in per_shard)
    log(f"stage 4: kept {total - len(dropped)} of {total} documents ({len(dropped)} near-duplicates dropped)")
    return {"docs": total, "dropped": len(dropped), "clusters": len(uf.groups()), "shards": per_shard,
            "passes": [p for p, _ in passes], "partitions": raw["partitions"], "seconds": time.monotonic() - t0}


def _fs(uri: str):
    from curation.pipeline.corpus.shards import filesystem

    return filesystem(uri)[0]


def main(argv: list[str]) -> int:
    """Ray job entrypoint: `python -m curation.pipeline.corpus.dedup SPEC_B64` (see corpus handlers)."""
    import ray

    from curation.pipeline.corpus.ray_job import decode_spec, emit

    raw = decode_spec(argv[1])
    address = raw.pop("ray_address", "") or "auto"
    ray.init(address=address, log_to_driver=True)
    out = run_dedup(DedupSpec(**raw), log=lambda line: emit("log", line=line))
    emit("end", **{k: v for k, v in out.items() if k != "shards"},
         shards=[{"key": s["key"], "docs": s["docs"], "dropped": s["dropped"]} for s in out["shards"]])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv))
