"""Imports are all or nothing, alike on SQLite and PostgreSQL (CI runs this file on both):
NUL characters, lone surrogates, duplicate ids within a file, dialogues with no user turn, and a
database error or a cancel in the middle of an import."""
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from medstudio.datasets import services
from medstudio.datasets.models import Dataset, Record
from medstudio.jobs.models import Job
from medstudio.jobs.services import job_execute

pytestmark = pytest.mark.django_db


def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join((json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x) + "\n" for x in lines),
                 encoding="utf-8")
    return p


def _run(path, dataset, kind, fmt="jsonl", skip_bad=False):
    job = services.import_start(user=None, path=path, fmt=fmt, kind=kind, dataset=dataset, skip_bad=skip_bad,
                                enqueue=False)
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    return job


def _logs(job) -> str:
    return "\n".join(job.logs.values_list("message", flat=True))


# --------------------------------------------------------------------------------------- NUL


def test_nul_characters_are_stripped_and_reported(tmp_path):
    lines = [
        json.dumps({"id": "1", "turns": [{"role": "user", "content": "head\u0000ache"},
                                         {"role": "assistant", "content": "rest"}], "department": "neuro\u0000"}),
        json.dumps({"id": "2", "turns": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "ok"}]}),
        # a raw NUL byte inside a JSON string is treated like the escape
        '{"id": "3", "turns": [{"role": "user", "content": "a\x00b"}, {"role": "assistant", "content": "c"}]}',
    ]
    job = _run(_write(tmp_path, "nul.jsonl", lines), "nul", "dialogue")
    assert job.status == "succeeded", job.error
    recs = {r.external_id: r for r in Record.objects.filter(dataset__name="nul")}
    assert recs["1"].content["turns"][0]["content"] == "headache" and recs["1"].subset == "neuro"
    assert recs["3"].content["turns"][0]["content"] == "ab"
    assert "\x00" not in recs["1"].text
    assert job.result["nul_stripped"] == {"characters": 3, "lines": [1, 3], "n_lines": 2}
    assert job.result["validation"]["nul_stripped"]["lines"] == [1, 3]
    assert "Stripped 3 NUL character(s) on line(s) 1, 3" in _logs(job)


def test_nul_in_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = tmp_path / "nul.csv"
    csv.write_bytes(b"id,question,answer\nq1,fe\x00ver?,rest\n")
    pqt = tmp_path / "nul.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "q2", "question": "cough\x00?", "answer": "tea\x00"}]), pqt)
    assert _run(csv, "n", "qa", fmt="csv").status == "succeeded"
    job = _run(pqt, "n", "qa", fmt="parquet")
    assert job.status == "succeeded", job.error
    assert job.result["nul_stripped"]["characters"] == 2
    got = {r.external_id: r.content for r in Record.objects.filter(dataset__name="n")}
    assert got == {"q1": {"question": "fever?", "answer": "rest"}, "q2": {"question": "cough?", "answer": "tea"}}


def test_a_lone_surrogate_is_a_bad_line(tmp_path):
    p = _write(tmp_path, "s.jsonl", [{"id": "1", "text": "ok"}, '{"id": "2", "text": "bad \\ud800 here"}'])
    job = _run(p, "s", "document")
    assert job.status == "failed"
    [err] = job.result["validation"]["errors"]
    assert err["line"] == 2 and "unpaired surrogate" in err["reason"]
    assert not Dataset.objects.filter(name="s").exists()


# ---------------------------------------------------------------------------- duplicate ids


def test_a_duplicate_id_within_a_file_is_a_bad_line(tmp_path, capsys):
    rows = [{"id": "a", "text": "one"}, {"id": "x", "text": "two"}, {"id": "b", "text": "three"},
            {"id": "c", "text": "four"}, {"id": "x", "text": "five"}]
    p = _write(tmp_path, "dup.jsonl", rows)
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_records", str(p), dataset="dup", kind="document")
    assert "dup.jsonl:5: id 'x' already used on line 2" in capsys.readouterr().err
    assert not Dataset.objects.filter(name="dup").exists()

    call_command("import_records", str(p), dataset="dup", kind="document", skip_bad_lines=True)
    out = capsys.readouterr().out
    assert "4 new, 0 already present, 1 bad line(s) skipped" in out
    assert Record.objects.get(dataset__name="dup", external_id="x").content["text"] == "two"  # the first one wins


