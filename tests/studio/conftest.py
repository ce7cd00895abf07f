"""Studio fixtures: shared public data imported through the real importer and scored through the real
scorer framework by small deterministic scorers (their values are spread like real scores)."""
from __future__ import annotations

import hashlib
import json

import pytest

from curation.pipeline.base import ScoreResult, filter_result


def _u(text: str, salt: str) -> float:
    return int(hashlib.sha256((salt + text).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class _Value:
    """value in [lo, hi], a pure function of the text; None for every 17th id-hash (unscored)."""

    def __init__(self, name, lo, hi, version="1"):
        self.name, self.lo, self.hi, self.version = name, lo, hi, version

    def score_batch(self, records):
        out = []
        for r in records:
            u = _u(r.text, self.name)
            if int(u * 1e6) % 17 == 0:
                out.append(ScoreResult(value=None, detail={"why": "no usable distribution"}))
            else:
                out.append(ScoreResult(value=round(self.lo + (self.hi - self.lo) * u, 4)))
        return out


class _Filter:
    name, version = "t_rules", "1"

    def score_batch(self, records):
        out = []
        for r in records:
            if len(r.text) < 40:
                out.append(filter_result((False, "too_short"), value=float(len(r.text))))
            elif _u(r.text, "special") < 0.08:
                out.append(filter_result((False, "special_chars"), value=float(len(r.text))))
            else:
                out.append(filter_result(True, value=float(len(r.text))))
        return out


class _Dedup:
    name, version = "t_dedup", "1"

    def score_batch(self, records):
        out = []
        for r in records:
            cluster = int(_u(r.text, "dup") * 400)
            dup = _u(r.text, "dupkeep") < 0.1
            out.append(ScoreResult(value=float(dup), keep=not dup, reason="duplicate" if dup else "",
                                   detail={"cluster": cluster}))
        return out


@pytest.fixture
def test_scorers():
    from medstudio.handoffs.scorers import _SCORERS, register_scorer

    before = dict(_SCORERS)
    register_scorer("t_rater", lambda p: _Value("t_rater", 0.0, 5.0, version=str(p.get("version", "1"))), description="test rater 0-5")
    register_scorer("t_deita", lambda p: _Value("t_deita", 1.0, 36.0), description="test deita c*q")
    register_scorer("t_cf", lambda p: _Value("t_cf", 0.3, 1.6), description="test ConFilter ratio")
    register_scorer("t_rules", lambda p: _Filter(), description="test rule filter")
    register_scorer("t_dedup", lambda p: _Dedup(), description="test dedup filter")
    yield ["t_rater", "t_deita", "t_cf", "t_rules", "t_dedup"]
    _SCORERS.clear()
    _SCORERS.update(before)


def read_rows(shared_data, name: str, n: int) -> list[dict]:
    rows = []
    with open(shared_data / name, encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


@pytest.fixture
def scored(db, shared_data, make_dataset, test_scorers, curator):
    """Two scored datasets (Chinese QA and English/Chinese documents) with 5 scorers each, matrices built."""
    from curation.scoring import scorer_run_start
    from curation.studio.services import matrix_sync

    qa = make_dataset("huatuo", "qa", read_rows(shared_data, "huatuo26m_test_qa.jsonl", 160))
    docs = make_dataset("general", "document", read_rows(shared_data, "general_en.jsonl", 80)
                        + read_rows(shared_data, "general_zh.jsonl", 60))
    for ds in (qa, docs):
        for name in test_scorers:
            run = scorer_run_start(user=curator, dataset=ds, scorer=name)
            run.job.refresh_from_db()
            assert run.job.status == "succeeded", run.job.error
        matrix_sync(dataset=ds, actor=curator)
    return qa, docs
