"""Corpus-scale MinHash on a real local Ray: the staged job finds the same clusters and drops the
same documents as the single-machine path on the same texts, within sources and then across them
(SF-Med's order), and a second run reuses the signature files."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest

from curation.pipeline.corpus import dedup
from curation.pipeline.corpus.dedup import DedupSpec, partition_of, plan_shards, run_dedup
from curation.pipeline.minhash import MinHashConfig, find_near_duplicates
from tests.conftest import SHARED_DATA
from tests.corpus.conftest import write_jsonl, write_parquet

pytestmark = pytest.mark.slow


def _edit(text: str, rnd: random.Random) -> str:
    """A near-copy: a few characters changed (Jaccard of 5-grams stays high)."""
    chars = list(text)
    for _ in range(max(1, len(chars) // 200)):
        chars[rnd.randrange(len(chars))] = "的"
    return "".join(chars)


def _corpus(tmp_path):
    rnd = random.Random(7)
    zh = [json.loads(x)["text"] for x in open(SHARED_DATA / "general_zh.jsonl", encoding="utf-8")][:150]
    en = [json.loads(x)["text"] for x in open(SHARED_DATA / "general_en.jsonl", encoding="utf-8")][:150]
    rows = []
    for i, t in enumerate(zh[:120]):
        rows.append({"id": f"zh{i}", "text": t, "source": "web-zh", "lang": "zh"})
    for i, t in enumerate(en[:120]):
        rows.append({"id": f"en{i}", "text": t, "source": "web-en", "lang": "en"})
    # near-copies within a source, across sources, exact copies and a 3-member chain
    for i in range(0, 40, 4):
        rows.append({"id": f"zh{i}-copy", "text": _edit(zh[i], rnd), "source": "web-zh", "lang": "zh"})
        rows.append({"id": f"zh{i}-x", "text": _edit(zh[i], rnd), "source": "forum", "lang": "zh"})
        rows.append({"id": f"en{i}-dup", "text": en[i], "source": "web-en", "lang": "en"})
        rows.append({"id": f"en{i}-x", "text": en[i], "source": "forum", "lang": "zh"})
    rows.append({"id": "empty", "text": "", "source": "forum", "lang": "zh"})
    rnd.shuffle(rows)
    d = tmp_path / "corpus"
    d.mkdir()
    write_parquet(d / "a.parquet", rows[:100])
    write_jsonl(d / "b.jsonl.gz", rows[100:190], "gz")
    write_parquet(d / "c.parquet", rows[190:])
    return d


def test_staged_dedup_on_ray_matches_single_machine(tmp_path, ray_address, monkeypatch):
    import ray

    d = _corpus(tmp_path)
    # partitions left to the default: one per docs_per_partition documents (3 here)
    spec = DedupSpec(uri=str(d), out_dir=str(tmp_path / "out"), mapping={}, docs_per_partition=100)
    shards = plan_shards(spec.uri)
    texts, ids, sources = [], [], []
    for sh in shards:  # the same texts in the same (corpus) order, for the single-machine path
        t = pq.read_table(sh["path"]) if sh["fmt"] == "parquet" else None
        recs = t.to_pylist() if t is not None else [json.loads(x) for x in __import__("gzip").open(sh["path"], "rt")]
        texts += [r["text"] for r in recs]
        ids += [r["id"] for r in recs]
        sources += [r["source"] for r in recs]
    cfg = MinHashConfig(verify="estimate")
    single = find_near_duplicates(texts, cfg, sources=sources, policy="first")
    expected_dropped = {ids[i] for i in single.dropped()}
    expected_clusters = sorted(sorted(ids[i] for i in members) for members in single.clusters().values())
    assert len(expected_dropped) >= 30  # the copies above were found at all

    ray.init(address="auto", log_to_driver=False)
    try:
        out = run_dedup(spec, log=lambda *_: None)
        again = run_dedup(spec, log=lambda *_: None)
        sig_files = sorted((tmp_path / "out" / "_dedup" / "sig").iterdir())
        written = {p.name: p.stat().st_mtime_ns for p in sig_files}
        # other partitions: the signatures are reused, only the band shuffle is redone; and
        # verification spread over more tasks than partitions, in rounds of a few signatures
        five = run_dedup(DedupSpec(uri=str(d), out_dir=str(tmp_path / "out"), mapping={}, partitions=5,
                                   pairs_per_verify=7, sigs_per_round=10), log=lambda *_: None)
        after_five = {p.name: p.stat().st_mtime_ns for p in sig_files}
    finally:
        ray.shutdown()
    assert out["passes"] == ["source", "merged"]
    assert out["partitions"] == -(-len(texts) // 100) == 3
    out_dir = tmp_path / "out" / "_dedup"
    decisions = [r for sh in shards for r in pq.read_table(out_dir / (sh["key"] + ".dedup.parquet")).to_pylist()]
    assert len(decisions) == len(texts)
    dropped = {r["id"] for r in decisions if not r["keep"]}
    assert dropped == expected_dropped
    clusters: dict[str, list[str]] = {}
    for r in decisions:
        if r["cluster"]:
            clusters.setdefault(r["cluster"], []).append(r["id"])
    assert sorted(sorted(m) for m in clusters.values()) == expected_clusters
    by_id = {r["id"]: r for r in decisions}
    # within a source first, then across: of three copies (two web-en, one forum) one survives;
    # one web-en copy goes in the source pass, one more in the merged pass
    trio = [by_id[k] for k in ("en0", "en0-dup", "en0-x")]
    assert sum(r["keep"] for r in trio) == 1
    assert sorted(r["stage"] for r in trio if not r["keep"]) == ["merged", "source"]
    assert [r["stage"] for r in trio[:2] if not r["keep"]].count("source") == 1
    assert by_id["empty"]["keep"] and by_id["empty"]["cluster"] is None
    assert again["dropped"] == out["dropped"] and again["docs"] == out["docs"]
    assert after_five == written
    assert five["partitions"] == 5 and five["clusters"] == out["clusters"]
    assert out["verify_rounds"] == {"source": 1, "merged": 1} and min(five["verify_rounds"].values()) > 1
    assert {r["id"] for sh in shards for r in pq.read_table(out_dir / (sh["key"] + ".dedup.parquet")).to_pylist()
            if not r["keep"]} == expected_dropped
    # each band file holds one row group per partition, every entry in the partition it is listed under
    for sh in shards:
        pf = pq.ParquetFile(out_dir / "bands" / (sh["key"] + ".parquet"))
        groups = json.loads(pf.schema_arrow.metadata[b"medstudio.dedup"])["row_groups"]
        assert len(groups) == pf.num_row_groups == len(set(groups)) and set(groups) <= set(range(5))
        for g, p in enumerate(groups):
            t = pf.read_row_group(g)
            assert set(partition_of(t.column("key").to_numpy(), t.column("band").to_numpy(), 5).tolist()) == {p}
    # other sketch settings (a seed): the signatures are sketched again, not reused
    ray.init(address="auto", log_to_driver=False)
    try:
        reseeded = run_dedup(DedupSpec(uri=str(d), out_dir=str(tmp_path / "out"), mapping={}, partitions=5, seed=7),
                             log=lambda *_: None)
    finally:
        ray.shutdown()
    assert all(p.stat().st_mtime_ns != written[p.name] for p in sig_files) and reseeded["docs"] == out["docs"]
