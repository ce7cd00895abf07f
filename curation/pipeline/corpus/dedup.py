"""MinHash-LSH near-duplicate removal over a sharded corpus, as a staged job on Ray
(docs/METHODS.md, "Corpus-scale dedup").

The single-machine path (curation/pipeline/minhash.py) holds every signature in memory. Here the
same method runs in four stages whose memory does not grow with the corpus:

1. signatures and shuffle, one Ray task per shard: the shard's texts are sketched with the same
   tokeniser, n-grams and rensa R-MinHash as the single-machine path and written (atomically) to
   ``<out>/_dedup/sig/<shard>.parquet`` (document number, id, source, signature); each document's
   band keys are then shuffled into ``<out>/_dedup/bands/<shard>.parquet``, one row group per
   partition (a hash of band and key picks one of ``partitions``), as datatrove's signature stage
   writes one file per bucket;
2. band buckets, one Ray task per partition: a task reads its own row group of every band file
   and forms each (band, band key[, source]) bucket's candidate pairs exactly as the
   single-machine path does (all pairs, or a star around the first member for a bucket larger
   than ``max_bucket_pairs``). The pairs are then verified by signature agreement (the
   ``estimate`` verifier: the exact n-gram Jaccard would need the texts of both members in one
   place) in a second shuffle: the driver deduplicates the candidate pairs and deals each to one
   verification task (a hash of the pair); one task per shard reads its signature file once and
   sends each verification task, through Ray's object store, the signatures of its documents that
   the task's pairs name;
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

Memory and reads per task: stage 1 one shard; stage 2 its partition's band entries, about
``docs x bands / partitions`` of them (26 bytes each), and its candidate pairs; a gather task one
shard's signatures; a verification task at most ``pairs_per_verify`` pairs and the signatures they
name. By default ``partitions`` grows with the corpus (one per ``docs_per_partition`` documents,
counted from the shard metadata before stage 1). Each band file and each signature file is read
once per pass, whatever the partition count. Stage 4 gets only its shard's share of the
duplicates. The driver holds the candidate pairs (16 bytes each), the verified pairs and the
dropped documents (as datatrove's clustering stage holds the duplicate pairs).
"""
from __future__ import annotations

import hashlib
import json
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
    docs_per_partition: int = 50_000
    # only these shard keys (a corpus run dedups the shards it scored); None: every shard
    keys: list[str] | None = None
    # verification sizing (memory, not results): pairs per verification task, and signatures in
    # Ray's object store per round (MEDSTUDIO_DEDUP_SIGS_PER_ROUND; raise it on nodes with a
    # larger object store for fewer rounds, each of which re-reads the signature files it needs)
    pairs_per_verify: int = 250_000
    sigs_per_round: int = 500_000  # 256 MB of signatures (128 x 4 bytes each)

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


def _paths(out_dir: str, key: str) -> tuple[str, str, str]:
    """(signature file, decisions file, band file) of a shard."""
    base = f"{out_dir.rstrip('/')}/_dedup"
    return f"{base}/sig/{key}.parquet", f"{base}/{key}.dedup.parquet", f"{base}/bands/{key}.parquet"


# -- stage 1 -----------------------------------------------------------------------------------

_META = b"medstudio.dedup"
# rows per row group of a signature file: stage 2 and the driver read only the row groups that
# hold the documents they need (4,096 signatures are 2 MB)
SIG_ROW_GROUP = 4096


