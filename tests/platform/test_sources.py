"""Training data sources: every hand-off object exports the exact records a run trains on."""
import json

import pytest

from medstudio.handoffs import sources
from medstudio.handoffs.models import PreferenceSet, Selection, SelectionRecord
from preferences.models import PreferencePair
from tests.training import toydata
from training.pipeline.specs import STAGE_DATA_KINDS, TrainingSpec
from training.pipeline.train import build_examples, read_records


def _qa(make_dataset, name="qa", n=4):
    return make_dataset(name, "qa", [{"id": f"{name}{i}", **r["content"]} for i, r in enumerate(toydata.sft_qa(n, 40))])


def _selection(ds, name, n):
    sel = Selection.objects.create(name=name, status=Selection.Status.READY, n_records=n, content_hash="h" * 64)
    sel.datasets.set([ds])
    for rid in ds.records.order_by("id").values_list("id", flat=True)[:n]:
        SelectionRecord.objects.create(selection=sel, record_id=rid)
    return sel


def test_selection_exports_its_frozen_records_with_hash(make_dataset, tmp_path):
    ds = _qa(make_dataset)
    sel = _selection(ds, "half", 2)
    info = sources.export(sources.resolve("selection:half"), tmp_path / "d.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    want = list(ds.records.order_by("id").values_list("content", flat=True)[:2])
    assert [r["content"] for r in rows] == want and {r["kind"] for r in rows} == {"qa"}
    assert info["n_records"] == 2 and info["content_hash"] == sel.content_hash and len(info["sha256"]) == 64


def test_names_resolve_and_ambiguity_asks_for_an_id(make_dataset):
    ds = _qa(make_dataset)
    a, b = _selection(ds, "same", 1), _selection(ds, "same", 2)
    with pytest.raises(sources.DataSourceError, match=f"#{a.pk}, #{b.pk}|#{b.pk}, #{a.pk}"):
        sources.resolve("selection:same")
    assert sources.resolve(f"selection:#{b.pk}") == {"type": "selection", "id": b.pk}
    with pytest.raises(sources.DataSourceError, match="unknown data source type 'table'"):
        sources.resolve("table:x")


def test_choices_fit_the_stage(make_dataset):
    _qa(make_dataset)
    make_dataset("docs", "document", [{"id": f"d{i}", **r["content"]} for i, r in enumerate(toydata.cpt_docs(2, 80))])
    make_dataset("pairs", "pair", [{"id": f"p{i}", **r["content"]} for i, r in enumerate(toydata.objective_pairs(2))])
    names = {stage: {c["name"] for c in sources.choices_for(kinds)} for stage, kinds in STAGE_DATA_KINDS.items()}
    assert names["cpt-stable"] == {"docs"} and names["sft"] == {"qa"} and names["dpo"] == {"pairs"}


def test_preference_set_exports_after_voting_and_review(db, tmp_path):
    s = PreferenceSet.objects.create(name="set")
    turns = [{"role": "user", "content": "q"}]
    mk = lambda i, **kw: PreferencePair.objects.create(pref_set=s, item_key=i, origin=kw.pop("origin", "objective"),  # noqa: E731
                                                       prompt_turns=turns, chosen=f"good{i}", rejected=f"bad{i}", **kw)
    mk(1)
    mk(2, action="flip")                       # voting: lowest strength, swapped
    mk(3, action="drop")                       # voting: too easy, left out
    mk(4, action="flip", verdict="chosen")     # a clinician's verdict beats the vote
    mk(5, verdict="tie")                       # clinician tie: left out
    mk(6, origin="subjective", verdict="rejected")
    info = sources.export({"type": "preference_set", "id": s.pk}, tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    got = [(r["content"]["chosen"], r["content"]["rejected"]) for r in rows]
    assert got == [("good1", "bad1"), ("bad2", "good2"), ("good4", "bad4"), ("bad6", "good6")]
    assert info["by_origin"] == {"objective": 3, "subjective": 1}
    assert info["left_out"] == {"dropped by voting": 1, "clinician tie": 1}
    assert info["swapped"] == {"flipped by voting": 1, "swapped by clinician": 1}
    dpo = build_examples(TrainingSpec(stage="dpo", base_model="-"), read_records(str(tmp_path / "p.jsonl")))
    assert [e["chosen"][-1]["content"] for e in dpo] == ["good1", "bad2", "good4", "bad6"]


def test_diversified_sft_records_train_with_their_system_prompt(make_dataset, tmp_path):
    from preferences.pipeline.diversify import attach_instructions

    ds = _qa(make_dataset, n=2)
    contents = attach_instructions(list(ds.records.values_list("content", flat=True)), ["Answer as a careful doctor."])
    out = make_dataset("qa-div", "qa", [{"id": f"x{i}", **c} for i, c in enumerate(contents)])
    sources.export({"type": "dataset", "id": out.pk}, tmp_path / "s.jsonl")
    ex = build_examples(TrainingSpec(stage="sft", base_model="-"), read_records(str(tmp_path / "s.jsonl")))
    assert len(ex) == 2 and all(e["messages"][0] == {"role": "system", "content": "Answer as a careful doctor."} for e in ex)
    assert [m["role"] for m in ex[0]["messages"][1:]] == ["user", "assistant"]
