"""Every dataset export format round-trips losslessly for every record kind: import real shared-data
lines, export, re-import into another dataset, and compare content, subset, lang, source, external
id and title (a document's title is content; another kind's title is one of its extras, in meta)."""
import json

import pytest
from django.core.management import call_command

from medstudio.datasets.models import Record
from tests.shared_lines import shared_lines as _lines

pytestmark = pytest.mark.django_db

EXPORT_FORMATS = ["jsonl", "parquet"]  # what export_records / the export job offer

# (kind, shared-data file, how many lines, a predicate picking interesting lines)
SOURCES = {
    "document": [("general_en.jsonl", 3, lambda r: True), ("general_zh.jsonl", 2, lambda r: "xquad_en_title" in r)],
    "qa": [("zh_med_qa_toyhom.jsonl", 3, lambda r: True), ("huatuo26m_test_qa.jsonl", 2, lambda r: True)],
    "dialogue": [("cmtmedqa_multiturn.jsonl", 2, lambda r: "department" in r),
                 ("cmtmedqa_multiturn.jsonl", 2, lambda r: "department" not in r),  # safety items: no subset
                 ("disc_med_sft_samples.jsonl", 2, lambda r: True)],
    "mcq": [("cmmlu_med.jsonl", 3, lambda r: True), ("pubmedqa.jsonl", 2, lambda r: True)],
    "pair": [("hh_rlhf_harmless_pairs.jsonl", 4, lambda r: True)],
}

# Lines no shared file has, each probing a way a round trip can lose something.
EDGE_CASES = {
    "document": [{"text": "no id, keyed by content", "domain": "general"},
                 {"id": "d-extra", "text": "a document", "question": "an extra named like a QA field",
                  "system": "a diversified instruction"}],
    "qa": [{"id": "qa-sys", "question": "q?", "answer": "a.", "system": "Be brief.", "title": "T", "subject": "s"},
           {"id": "qa-alpaca", "instruction": "Explain", "input": "fever", "output": "A raised temperature."}],
    "dialogue": [{"id": "dlg-sys", "messages": [{"role": "system", "content": "Be kind."},
                                                {"role": "patient", "content": "hi"}, {"role": "doctor", "content": "hello"}],
                  "domain": "derm", "meta": {"id": "an extra called id", "nested": {"a": [1, 2]}}}],
    "mcq": [{"id": 7, "question": "2+2?", "options": ["3", "4"], "answer": 1, "system": "Answer with a letter.",
             "explanation": "Arithmetic."}],
    "pair": [{"id": "pair-json", "prompt": "Say a list", "chosen": "[1, 2]", "rejected": "{\"no\": 1}",
              "system": "s", "department": "x"}],
}




def _title(r: Record):
    return r.content.get("title", (r.content.get("meta") or {}).get("title"))


def _snapshot(name):
    return {r.external_id: {"content": r.content, "subset": r.subset, "lang": r.lang, "source": r.source,
                            "title": _title(r), "text": r.text, "text_hash": r.text_hash, "n_tokens": r.n_tokens}
            for r in Record.objects.filter(dataset__name=name)}


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("kind", list(SOURCES))
def test_export_then_reimport_is_lossless(kind, fmt, shared_data, tmp_path, make_dataset):
    rows = [r for name, n, pred in SOURCES[kind] for r in _lines(shared_data, name, pred, n)] + EDGE_CASES[kind]
    make_dataset(f"{kind}-src", kind, rows)
    out = tmp_path / f"out.{fmt}"
    call_command("export_records", dataset=f"{kind}-src", format=fmt, out=str(out))
    call_command("import_records", str(out), dataset=f"{kind}-copy", kind=kind)
    a, b = _snapshot(f"{kind}-src"), _snapshot(f"{kind}-copy")
    assert len(a) == len(rows)
    assert a == b
    # what the shared lines said survived, field by field
    for row in rows:
        if "id" not in row:
            continue
        got = a[str(row["id"])]
        assert got["source"] == row.get("source", "")
        if "lang" in row:
            assert got["lang"] == row["lang"]
        if "title" in row:
            assert got["title"] == row["title"]
        expected_subset = next((str(row[k]) for k in ("department", "subject", "domain") if row.get(k)), "")
        assert got["subset"] == expected_subset
    # exporting the copy gives the same file (nothing drifts on a second trip)
    again = tmp_path / f"again.{fmt}"
    call_command("export_records", dataset=f"{kind}-copy", format=fmt, out=str(again))
    if fmt == "jsonl":
        assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_jsonl_export_keeps_the_shared_data_schema(shared_data, tmp_path, make_dataset):
    """Extras go back beside the content fields (QA title, department), as in the shared files."""
    [row] = _lines(shared_data, "zh_med_qa_toyhom.jsonl")
    make_dataset("toy", "qa", [row])
    out = tmp_path / "toy.jsonl"
    call_command("export_records", dataset="toy", format="jsonl", out=str(out))
    assert json.loads(out.read_text(encoding="utf-8")) == row