def partition_of(keys: np.ndarray, bands: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each (band, band key) bucket. The source is left out on purpose, so that
    the within-source pass and the merged pass read the same band files: a bucket of the merged
    pass is the union of that band key's buckets of every source, all in one partition."""
    with np.errstate(over="ignore"):
        return ((keys ^ (bands.astype(np.uint64) * _P)) * _MIX) % np.uint64(partitions)


def _file_meta(fs, path: str) -> dict | None:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_file(path) as fh:
        raw = (pq.ParquetFile(fh).schema_arrow.metadata or {}).get(_META)
    return json.loads(raw) if raw else None


def signatures_shard(spec: dict, shard: dict) -> dict:
    """Sketch one shard into its signature file and shuffle its band entries into its band file,
    one row group per partition (both files written atomically; reused on a re-run when written
    for the same document numbers and partitions: resume)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.score import _write_atomic
    from curation.pipeline.corpus.shards import Mapping, filesystem, iter_docs

    s = DedupSpec(**spec)
    cfg = s.config()
    src_fs, _ = filesystem(s.uri)
    # the output may live on another filesystem than the corpus (a bucket's corpus, local scores)
    fs, out_dir = filesystem(s.out_dir)
    sig_path, _, band_path = _paths(out_dir, shard["key"])
    sig_meta, band_meta = _file_meta(fs, sig_path), _file_meta(fs, band_path)
    # what a signature depends on: the text (mapping) and the sketch settings; a band file also on
    # the bands and the partitions
    sketch_key = {"mapping": s.mapping, "num_perm": cfg.num_perm, "seed": cfg.seed, "ngram_zh": cfg.ngram_zh,
                  "ngram_en": cfg.ngram_en}
    sig_ok = bool(sig_meta) and sig_meta["first_doc"] == shard["first_doc"] and sig_meta.get("sketch") == sketch_key
    if (sig_ok and band_meta and band_meta["first_doc"] == shard["first_doc"] and band_meta["partitions"] == s.partitions
            and band_meta.get("bands") == cfg.bands):
        return {"key": shard["key"], "docs": sig_meta["docs"], "sources": sig_meta["sources"], "skipped": True}
    fs.create_dir(sig_path.rsplit("/", 1)[0], recursive=True)
    fs.create_dir(band_path.rsplit("/", 1)[0], recursive=True)
    if sig_ok:  # the partitions or bands changed (the corpus grew): only the shuffle is redone
        part = _read_sig(fs, sig_path, cfg.num_perm, ("source", "sig"))
        sources, sig = part["source"], part["sig"]
    else:
        ids, sources, sigs = [], [], []
        for batch in iter_docs(src_fs, shard["path"], shard["fmt"], Mapping.from_dict(s.mapping), batch_size=2000):
            sg, _ = sketch([d["text"] for d in batch], cfg)
            sigs.append(sg)
            ids += [d["id"] for d in batch]
            sources += [d["source"] for d in batch]
        sig = np.concatenate(sigs) if sigs else np.zeros((0, cfg.num_perm), dtype=np.uint32)
        del sigs
        meta = {"first_doc": shard["first_doc"], "sketch": sketch_key, "docs": len(ids), "sources": sorted(set(sources))}
        table = pa.table({
            "doc": shard["first_doc"] + np.arange(len(ids), dtype=np.int64), "id": pa.array(ids, pa.string()),
            "source": pa.array(sources, pa.string()),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), cfg.num_perm),
        }).replace_schema_metadata({_META: json.dumps(meta)})
        del ids
        _write_atomic(fs, sig_path, lambda tmp: pq.write_table(table, tmp, filesystem=fs, row_group_size=SIG_ROW_GROUP))
        del table
    n = sig.shape[0]
    doc = shard["first_doc"] + np.arange(n, dtype=np.int64)
    alive = ~np.all(sig == EMPTY, axis=1)  # empty texts are nobody's duplicate
    src_of = _source_hash(sources)
    keys = _band_keys(sig[alive], cfg)
    del sig
    rows = np.repeat(np.arange(keys.shape[0]), cfg.bands)  # every (document, band), row-major
    bands = np.tile(np.arange(cfg.bands), keys.shape[0])
    key = keys.reshape(-1)
    part = partition_of(key, bands, s.partitions)
    order = np.argsort(part, kind="stable")
    entries = pa.table({"band": pa.array(bands[order].astype(np.uint16)), "key": pa.array(key[order]),
                        "src": pa.array(src_of[alive][rows[order]]), "doc": pa.array(doc[alive][rows[order]])})
    part = part[order]
    del keys, rows, bands, key, order
    cuts = np.flatnonzero(np.diff(part)) + 1
    starts = np.concatenate(([0], cuts)) if part.size else np.zeros(0, dtype=np.int64)
    ends = np.concatenate((cuts, [part.size])) if part.size else np.zeros(0, dtype=np.int64)
    meta = {"first_doc": shard["first_doc"], "partitions": s.partitions, "bands": cfg.bands,
            "row_groups": [int(part[a]) for a in starts]}  # the partition of each row group
    schema = entries.schema.with_metadata({_META: json.dumps(meta)})

    def write(tmp):
        with pq.ParquetWriter(tmp, schema, filesystem=fs) as w:
            for a, b in zip(starts.tolist(), ends.tolist()):
                w.write_table(entries.slice(a, b - a).replace_schema_metadata(schema.metadata), row_group_size=b - a)

    _write_atomic(fs, band_path, write)
    return {"key": shard["key"], "docs": n, "sources": sorted(set(sources)), "skipped": False}


def _read_sig(fs, path: str, num_perm: int, columns=("doc", "source", "sig"), row_groups=None) -> dict:
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as fh:
        pf = pq.ParquetFile(fh)
        t = pf.read(columns=list(columns)) if row_groups is None else pf.read_row_groups(row_groups, columns=list(columns))
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


def read_docs(fs, out_dir: str, shards: list[dict], docs: np.ndarray, num_perm: int,
              columns=("doc", "sig")) -> dict:
    """`columns` of the documents `docs` only: a document's number names its shard (numbers run
    shard by shard) and its row group there, so only those row groups are read."""
    import pyarrow.parquet as pq

    docs = np.unique(np.asarray(docs, dtype=np.int64))
    firsts = np.array([sh["first_doc"] for sh in shards], dtype=np.int64)
    which = np.searchsorted(firsts, docs, side="right") - 1
    got: dict[str, list] = {c: [] for c in columns}
    for i in np.unique(which).tolist():
        mine = docs[which == i] - shards[i]["first_doc"]
        path = _paths(out_dir, shards[i]["key"])[0]
        with fs.open_input_file(path) as fh:
            md = pq.ParquetFile(fh).metadata
        bounds = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
        groups = np.unique(np.searchsorted(bounds, mine, side="right") - 1).tolist()
        part = _read_sig(fs, path, num_perm, tuple(dict.fromkeys(("doc",) + tuple(columns))), row_groups=groups)
        hit = np.isin(part["doc"], docs)
        for c in columns:
            got[c].append(part[c][hit] if c in ("doc", "sig") else [v for v, h in zip(part[c], hit) if h])
    out: dict[str, Any] = {}
    for c in columns:
        if c == "doc":
            out[c] = np.concatenate(got[c]) if got[c] else np.zeros(0, dtype=np.int64)
        elif c == "sig":
            out[c] = np.concatenate(got[c]) if got[c] else np.zeros((0, num_perm), dtype=np.uint32)
        else:
            out[c] = [v for chunk in got[c] for v in chunk]
    return out


# -- stage 2 -----------------------------------------------------------------------------------

def buckets_partition(spec: dict, shards: list[dict], partition: int, within_source: bool,
                      dropped: np.ndarray) -> np.ndarray:
    """The candidate pairs (doc a < doc b, an (n, 2) int64 array) of the buckets in one partition.

    The task reads its own row group of every band file (stage 1 shuffled the entries: about
    docs x bands / partitions of them, 26 bytes each) and forms each bucket's pairs as the
    single-machine path does. Verification is left to `gather_signatures` and `verify_pairs`,
    which read each signature file once (a second shuffle, of the pairs' signatures only).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.shards import filesystem

    s = DedupSpec(**spec)
    cfg = s.config()
    fs, out_dir = filesystem(s.out_dir)
    none = np.zeros((0, 2), dtype=np.int64)
    chunks = []
    for sh in shards:
        with fs.open_input_file(_paths(out_dir, sh["key"])[2]) as fh:
            pf = pq.ParquetFile(fh)
            meta = json.loads(pf.schema_arrow.metadata[_META])
            if meta["partitions"] != s.partitions:
                raise RuntimeError(f"shard {sh['key']}: band file written for {meta['partitions']} partitions, not {s.partitions}")
            groups = [g for g, p in enumerate(meta["row_groups"]) if p == partition]
            if groups:
                chunks.append(pf.read_row_groups(groups))
    if not chunks:
        return none
    t = pa.concat_tables(chunks)
    del chunks
    docs = t.column("doc").to_numpy()
    band, key = t.column("band").to_numpy(), t.column("key").to_numpy()
    src = t.column("src").to_numpy() if within_source else np.zeros(docs.size, dtype=np.uint64)
    del t
    if dropped.size:
        alive = ~np.isin(docs, dropped)
        docs, band, key, src = docs[alive], band[alive], key[alive], src[alive]
    order = np.lexsort((docs, src, key, band))
    band, key, src, docs = band[order], key[order], src[order], docs[order]
    del order
    new = np.concatenate(([True], (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (src[1:] != src[:-1])))
    starts = np.flatnonzero(new)
    ends = np.concatenate((starts[1:], [band.size]))
    del band, key, src, new
    pairs: set[tuple[int, int]] = set()
    multi = ends - starts >= 2  # most buckets hold one document: only the others reach Python
    for a, b in zip(starts[multi].tolist(), ends[multi].tolist()):
        members = docs[a:b].tolist()  # sorted by document number within the bucket
        if b - a <= cfg.max_bucket_pairs:
            pairs.update((members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members)))
        else:
            pairs.update((members[0], m) for m in members[1:])
    if not pairs:
        return none
    # unordered: the driver deduplicates (and so sorts) the pairs of every partition at once
    return np.fromiter((d for pair in pairs for d in pair), dtype=np.int64, count=2 * len(pairs)).reshape(-1, 2)


def gather_signatures(spec: dict, shard: dict, wanted: np.ndarray, n_dest: int) -> list:
    """The signatures of this shard's documents that verification needs, split by destination:
    `wanted` is (doc, destination) rows; returns one (docs, signatures) pair per destination
    (Ray hands each to its verification task). The shard's signature file is read once, and only
    its row groups that hold a wanted document."""
    from curation.pipeline.corpus.shards import filesystem

    s = DedupSpec(**spec)
    got = read_docs(*filesystem(s.out_dir), [shard], wanted[:, 0], s.num_perm)  # sorted by document
    order = np.argsort(wanted[:, 1], kind="stable")
    docs = wanted[order, 0]
    sig = got["sig"][np.searchsorted(got["doc"], docs)]
    cuts = np.searchsorted(wanted[order, 1], np.arange(n_dest + 1))
    out = [(docs[a:b], sig[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return out if n_dest > 1 else out[0]


def verify_pairs(spec: dict, pairs: np.ndarray, *parts) -> list[tuple[int, int, float]]:
    """The pairs whose signatures agree on at least `threshold` of their positions (the estimate
    verifier). `parts`: the (docs, signatures) each shard sent to this destination."""
    cfg = DedupSpec(**spec).config()
    # the parts come in shard order, each sorted by document: together they are sorted (no copy
    # beyond the one concatenation)
    docs = np.concatenate([d for d, _ in parts])
    sigs = np.concatenate([sg for _, sg in parts])
    if docs.size > 1 and not np.all(docs[1:] > docs[:-1]):
        order = np.argsort(docs)
        docs, sigs = docs[order], sigs[order]
    out = []
    for a in range(0, pairs.shape[0], 10_000):  # in blocks: two (block, num_perm) arrays at a time
        block = pairs[a : a + 10_000]
        sim = (sigs[np.searchsorted(docs, block[:, 0])] == sigs[np.searchsorted(docs, block[:, 1])]).mean(axis=1)
        hit = np.flatnonzero(sim >= cfg.threshold)
        out += zip(block[hit, 0].tolist(), block[hit, 1].tolist(), sim[hit].tolist())
    return out


def verified_edges(raw: dict, shards: list[dict], candidates: np.ndarray, tasks) -> tuple[list, int]:
    """Stage 2b, on the driver's candidate pairs: (verified edges, rounds). Each pair goes to one
    verification task (a hash of the pair; at least `partitions` tasks, at most `pairs_per_verify`
    pairs each); each shard sends each task the signatures of its own documents that the task's
    pairs name (Ray's object store is the shuffle). The tasks run in rounds that keep at most
    `sigs_per_round` signatures in flight; a signature file is read once per round (one round unless
    the candidates are dense), whatever the partition count."""
    import ray

    gather_task, verify_task = tasks
    if not candidates.size:
        return [], 0
    # at least one task per partition, and no task verifies more than pairs_per_verify pairs (its
    # memory: the pairs and the signatures they name), however dense the corpus's candidates are
    n_dest = max(raw["partitions"], -(-candidates.shape[0] // max(1, int(raw["pairs_per_verify"]))))
    with np.errstate(over="ignore"):
        dest = ((candidates[:, 0].astype(np.uint64) * _MIX) ^ candidates[:, 1].astype(np.uint64)) * _P % np.uint64(n_dest)
    dest = dest.astype(np.int64)
    by_dest = np.argsort(dest, kind="stable")
    dest_cuts = np.searchsorted(dest[by_dest], np.arange(n_dest + 1))  # pairs of q: by_dest[cuts[q]:cuts[q+1]]
    # (document, destination) rows, deduplicated as one int64 each (a 1-D unique is far lighter
    # than np.unique(axis=0) on the driver)
    code = np.unique(np.concatenate([candidates[:, 0] * n_dest + dest, candidates[:, 1] * n_dest + dest]))
    wanted = np.stack([code // n_dest, code % n_dest], 1)
    del code
    firsts = np.array([sh["first_doc"] for sh in shards], dtype=np.int64)
    # Rounds: the signatures in flight (in the object store, between the gather and the
    # verification tasks) stay under sigs_per_round; a round takes whole destinations, and each
    # round reads the signature files again (only the row groups it needs)
    per_dest = np.bincount(wanted[:, 1], minlength=n_dest)
    rounds: list[list[int]] = [[]]
    load = 0
    for q in range(n_dest):
        if rounds[-1] and load + per_dest[q] > raw["sigs_per_round"]:
            rounds.append([])
            load = 0
        rounds[-1].append(q)
        load += int(per_dest[q])
    edges: list[tuple[int, int, float]] = []
    for dests in rounds:
        local = np.full(n_dest, -1, dtype=np.int64)
        local[dests] = np.arange(len(dests))
        mine = wanted[local[wanted[:, 1]] >= 0]
        mine = np.stack([mine[:, 0], local[mine[:, 1]]], 1)
        cuts = np.searchsorted(mine[:, 0], firsts)  # sorted by document, so by shard
        ends = np.append(cuts[1:], mine.shape[0])
        sent = []
        for i, (a, b) in enumerate(zip(cuts.tolist(), ends.tolist())):
            if b > a:
                refs = gather_task.options(num_returns=len(dests)).remote(raw, shards[i], mine[a:b], len(dests))
                sent.append(refs if len(dests) > 1 else [refs])
        done = ray.get([verify_task.remote(raw, candidates[by_dest[dest_cuts[q]:dest_cuts[q + 1]]],
                                           *[refs[j] for refs in sent])
                        for j, q in enumerate(dests) if dest_cuts[q + 1] > dest_cuts[q]])
        del sent  # this round's signatures leave the object store
        edges += [e for part in done for e in part]
    return sorted(edges), len(rounds)


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

def decisions_shard(spec: dict, shard: dict, marks: dict[int, tuple[str, str, str]], clustered: dict[int, str]) -> dict:
    """The shard's decisions file. `marks`: this shard's dropped documents -> (id kept in its place,
    pass, cluster id); `clustered`: its kept documents that head or sit in a cluster -> cluster id
    (only this shard's share of the corpus's duplicates travels to the task)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.score import _write_atomic
    from curation.pipeline.corpus.shards import filesystem

    s = DedupSpec(**spec)
    fs, out_dir = filesystem(s.out_dir)
    sig_path, out_path, _ = _paths(out_dir, shard["key"])
    part = _read_sig(fs, sig_path, s.num_perm, columns=("doc", "id"))
    docs = part["doc"].tolist()
    none = (None, None, None)
    table = pa.table({
        "id": pa.array(part["id"], pa.string()), "shard": pa.array([shard["key"]] * len(docs), pa.string()),
        "keep": pa.array([d not in marks for d in docs], pa.bool_()),
        "duplicate_of": pa.array([marks.get(d, none)[0] for d in docs], pa.string()),
        "stage": pa.array([marks.get(d, none)[1] for d in docs], pa.string()),
        "cluster": pa.array([marks[d][2] if d in marks else clustered.get(d) for d in docs], pa.string()),
    })
    _write_atomic(fs, out_path, lambda tmp: pq.write_table(table, tmp, filesystem=fs))
    return {"key": shard["key"], "docs": len(docs), "dropped": sum(d in marks for d in docs)}


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

    from curation.pipeline.corpus.shards import filesystem

    t0 = time.monotonic()
    raw = asdict(spec)
    shards = plan_shards(spec.uri, spec.keys)
    planned = sum(sh["n_docs"] for sh in shards)  # from the shard metadata, before any is read
    if raw["partitions"] <= 0:
        raw["partitions"] = max(1, -(-planned // max(1, spec.docs_per_partition)))
    sig_task = ray.remote(num_cpus=1, max_retries=2)(signatures_shard)
    bucket_task = ray.remote(num_cpus=1, max_retries=2)(buckets_partition)
    tasks = (ray.remote(num_cpus=1, max_retries=2)(gather_signatures), ray.remote(num_cpus=1, max_retries=2)(verify_pairs))
    decide_task = ray.remote(num_cpus=1, max_retries=2)(decisions_shard)
    stats = ray.get([sig_task.remote(raw, sh) for sh in shards])
    n_docs = sum(s["docs"] for s in stats)
    log(f"stage 1: signatures of {n_docs} documents in {len(shards)} shard(s) "
        f"({sum(s['skipped'] for s in stats)} reused), band entries shuffled into {raw['partitions']} partition(s)")
    n_sources = len({src for s in stats for src in s["sources"]})
    passes = [("source", True)] if spec.by_source else []
    if not spec.by_source or n_sources > 1:
        passes.append(("merged", False))
    dropped: dict[int, tuple[int, str]] = {}
    all_edges: list[tuple[int, int, float]] = []
    verify_rounds: dict[str, int] = {}
    for stage, within in passes:
        gone = ray.put(np.array(sorted(dropped), dtype=np.int64))
        found = np.concatenate(ray.get([bucket_task.remote(raw, shards, p, within, gone)
                                        for p in range(raw["partitions"])]))
        # a pair may share buckets in several partitions: deduplicated as one integer per pair
        hi = int(found[:, 1].max()) + 1 if found.size else 1
        if hi < 3_000_000_000:  # a * hi + b fits in int64
            code = np.unique(found[:, 0] * hi + found[:, 1])
            candidates = np.stack([code // hi, code % hi], 1)
            del code
        else:
            candidates = np.unique(found, axis=0)
        del found
        edges, verify_rounds[stage] = verified_edges(raw, shards, candidates, tasks)
        found, groups = components(edges)
        all_edges += edges
        for doc, keeper in found.items():
            dropped[doc] = (keeper, stage)
        log(f"stage 2-3 ({stage}): {len(candidates)} candidate pair(s), {len(edges)} verified in "
            f"{verify_rounds[stage]} round(s), {len(groups)} cluster(s), {len(found)} dropped")
    uf = UnionFind()
    for a, b, _ in all_edges:
        uf.union(a, b)
    cluster: dict[int, int] = {}
    groups = uf.groups()
    for members in groups:
        kept = [m for m in members if m not in dropped]
        cid = kept[0] if kept else members[0]
        for m in members:
            cluster[m] = cid
    # the ids of the documents named as a keeper or a cluster, read from their row groups only
    named = np.array(sorted({k for k, _ in dropped.values()} | set(cluster.values())), dtype=np.int64)
    got = read_docs(*filesystem(spec.out_dir), shards, named, spec.num_perm, ("doc", "id")) if named.size else None
    ids = dict(zip(got["doc"].tolist(), got["id"])) if got else {}
    firsts = np.array([sh["first_doc"] for sh in shards], dtype=np.int64)
    marks: list[dict] = [{} for _ in shards]
    clustered: list[dict] = [{} for _ in shards]
    for d, c in cluster.items():
        i = int(np.searchsorted(firsts, d, side="right") - 1)
        if d in dropped:
            marks[i][d] = (ids[dropped[d][0]], dropped[d][1], ids[c])
        else:
            clustered[i][d] = ids[c]
    per_shard = ray.get([decide_task.remote(raw, sh, marks[i], clustered[i]) for i, sh in enumerate(shards)])
    total = sum(s["docs"] for s in per_shard)
    log(f"stage 4: kept {total - len(dropped)} of {total} documents ({len(dropped)} near-duplicates dropped)")
    return {"docs": total, "dropped": len(dropped), "clusters": len(groups), "shards": per_shard,
            "passes": [p for p, _ in passes], "partitions": raw["partitions"], "verify_rounds": verify_rounds, "seconds": time.monotonic() - t0}


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
