"""score_shard's shortcuts give the same score file as the scorers run one by one: with `rules` and
`pii` together the pii verdict is read off the rules' own PII rule (one detection per text), and
n_tokens off the rules' token count."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curation.pipeline.corpus.score import build_blocks, score_path, score_shard
from curation.pipeline.corpus.shards import filesystem
from tests.corpus.conftest import docs, write_parquet

# Real paragraphs plus documents carrying PII of several kinds (one type, two types, a tie), so
# that pii values, drops and reasons are not all zero / kept / empty.
PII_TEXTS = [
    "请联系张医生，电话 13812345678，或发邮件至 zhang.doctor@example.com 预约复诊。",
    "Patient contact: jane.doe@hospital.org, phone (202) 225-2815, follow-up in two weeks after discharge.",
    "患者身份证号 11010519491231002X，住址略。复查血常规。",
    "Send the scans to a@b-clinic.com and c@b-clinic.com; the ward number is 4455.",
]


def _table(tmp_path, name, scorers, **kw):
    shard = tmp_path / "part-0.parquet"
    if not shard.exists():
        rows = docs(60) + [{"id": f"pii-{i}", "text": t, "lang": "zh" if i % 2 == 0 else "en", "source": "synthetic"}
                           for i, t in enumerate(PII_TEXTS)]
        write_parquet(shard, rows)
    out = tmp_path / name
    out.mkdir()
    fs, p = filesystem(str(shard))
    res = score_shard(fs=fs, path=p, fmt="parquet", key="part-0", out_dir=str(out), mapping={}, scorers=scorers,
                      batch_size=16, **kw)
    assert res["status"] == "done"
    return pq.read_table(score_path(str(out), "part-0")).to_pydict()


@pytest.mark.parametrize("rules_params, pii_params", [
    ({}, {}),
    ({"max_pii_hits": 1}, {"max_hits": 1}),
    ({}, {"types": ["email"]}),          # other types than the rule's: detected on its own
    ({"disabled": ["pii"]}, {}),         # the rule is off: nothing to read off
])
def test_rules_and_pii_together_equal_each_alone(tmp_path, rules_params, pii_params):
    both = _table(tmp_path, "both", {"rules": rules_params, "pii": pii_params})
    rules = _table(tmp_path, "rules", {"rules": rules_params})
    pii = _table(tmp_path, "pii", {"pii": pii_params})
    for col in ("pii_value", "pii_keep", "pii_reason"):
        assert both[col] == pii[col], col
    for col in ("rules_value", "rules_keep", "rules_reason"):
        assert both[col] == rules[col], col
    assert both["n_tokens"] == pii["n_tokens"] == rules["n_tokens"]
    assert both["keep"] == [a and b for a, b in zip(rules["rules_keep"], pii["pii_keep"])]
    assert any(v > 0 for v in both["pii_value"]) and not all(both["pii_keep"])


def test_prebuilt_blocks_give_the_same_scores(tmp_path):
    scorers = {"pii": {}, "rules": {}}
    built = _table(tmp_path, "built", scorers)
    given = _table(tmp_path, "given", scorers, blocks=build_blocks(scorers))
    assert built == given
    assert list(built)[6:9] == ["pii_value", "pii_keep", "pii_reason"]  # columns in the scorers' order
