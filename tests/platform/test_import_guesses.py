"""Issue 18.9: the import form offers the benchmark flag and fills the name from the file; a file of
the wrong kind says which kind it looks like instead of listing every line; no uuid file names."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from medstudio.datasets.models import Dataset
from medstudio.datasets.services import display_name, import_validate
from medstudio.jobs.models import Job

pytestmark = pytest.mark.django_db


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def test_wrong_kind_file_says_which_kind_fits(client_for, tmp_path):
    docs = [{"id": str(i), "text": f"fever case {i}"} for i in range(500)]
    c = client_for("curator")
    r = c.post("/datasets/import/", {"file": SimpleUploadedFile("notes.jsonl", _jsonl(docs)), "dataset": "notes", "kind": "qa"},
               follow=True)
    job = Job.objects.get(kind="datasets.import")
    assert job.status == "failed" and "This looks like kind=document, not kind=qa" in job.error
    assert job.result["validation"]["kind_hint"] == "document" and len(job.result["validation"]["errors"]) <= 3
    page = r.content.decode()
    assert "This looks like kind=document" in page and page.count("<tr><td>") <= 4
    assert not Dataset.objects.exists()


def test_a_few_bad_lines_are_not_a_kind_mistake(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(_jsonl([{"id": "1", "question": "q", "answer": "a"}, {"id": "2", "text": "just text"}] +
                         [{"id": str(i), "question": "q", "answer": "a"} for i in range(3, 10)]))
    report = import_validate(path=p, fmt="jsonl", kind="qa")
    assert report.n_bad == 1 and report.kind_hint == "" and "looks like" not in report.summary()


def test_benchmark_flag_and_file_name_without_uuid(client_for):
    c = client_for("curator")
    form = c.get("/datasets/import/").content.decode()
    assert 'name="benchmark"' in form and 'id="id_file"' in form and "id_dataset" in form
    f = SimpleUploadedFile("mcq_bench.jsonl", _jsonl([{"id": "1", "question": "q?", "options": {"A": "x", "B": "y"}, "answer": "A"}]))
    c.post("/datasets/import/", {"file": f, "dataset": "bench", "kind": "mcq", "benchmark": "on"})
    assert Dataset.objects.get(name="bench").is_benchmark
    job = Job.objects.get(kind="datasets.import")
    assert job.status == "succeeded", job.error
    page = c.get(f"/jobs/{job.pk}/").content.decode()
    assert "mcq_bench.jsonl" in page and job.params["path"].split("/")[-1] not in page
    assert display_name("/m/imports/0123456789abcdef0123456789abcdef_notes.jsonl") == "notes.jsonl"
    assert display_name("/x/plain_name.jsonl") == "plain_name.jsonl"
