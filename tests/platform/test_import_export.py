"""Import through the command, the browser upload and the API; export and round trips."""
import hashlib
import json

import pytest
from django.core.management import CommandError, call_command
from django.core.files.uploadedfile import SimpleUploadedFile

from medstudio.datasets.models import Dataset, Export, Record
from medstudio.jobs.models import Job

pytestmark = pytest.mark.django_db


def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join((json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x) + "\n" for x in lines),
                 encoding="utf-8")
    return p


def test_command_imports_shared_dialogues_and_mcqs(shared_data, capsys):
    call_command("import_records", str(shared_data / "cmtmedqa_multiturn.jsonl"), dataset="cmt", kind="dialogue")
    call_command("import_records", str(shared_data / "cmmlu_med.jsonl"), dataset="cmmlu", kind="mcq")
    n_dialogues = sum(1 for _ in open(shared_data / "cmtmedqa_multiturn.jsonl", encoding="utf-8"))
    n_mcq = sum(1 for _ in open(shared_data / "cmmlu_med.jsonl", encoding="utf-8"))
    cmt, cmmlu = Dataset.objects.get(name="cmt"), Dataset.objects.get(name="cmmlu")
    assert (cmt.n_records, cmmlu.n_records) == (n_dialogues, n_mcq)
    assert cmt.langs == {"zh": n_dialogues}
    assert cmt.n_tokens == sum(Record.objects.filter(dataset=cmt).values_list("n_tokens", flat=True)) > 0
    first = json.loads(open(shared_data / "cmtmedqa_multiturn.jsonl", encoding="utf-8").readline())
    rec = Record.objects.get(dataset=cmt, external_id=first["id"])
    assert rec.content["turns"] == first["turns"]
    assert rec.subset == first["department"]
    out = capsys.readouterr().out
    assert f"{n_mcq} new" in out


def test_reimport_is_idempotent(tmp_path):
    p = _write(tmp_path, "docs.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(30)])
    call_command("import_records", str(p), dataset="d", kind="document")
    call_command("import_records", str(p), dataset="d", kind="document")
    assert Record.objects.filter(dataset__name="d").count() == 30
    # rows without ids are keyed by content hash, so those are idempotent too
    q = _write(tmp_path, "noid.jsonl", [{"text": f"x {i}"} for i in range(5)])
    call_command("import_records", str(q), dataset="e", kind="document")
    call_command("import_records", str(q), dataset="e", kind="document")
    assert Record.objects.filter(dataset__name="e").count() == 5


def test_bad_lines_reject_the_whole_file_and_leave_the_database_as_it_was(tmp_path, capsys):
    p = _write(tmp_path, "bad.jsonl", [{"id": "1", "text": "fine"}, {"id": "2"}, "{oops", {"id": "4", "text": "fine"}])
    before = (Dataset.objects.count(), Record.objects.count())
    with pytest.raises(CommandError, match="2 bad line"):
        call_command("import_records", str(p), dataset="bad", kind="document")
    err = capsys.readouterr().err
    assert "bad.jsonl:2: missing field 'text'" in err
    assert "bad.jsonl:3: invalid JSON" in err
    assert (Dataset.objects.count(), Record.objects.count()) == before


def test_skip_bad_lines_imports_the_rest(tmp_path, capsys):
    p = _write(tmp_path, "bad.jsonl", [{"id": "1", "text": "fine"}, {"id": "2"}, {"id": "3", "text": "fine too"}])
    call_command("import_records", str(p), dataset="some", kind="document", skip_bad_lines=True)
    assert sorted(Record.objects.values_list("external_id", flat=True)) == ["1", "3"]
    assert "1 bad line(s) skipped" in capsys.readouterr().out


def test_unknown_kind_and_wrong_kind_are_clear(tmp_path):
    p = _write(tmp_path, "d.jsonl", [{"id": "1", "text": "x"}])
    with pytest.raises(CommandError, match="Unknown kind 'poem'"):
        call_command("import_records", str(p), dataset="x", kind="poem")
    call_command("import_records", str(p), dataset="x", kind="document")
    with pytest.raises(CommandError, match="holds document records, not mcq"):
        call_command("import_records", str(p), dataset="x", kind="mcq")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    with pytest.raises(CommandError, match="empty"):
        call_command("import_records", str(p), dataset="x", kind="document")
    assert not Dataset.objects.exists()


def test_browser_upload_with_bad_lines_shows_them_and_imports_nothing(client_for):
    client = client_for("curator")
    f = SimpleUploadedFile("x.jsonl", b'{"id":"1","text":"ok"}\n{"id":"2","text":3}\n\xff\n')
    resp = client.post("/datasets/import/", {"file": f, "dataset": "up", "kind": "document"}, follow=True)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Nothing was imported" in html
    assert "field &#x27;text&#x27; must be text" in html and "invalid UTF-8" in html
    assert not Dataset.objects.filter(name="up").exists()
    job = Job.objects.get(kind="datasets.import")
    assert job.status == "failed"
    assert [e["line"] for e in job.result["validation"]["errors"]] == [2, 3]


def test_browser_upload_csv_and_parquet(client_for, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    client = client_for("curator")
    csv = SimpleUploadedFile("qa.csv", "id,question,answer\nq1,头痛怎么办,多休息\n".encode())
    client.post("/datasets/import/", {"file": csv, "dataset": "qa", "kind": "qa"})
    path = tmp_path / "qa.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "q2", "question": "Fever?", "answer": "Rest."}]), path)
    client.post("/datasets/import/", {"file": SimpleUploadedFile("qa.parquet", path.read_bytes()), "dataset": "qa",
                                      "kind": "auto"})
    ds = Dataset.objects.get(name="qa")
    assert ds.n_records == 2 and ds.langs == {"zh": 1, "en": 1}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_round_trip_with_hash(fmt, shared_data, tmp_path, make_dataset):
    rows = [json.loads(line) for line in open(shared_data / "cmmlu_med.jsonl", encoding="utf-8")][:40]
    make_dataset("src", "mcq", rows)
    out = tmp_path / f"out.{fmt}"
    call_command("export_records", dataset="src", format=fmt, out=str(out))
    export = Export.objects.get()
    assert export.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert export.n_records == 40
    call_command("import_records", str(out), dataset="copy", kind="mcq")
    a = {r.external_id: r.content for r in Record.objects.filter(dataset__name="src")}
    b = {r.external_id: r.content for r in Record.objects.filter(dataset__name="copy")}
    assert a == b


def test_filtered_export(make_dataset, tmp_path):
    make_dataset("mixed", "document", [{"id": "1", "text": "头痛发热"}, {"id": "2", "text": "A headache"},
                                       {"id": "3", "text": "Headache again"}])
    out = tmp_path / "en.jsonl"
    call_command("export_records", dataset="mixed", format="jsonl", out=str(out), lang="en", q="again")
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["3"]
