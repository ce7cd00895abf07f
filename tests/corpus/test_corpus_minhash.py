"""Issue 16's bar, on a real local Ray: 20 generated Parquet shards with planted near-duplicates are
registered, `corpus run --scorer rules --scorer minhash --json` marks the planted copies in one score
file per shard (the same decisions as the single-machine MinHash), `corpus sample` makes a dataset,
and a run that lost its last shards redoes only those, marking every score file again."""
from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.pipeline.minhash import MinHashConfig, find_near_duplicates
from tests.conftest import SHARED_DATA
from tests.corpus.conftest import write_parquet

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _near_copy(text: str, rnd: random.Random) -> str:
    """A few characters changed: Chinese (character n-grams) one per 200, English (word 5-grams,
    where one changed character changes five shingles) one in all."""
    chars = list(text)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in chars) > len(chars) / 3
    for _ in range(max(1, len(chars) // 200) if cjk else 1):
        chars[rnd.randrange(len(chars))] = "的"
    return "".join(chars)


def _shards(folder, rnd):
    base = []
    for name in ("general_en.jsonl", "general_zh.jsonl"):
        with open(SHARED_DATA / name, encoding="utf-8") as fh:
            base += [json.loads(line) for _, line in zip(range(200), fh)]
    rows = [{"id": f"doc{i}", "text": r["text"], "lang": r["lang"], "source": "web"} for i, r in enumerate(base)]
    planted = {}
    for i in rnd.sample(range(len(rows)), 30):  # copies of 30 documents, placed in later shards
        copy = {"id": f"doc{i}-copy", "text": _near_copy(rows[i]["text"], rnd), "lang": rows[i]["lang"], "source": "web"}
        planted[copy["id"]] = rows[i]["id"]
        rows.append(copy)
    per = -(-len(rows) // 20)
    folder.mkdir()
    for s in range(20):
        write_parquet(folder / f"part-{s:02d}.parquet", rows[s * per:(s + 1) * per])
    return rows, planted


def _scores(root):
    return {p.name: pq.read_table(p) for p in sorted(root.rglob("*.scores.parquet"))}


def test_rules_and_minhash_mark_planted_duplicates_resume_and_sample(tmp_path, on_ray, capsys):
    rows, planted = _shards(tmp_path / "corpus", random.Random(3))
    call_command("corpus", "add", "pool", str(tmp_path / "corpus"))
    call_command("corpus", "run", "pool", "--scorer", "rules", "--scorer", "minhash", "--workers", "2", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded" and out["shards_done"] == 20 and out["documents"] == len(rows)

    files = _scores(tmp_path / "scores")
    assert len(files) == 20  # one score file per shard
    marks = {}
    for t in files.values():
        assert {"rules_keep", "minhash_value", "minhash_keep", "minhash_reason", "minhash_duplicate_of", "keep"} <= set(t.column_names)
        for r in t.to_pylist():
            marks[r["doc_id"]] = r
    dropped = {d for d, r in marks.items() if not r["minhash_keep"]}
    # the planted copies are marked (LSH at a 0.8 threshold finds nearly all: an English copy whose
    # changed character splits a word can fall below it), each as a duplicate of its original
    found = set(planted) & dropped
    assert len(found) >= 0.9 * len(planted)
    assert all(marks[c]["minhash_duplicate_of"] == planted[c] and marks[planted[c]]["minhash_keep"] for c in found)
    assert all(marks[c]["minhash_reason"] == "near_duplicate_within_source" and marks[c]["minhash_value"] == 1.0
               and not marks[c]["keep"] for c in found)
    # the same decisions as the single-machine path on the same texts in corpus order
    single = find_near_duplicates([r["text"] for r in rows], MinHashConfig(verify="estimate"),
                                  sources=[r["source"] for r in rows], policy="first")
    assert dropped == {rows[i]["id"] for i in single.dropped()}
    assert out["scorers"]["minhash"]["dropped"] == len(dropped)
    assert out["scorers"]["minhash"]["reasons"] == {"near_duplicate_within_source": len(dropped)}
    # overall keep: dropped by either scorer
    assert all(r["keep"] == (r["rules_keep"] and r["minhash_keep"]) for r in marks.values())

    # a run that died before its last two shards were committed: only those are scored again and
    # marked; the other score files carry this dedup's marks already and are not rewritten
    score_root = next((tmp_path / "scores").rglob("part-00.parquet.scores.parquet")).parent
    lost = ("part-18.parquet.scores.parquet", "part-19.parquet.scores.parquet")
    for name in lost:
        (score_root / name).unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in score_root.glob("*.scores.parquet")}
    call_command("corpus", "run", "pool", "--scorer", "rules", "--scorer", "minhash", "--json")
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["status"] == "succeeded" and again["shards_skipped"] == 18 and again["shards_done"] == 20
    assert {p.name: p.stat().st_mtime_ns for p in score_root.glob("*.scores.parquet") if p.name not in lost} == mtimes
    assert {d for t in _scores(tmp_path / "scores").values() for d, k in
            zip(t.column("doc_id").to_pylist(), t.column("minhash_keep").to_pylist()) if not k} == dropped

    # a shard that appears later (a retried failed shard, a new file) may hold copies of documents
    # in every other shard: all score files are marked again
    write_parquet(tmp_path / "corpus" / "part-20.parquet",
                  [{"id": "doc0-late", "text": _near_copy(rows[0]["text"], random.Random(9)), "lang": rows[0]["lang"],
                    "source": "web"}])
    mtimes = {p.name: p.stat().st_mtime_ns for p in score_root.glob("*.scores.parquet")}
    call_command("corpus", "run", "pool", "--scorer", "rules", "--scorer", "minhash", "--json")
    capsys.readouterr()
    after = {p.name: p.stat().st_mtime_ns for p in score_root.glob("*.scores.parquet")}
    assert len(after) == 21 and all(after[n] != m for n, m in mtimes.items())
    late = pq.read_table(score_root / "part-20.parquet.scores.parquet").to_pylist()[0]
    assert not late["minhash_keep"] and late["minhash_duplicate_of"] == "doc0"  # the first document is always kept

    call_command("corpus", "sample", "pool", "--n", "40", "--dataset", "pool-sample")
    from medstudio.datasets.models import Dataset

    assert Dataset.objects.get(name="pool-sample").records.count() == 40


def test_bad_minhash_settings_are_refused(tmp_path, on_ray):
    _shards(tmp_path / "corpus", random.Random(1))
    call_command("corpus", "add", "pool2", str(tmp_path / "corpus"))
    with pytest.raises(CommandError, match="threshold"):
        call_command("corpus", "run", "pool2", "--scorer", "minhash", "--param", "minhash.threshold=1.5")
    with pytest.raises(CommandError, match="unknown settings"):
        call_command("corpus", "run", "pool2", "--scorer", "minhash", "--param", "minhash.bogus=1")
    with pytest.raises(CommandError, match="sigs_per_round must be 1 or more"):
        call_command("corpus", "run", "pool2", "--scorer", "minhash", "--param", "minhash.sigs_per_round=0")


def test_sizing_settings_keep_the_run_folder():
    """sigs_per_round / pairs_per_verify size the verification, not its result: a run that sets
    them resumes in the same folder (and keeps the same marks); a real setting starts a new one."""
    from curation.corpus.services import run_key
    from curation.pipeline.corpus.minhash_pass import fingerprint

    plain = {"rules": {}, "minhash": {}}
    sized = {"rules": {}, "minhash": {"sigs_per_round": 9, "pairs_per_verify": 3}}
    assert run_key(plain) == run_key(sized) != run_key({"rules": {}, "minhash": {"threshold": 0.7}})
    assert fingerprint(["a"], {}) == fingerprint(["a"], sized["minhash"]) != fingerprint(["a"], {"threshold": 0.7})
