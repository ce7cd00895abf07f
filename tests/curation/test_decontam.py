"""Decontamination: a benchmark item pasted into training text is flagged, with the item named."""
import json
import os
from pathlib import Path

import pytest

from curation.pipeline.base import RecordView
from curation.pipeline.decontam import BenchmarkIndex, DecontamConfig, DecontamScorer

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def _rows(name, limit):
    with open(DATA / name, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(limit), fh)]


@pytest.fixture(scope="module")
def index():
    idx = BenchmarkIndex()
    for r in _rows("cmmlu_med.jsonl", 300):
        idx.add_record({"dataset": "cmmlu_med", "external_id": r["id"]}, r, "mcq")
    for r in _rows("pubmedqa.jsonl", 200):
        idx.add_record({"dataset": "pubmedqa", "external_id": r["id"]}, r, "mcq")
    return idx


def _view(i, text, kind="document"):
    return RecordView(id=i, kind=kind, lang="", text=text)


def test_pasted_benchmark_items_are_flagged_and_named(index):
    cm = _rows("cmmlu_med.jsonl", 300)
    pm = _rows("pubmedqa.jsonl", 200)
    docs = _rows("general_zh.jsonl", 40) + _rows("general_en.jsonl", 40)
    texts = [d["text"] for d in docs]
    # paste a long CMMLU stem into a Chinese document and a PubMedQA explanation into an English one,
    # with changed punctuation/width, which normalisation must see through
    long_cm = next(r for r in cm if len(r["question"]) >= 30)
    zh_doc = texts[3][:200] + long_cm["question"].replace("，", ",") + texts[3][200:]
    en_doc = texts[50][:100] + " " + pm[17]["explanation"].upper() + " " + texts[50][100:]
    records = [_view(i, t) for i, t in enumerate(texts)] + [_view(900, zh_doc), _view(901, en_doc)]
    results = DecontamScorer(index).score_batch(records)
    by_id = {r.id: res for r, res in zip(records, results)}
    assert by_id[900].keep is False and by_id[900].reason == "contaminated"
    assert by_id[900].detail["hits"][0]["external_id"] == long_cm["id"]
    assert by_id[901].detail["hits"][0]["external_id"] == pm[17]["id"]
    assert by_id[901].detail["hits"][0]["dataset"] == "pubmedqa"
    clean_flagged = [r.id for r, res in zip(records, results) if r.id < 900 and not res.keep]
    assert len(clean_flagged) <= 1, clean_flagged


def test_short_items_match_whole_and_tiny_parts_are_ignored():
    idx = BenchmarkIndex(DecontamConfig(ngram_en=13, min_item_tokens=5))
    idx.add({"external_id": "q1"}, ["Which nerve supplies the deltoid muscle?", "yes", "no"])
    scorer = DecontamScorer(idx)
    hit, miss, tiny = scorer.score_batch([
        _view(1, "Exam prep: which nerve supplies the deltoid muscle? The axillary nerve."),
        _view(2, "The deltoid muscle is supplied by a nerve from the brachial plexus."),
        _view(3, "yes no yes no"),
    ])
    assert hit.value == 1 and hit.detail["hits"][0]["external_id"] == "q1"
    assert hit.detail["hits"][0]["sample"] == "which nerve supplies the deltoid muscle"
    assert miss.keep and tiny.keep


def test_overlap_shorter_than_n_is_not_contamination():
    idx = BenchmarkIndex(DecontamConfig(ngram_en=13))
    item = "a 45 year old man presents with crushing chest pain radiating to the left arm and jaw for two hours"
    idx.add({"external_id": "x"}, [item])
    twelve = " ".join(item.split()[:12])
    thirteen = " ".join(item.split()[:13])
    res = DecontamScorer(idx).score_batch([_view(1, "intro " + twelve + " outro"), _view(2, "intro " + thirteen + " outro")])
    assert [r.keep for r in res] == [True, False]


def test_empty_index_flags_nothing():
    res = DecontamScorer(BenchmarkIndex()).score_batch([_view(1, "anything at all here")])
    assert res[0].keep is True and res[0].value == 0
