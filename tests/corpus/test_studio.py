"""Threshold studio over score files (DuckDB): counts per language and source match a plain Python
count, bad conditions are refused, a frozen selection lists exactly the kept ids and notices a
rewritten score file."""
from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.pipeline.corpus.studio import Condition, StudioError, counts, freeze, verify_frozen


def _score_files(d, n_files=3, n=400):
    rnd = random.Random(3)
    rows_all = []
    d.mkdir(parents=True)
    for f in range(n_files):
        rows = [{"doc_id": f"s{f}-{i}", "shard": f"s{f}", "lang": rnd.choice(["zh", "en"]),
                 "source": rnd.choice(["web", "book", "forum"]), "n_chars": rnd.randint(10, 3000),
                 "rules_value": rnd.random(), "rules_keep": rnd.random() > 0.2,
                 "pii_value": float(rnd.randint(0, 3)), "pii_keep": rnd.random() > 0.1,
                 "keep": True, "reason": ""} for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), d / f"s{f}.scores.parquet")
        rows_all += rows
    return rows_all


CONDS = [Condition("rules_value", ">=", 0.3), Condition("pii_value", "<=", 1.0), Condition("rules_keep", "==", True),
         Condition("n_chars", ">", 100), Condition("pii_keep", "!=", False)]


def _ok(r):
    return r["rules_value"] >= 0.3 and r["pii_value"] <= 1 and r["rules_keep"] and r["n_chars"] > 100 and r["pii_keep"]


def test_counts_match_python(tmp_path):
    rows = _score_files(tmp_path / "scores")
    out = counts(str(tmp_path / "scores"), CONDS)
    assert out["docs"] == len(rows) and out["kept"] == sum(map(_ok, rows))
    assert out["kept_chars"] == sum(r["n_chars"] for r in rows if _ok(r))
    zh_web = next(b for b in out["by"] if b["lang"] == "zh" and b["source"] == "web")
    assert zh_web["kept"] == sum(1 for r in rows if _ok(r) and r["lang"] == "zh" and r["source"] == "web")
    assert counts(str(tmp_path / "scores"), [])["kept"] == len(rows)
    assert Condition.parse("rules_value >= 0.3") == Condition("rules_value", ">=", 0.3)
    assert Condition.parse("pii_keep == true") == Condition("pii_keep", "==", True)


def test_bad_conditions_are_refused(tmp_path):
    _score_files(tmp_path / "scores", n_files=1, n=10)
    with pytest.raises(StudioError, match="unknown column 'x; DROP'"):
        counts(str(tmp_path / "scores"), [Condition("x; DROP", ">=", 1)])
    with pytest.raises(StudioError, match="unknown operator"):
        counts(str(tmp_path / "scores"), [Condition("rules_value", "~", 1)])
    with pytest.raises(StudioError, match="no score files"):
        counts(str(tmp_path / "empty"), CONDS)


def test_freeze_lists_kept_ids_and_detects_changes(tmp_path):
    rows = _score_files(tmp_path / "scores")
    manifest = freeze(str(tmp_path / "scores"), CONDS, str(tmp_path / "frozen"), name="med-v1")
    kept = {r["doc_id"] for r in rows if _ok(r)}
    got = {x for s in manifest["shards"] for x in pq.read_table(s["kept_file"]).column("doc_id").to_pylist()}
    assert got == kept and manifest["kept"] == len(kept)
    on_disk = json.loads((tmp_path / "frozen" / "manifest.json").read_text())
    assert on_disk["kept"] == len(kept) and len(on_disk["shards"]) == 3 and all(len(s["sha256"]) == 64 for s in on_disk["shards"])
    assert verify_frozen(str(tmp_path / "frozen")) == []
    pq.write_table(pa.Table.from_pylist(rows[:5]), tmp_path / "scores" / "s1.scores.parquet")
    assert verify_frozen(str(tmp_path / "frozen")) == ["s1"]