def test_parquet_export_reads_as_plain_columns(tmp_path, make_dataset):
    import pyarrow.parquet as pq

    make_dataset("p", "pair", EDGE_CASES["pair"])
    out = tmp_path / "p.parquet"
    call_command("export_records", dataset="p", format="parquet", out=str(out))
    [row] = pq.read_table(out).to_pylist()
    assert row["chosen"] == "[1, 2]" and json.loads(row["meta"]) == {"department": "x"}
    assert json.loads(row["prompt_turns"])[0] == {"role": "system", "content": "s"}


def test_jsonl_export_keeps_values_the_fast_encoder_would_refuse(tmp_path, make_dataset):
    """The JSONL export's fast encoder (orjson) refuses integers beyond 64 bits: those lines go
    through the stdlib, so every value reads back as it was stored."""
    rows = [{"id": "big", "text": "t", "dose": 123456789012345678901234567890},
            {"id": "nul", "text": "t", "note": None, "weight": 1.5},
            {"id": "plain", "text": "患者 t", "weight": 1e-07, "tags": ["a", "b"]}]
    make_dataset("fast", "document", rows)
    out = tmp_path / "fast.jsonl"
    call_command("export_records", dataset="fast", format="jsonl", out=str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    got = {r["id"]: r for r in map(json.loads, lines)}
    assert got["big"]["dose"] == 123456789012345678901234567890
    assert got["nul"]["note"] is None and got["nul"]["weight"] == 1.5
    assert {k: v for k, v in got["plain"].items() if k not in ("lang", "source")} == {"id": "plain", "text": "患者 t", "weight": 1e-07,
                                                                       "tags": ["a", "b"]}
    assert all(", " not in line.replace("患者 t", "") for line in lines)  # one compact form, whichever encoder wrote it


def test_nan_and_infinity_are_refused_with_their_line(tmp_path):
    """The stdlib reads NaN/Infinity, which are not JSON and which neither database stores (SQLite's
    insert dropped such a row silently, reporting it imported): refused at the line, nothing written."""
    from django.core.management.base import CommandError

    from medstudio.datasets.models import Dataset

    p = tmp_path / "nan.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "w": NaN}\n{"id": "c", "text": "z", "w": -Infinity}\n',
                 encoding="utf-8")
    with pytest.raises(CommandError):
        call_command("import_records", str(p), dataset="nan", kind="document")
    assert not Dataset.objects.filter(name="nan").exists()
    call_command("import_records", str(p), dataset="nan", kind="document", skip_bad_lines=True)
    assert sorted(Record.objects.filter(dataset__name="nan").values_list("external_id", flat=True)) == ["a"]


def test_nan_in_a_parquet_column_is_a_bad_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"], "w": [1.0, float("nan")]}), p)
    call_command("import_records", str(p), dataset="pnan", kind="document", skip_bad_lines=True)
    assert list(Record.objects.filter(dataset__name="pnan").values_list("external_id", flat=True)) == ["a"]