def test_duplicate_rows_without_ids_are_bad_lines_too(tmp_path):
    p = _write(tmp_path, "noid.jsonl", [{"text": "same"}, {"text": "other"}, {"text": "same"}])
    job = _run(p, "noid", "document")
    assert job.status == "failed"
    [err] = job.result["validation"]["errors"]
    assert err["line"] == 3 and "same content as line 1" in err["reason"]


def test_reimporting_an_identical_file_stays_idempotent(tmp_path, capsys):
    p = _write(tmp_path, "d.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(7)])
    call_command("import_records", str(p), dataset="idem", kind="document")
    call_command("import_records", str(p), dataset="idem", kind="document")
    assert "0 new, 7 already present" in capsys.readouterr().out
    assert Dataset.objects.get(name="idem").n_records == 7


# ------------------------------------------------------------------ dialogues and role names


def test_a_dialogue_with_no_user_turn_is_a_bad_line(tmp_path):
    ok = {"id": "1", "turns": [{"role": "patient", "content": "My head hurts."}, {"role": "doctor", "content": "Since when?"}]}
    sharegpt = {"id": "2", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    no_user = {"id": "3", "turns": [{"role": "doctor", "content": "Hello."}, {"role": "assistant", "content": "Anyone?"}]}
    p = _write(tmp_path, "dlg.jsonl", [ok, sharegpt, no_user])
    job = _run(p, "dlg", "dialogue")
    assert job.status == "failed"
    [err] = job.result["validation"]["errors"]
    assert err["line"] == 3 and "no user turn" in err["reason"] and "'doctor'" in err["reason"]
    job = _run(p, "dlg", "dialogue", skip_bad=True)
    assert job.status == "succeeded", job.error
    recs = {r.external_id: r.content["turns"] for r in Record.objects.filter(dataset__name="dlg")}
    assert sorted(recs) == ["1", "2"]
    assert [t["role"] for t in recs["1"]] == ["user", "assistant"]  # patient -> user, doctor -> assistant


def test_a_pair_prompt_with_no_user_turn_is_a_bad_line(tmp_path):
    p = _write(tmp_path, "p.jsonl", [{"id": "1", "prompt_turns": [{"role": "gpt", "content": "Hi."}],
                                      "chosen": "a", "rejected": "b"}])
    job = _run(p, "p", "pair")
    assert job.status == "failed" and "no user turn" in job.result["validation"]["errors"][0]["reason"]


# ------------------------------------------------------------------ failures mid-import


def _fail_on_batch(monkeypatch, n: int):
    """A real database error (a statement the database rejects) on the n-th batch."""
    real = services.records_insert
    calls = {"n": 0}

    def flaky(*, dataset, rows, **kw):
        calls["n"] += 1
        inserted = real(dataset=dataset, rows=rows, **kw)
        if calls["n"] == n:
            with connection.cursor() as cur:
                cur.execute("INSERT INTO medstudio_no_such_table VALUES (1)")
        return inserted

    monkeypatch.setattr(services, "records_insert", flaky)
    return calls


def test_a_database_error_on_the_second_batch_leaves_no_dataset_behind(tmp_path, settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 5
    calls = _fail_on_batch(monkeypatch, 2)
    p = _write(tmp_path, "d.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(12)])
    job = _run(p, "half", "document")
    assert calls["n"] == 2
    assert job.status == "failed"
    assert "refused the batch ending at line 10" in job.error and "new dataset 'half' was removed" in job.error
    assert "Traceback" not in _logs(job)
    assert not Dataset.objects.filter(name="half").exists()
    assert not Record.objects.exists()
    assert job.result["dataset_id"] is None


def test_a_failed_import_into_an_existing_dataset_removes_only_what_it_added(tmp_path, settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 5
    first = _write(tmp_path, "a.jsonl", [{"id": f"old{i}", "text": f"old {i}"} for i in range(3)])
    assert _run(first, "grow", "document").status == "succeeded"
    _fail_on_batch(monkeypatch, 2)
    # ids old0..old2 are already present: they must survive the rollback
    second = _write(tmp_path, "b.jsonl", [{"id": f"old{i}", "text": f"old {i}"} for i in range(3)]
                    + [{"id": f"new{i}", "text": f"new {i}"} for i in range(9)])
    job = _run(second, "grow", "document")
    assert job.status == "failed"
    ds = Dataset.objects.get(name="grow")
    assert sorted(Record.objects.filter(dataset=ds).values_list("external_id", flat=True)) == ["old0", "old1", "old2"]
    assert ds.n_records == 3
    assert "removed" in job.error


def test_a_cancel_mid_import_rolls_back_too(tmp_path, settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 5
    real = services.records_insert

    def cancel_after_first(*, dataset, rows, **kw):
        n = real(dataset=dataset, rows=rows, **kw)
        Job.objects.filter(kind="datasets.import").update(cancel_requested=True)
        return n

    monkeypatch.setattr(services, "records_insert", cancel_after_first)
    p = _write(tmp_path, "d.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(12)])
    job = _run(p, "cancelled", "document")
    assert job.status == "cancelled"
    assert not Dataset.objects.filter(name="cancelled").exists() and not Record.objects.exists()


def test_any_other_error_mid_import_rolls_back(tmp_path, settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 5
    real = services.records_insert
    calls = {"n": 0}

    def boom(*, dataset, rows, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(dataset=dataset, rows=rows, **kw)

    monkeypatch.setattr(services, "records_insert", boom)
    p = _write(tmp_path, "d.jsonl", [{"id": str(i), "text": f"doc {i}"} for i in range(12)])
    job = _run(p, "boom", "document")
    assert job.status == "failed" and "disk on fire" in job.error
    assert not Dataset.objects.filter(name="boom").exists()


# ------------------------------------------------------------------ one pass, one transaction


def test_one_pass_reports_every_bad_line_after_writing_batches_and_keeps_nothing(tmp_path, settings, monkeypatch):
    """Bad lines after several written batches: the file is read once, every bad line is listed
    (duplicates naming both lines), and the batches already written are rolled back."""
    settings.IMPORT_BATCH_SIZE = 4
    reads = {"n": 0}
    real_iter = services.iter_rows

    def counting(*a, **kw):
        reads["n"] += 1
        return real_iter(*a, **kw)

    monkeypatch.setattr(services, "iter_rows", counting)
    calls = {"n": 0}
    real_insert = services.records_insert

    def insert(**kw):
        calls["n"] += 1
        return real_insert(**kw)

    monkeypatch.setattr(services, "records_insert", insert)
    rows = [{"id": str(i), "text": f"doc {i}"} for i in range(10)]
    rows += ["{not json", {"id": "3", "text": "again"}] + [{"id": f"x{i}", "text": f"more {i}"} for i in range(6)]
    rows += [{"id": "late", "text": ""}]
    job = _run(_write(tmp_path, "late.jsonl", rows), "late", "document")
    assert job.status == "failed" and job.error.startswith("Nothing was imported. 3 bad line(s) of 19")
    assert reads["n"] == 1 and calls["n"] == 3  # lines 1-10 were written (3 batches) before line 11 turned out bad
    errors = {e["line"]: e["reason"] for e in job.result["validation"]["errors"]}
    assert sorted(errors) == [11, 12, 19]
    assert "invalid JSON" in errors[11] and errors[12] == "id '3' already used on line 4" and "empty" in errors[19]
    assert not Dataset.objects.filter(name="late").exists() and not Record.objects.exists()


def test_skip_bad_lines_in_one_pass(tmp_path, settings):
    settings.IMPORT_BATCH_SIZE = 3
    rows = [{"id": str(i), "text": f"doc {i}"} for i in range(7)] + [{"id": "2", "text": "dup"}, {"id": "z"}]
    job = _run(_write(tmp_path, "skip.jsonl", rows), "skip", "document", skip_bad=True)
    assert job.status == "succeeded", job.error
    assert job.result["inserted"] == 7 and job.result["validation"]["n_bad"] == 2
    assert Dataset.objects.get(name="skip").n_records == 7
    assert Record.objects.get(dataset__name="skip", external_id="2").content == {"text": "doc 2"}
