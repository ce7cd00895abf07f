"""Issue 16 point 6: the fast row path keeps search, all-or-nothing imports and exports intact.

On PostgreSQL imports COPY their rows and no trigram index covers the insert path: each large
dataset gets its own index, built by a job after the import (medstudio/datasets/search_index.py).
"""
import json
import random

import pytest
from django.db import connection
from django.urls import reverse

from medstudio.datasets import search_index, services
from medstudio.datasets.models import Dataset, Record
from medstudio.datasets.selectors import records_filtered
from medstudio.datasets.text import _CJK_RE, _WORD_RE, text_stats
from medstudio.jobs.models import Job
from medstudio.jobs.services import job_execute

pytestmark = pytest.mark.django_db

DOCS = [{"id": f"d{i}", "text": t, "source": "s"} for i, t in enumerate([
    "Patient reports HEADACHE and nausea", "患者主诉头痛三天伴恶心", "no match here", "chronic headache, 头痛 again",
    "Fever only", "高血压病史 hypertension", "headaches daily", "头痛", "nothing", "HeadAche mixed case"])]
QUERIES = ["headache", "头痛", "HEADACHE", "高血压", "nausea", "fever", "zzz", "ache", "e"]


def _expected(rows, q):
    return sorted(r["id"] for r in rows if q.upper() in r["text"].upper())


def _found(dataset, q):
    return sorted(records_filtered(dataset=dataset, q=q).values_list("external_id", flat=True))


def _import(tmp_path, name, rows, kind="document"):
    path = tmp_path / f"{name}-{random.random()}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    job = services.import_start(user=None, path=path, fmt="jsonl", kind=kind, dataset=name, enqueue=False)
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    return job


def _index_exists(dataset_id):
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [search_index.index_name(dataset_id)])
        return cur.fetchone()[0] == 1


def test_search_finds_the_imported_records(tmp_path, settings):
    """SQLite and PostgreSQL: search after an import finds exactly the records whose text has q."""
    settings.SEARCH_INDEX_MIN_RECORDS = 5  # on PostgreSQL this dataset gets its own trigram index
    job = _import(tmp_path, "search-ds", DOCS)
    assert job.status == "succeeded", job.error
    ds = Dataset.objects.get(name="search-ds")
    for q in QUERIES:
        assert _found(ds, q) == _expected(DOCS, q), q
    assert _found(ds, "headache") == ["d0", "d3", "d6", "d9"]


@pytest.mark.postgres
def test_the_index_is_built_after_the_import_and_used_and_results_match_without_it(tmp_path, settings):
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    assert _import(tmp_path, "indexed", DOCS).status == "succeeded"
    ds = Dataset.objects.get(name="indexed")
    # the import asked for the index; the (eager) job built it
    idx_job = Job.objects.get(kind=search_index.JOB_KIND, params__dataset_id=ds.pk)
    assert idx_job.status == "succeeded" and search_index.state(ds) == "ready"
    filler = [{"id": f"f{i}", "text": f"filler record number {i} about something else"} for i in range(600)]
    assert _import(tmp_path, "indexed", filler).status == "succeeded"  # an append: a selective search now
    with connection.cursor() as cur:
        cur.execute("ANALYZE datasets_record")
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_indexscan = off")
        cur.execute("SET LOCAL cpu_operator_cost = 10")  # a LIKE per row costs what it does on long texts
        sql, params = records_filtered(dataset=ds, q="headache").query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("RESET enable_seqscan")
        cur.execute("RESET enable_indexscan")
        cur.execute("RESET cpu_operator_cost")
    assert search_index.index_name(ds.pk) in plan, plan
    with_index = {q: _found(ds, q) for q in QUERIES}
    search_index.drop(ds.pk)
    ds.refresh_from_db()
    assert search_index.state(ds) == "building"  # large enough to want one, and it has none
    assert {q: _found(ds, q) for q in QUERIES} == with_index
    assert all(with_index[q] == _expected(DOCS + filler, q) for q in QUERIES)


@pytest.mark.postgres
def test_no_trigram_index_covers_the_insert_path(tmp_path, settings):
    """The table-wide trigram index is gone; a small dataset has none; other datasets' indexes are partial."""
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    _import(tmp_path, "big", DOCS)
    _import(tmp_path, "small", DOCS[:3])
    small = Dataset.objects.get(name="small")
    assert not _index_exists(small.pk) and search_index.state(small) == ""
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'datasets_record' AND indexdef LIKE '%%gin%%'")
        gin = cur.fetchall()
    assert gin and all("WHERE (dataset_id = " in d for _n, d in gin), gin
    assert "record_text_trgm" not in {n for n, _d in gin}


@pytest.mark.postgres
def test_a_failed_import_leaves_no_records_and_no_index(tmp_path, settings, monkeypatch):
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    settings.IMPORT_BATCH_SIZE = 4
    real = services.records_insert
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        n = real(**kw)
        if calls["n"] == 2:
            with connection.cursor() as cur:
                cur.execute("INSERT INTO medstudio_no_such_table VALUES (1)")
        return n

    monkeypatch.setattr(services, "records_insert", flaky)
    job = _import(tmp_path, "doomed", DOCS)
    assert job.status == "failed" and "was removed" in job.error
    assert not Dataset.objects.filter(name="doomed").exists() and not Record.objects.exists()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'record_trgm_ds%%'")
        assert cur.fetchone()[0] == 0
    assert not Job.objects.filter(kind=search_index.JOB_KIND).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # as in a worker: no transaction around the job (DDL is CONCURRENTLY)
def test_a_large_append_drops_the_index_and_it_is_rebuilt(tmp_path, settings):
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    _import(tmp_path, "grow", DOCS[:6])
    ds = Dataset.objects.get(name="grow")
    assert search_index.state(ds) == "ready"
    more = [{"id": f"n{i}", "text": f"new headache {i}"} for i in range(8)]
    job = _import(tmp_path, "grow", more)
    assert job.status == "succeeded", job.error
    assert "Dropped the dataset's search index" in "\n".join(job.logs.values_list("message", flat=True))
    ds.refresh_from_db()
    assert ds.n_records == 14 and search_index.state(ds) == "ready"
    assert _found(ds, "headache") == _expected(DOCS[:6] + more, "headache")
    pk = ds.pk
    services.dataset_delete(actor=None, dataset=ds)  # autocommit: its index is dropped at once
    assert not _index_exists(pk)


@pytest.mark.postgres
def test_deleting_a_dataset_drops_its_index(tmp_path, settings, django_capture_on_commit_callbacks):
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    _import(tmp_path, "gone", DOCS)
    ds = Dataset.objects.get(name="gone")
    pk = ds.pk
    assert _index_exists(pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.dataset_delete(actor=None, dataset=ds)
    assert not _index_exists(pk)


@pytest.mark.postgres
def test_copy_falls_back_when_an_id_is_already_there(tmp_path):
    """A row another writer inserted meanwhile: the COPY's unique violation is caught, the rest goes in."""
    from medstudio.datasets.formats import normalize_row

    ds = services.dataset_create(actor=None, name="race", kind="document")
    rows = [normalize_row({"id": f"r{i}", "text": f"text {i}"}, "document") for i in range(5)]
    services.records_insert(dataset=ds, rows=rows[:2])
    services.records_insert(dataset=ds, rows=rows, check_existing=False)  # r0, r1 collide inside the COPY
    assert sorted(Record.objects.filter(dataset=ds).values_list("external_id", flat=True)) == [f"r{i}" for i in range(5)]
    r3 = Record.objects.get(dataset=ds, external_id="r3")
    assert r3.content == {"text": "text 3"} and r3.text == "text 3" and r3.n_tokens == 2 and r3.text_hash == rows[3].text_hash


def test_the_detail_page_says_when_the_index_is_building(client_for, tmp_path, settings, monkeypatch):
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    _import(tmp_path, "page-ds", DOCS)
    ds = Dataset.objects.get(name="page-ds")
    client = client_for("clinician")
    assert 'id="search-index-state"' not in client.get(reverse("datasets:detail", args=[ds.pk])).content.decode()
    monkeypatch.setattr(search_index, "index_valid", lambda pk: None)
    monkeypatch.setattr(search_index, "_pg", lambda: True)
    assert 'id="search-index-state"' in client.get(reverse("datasets:detail", args=[ds.pk])).content.decode()


def _reference_stats(text):
    cjk = len(_CJK_RE.findall(text))
    words = _WORD_RE.findall(text)
    latin = sum(map(len, words))
    if not cjk and not latin:
        return cjk + len(words), "und"
    return cjk + len(words), "zh" if cjk / (cjk + latin) >= 0.2 else "en"


def test_fast_token_counts_equal_the_regex_definition():
    rnd = random.Random(3)
    alphabet = "ab Z9_-.,\t\n\x01\x7fé中文字ｱかカ한글" + "頭痛" * 3
    samples = ["", " ", "a", " a", "a ", "a_b", "x-y z", "中a文b", "ÄÖ über", "١٢٣ عربى", "日本語テキスト and ｶﾀｶﾅ"]
    samples += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 60))) for _ in range(3000)]
    samples += [d["text"] for d in DOCS]
    for s in samples:
        assert text_stats(s) == _reference_stats(s), repr(s)


def _index_oid(dataset_id):
    with connection.cursor() as cur:
        cur.execute("SELECT oid FROM pg_class WHERE relname = %s", [search_index.index_name(dataset_id)])
        row = cur.fetchone()
    return row and row[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # as in a worker: the index could be dropped (CONCURRENTLY)
def test_reimporting_an_identical_file_keeps_the_index(tmp_path, settings):
    """0 new rows: the index is neither dropped nor rebuilt; a real large append still drops it."""
    settings.SEARCH_INDEX_MIN_RECORDS = 5
    rows = DOCS + [{"id": f"e{i}", "text": f"extra headache {i}"} for i in range(10)]
    assert _import(tmp_path, "same", rows).status == "succeeded"
    ds = Dataset.objects.get(name="same")
    oid = _index_oid(ds.pk)
    assert oid and search_index.state(ds) == "ready"
    n_jobs = Job.objects.filter(kind=search_index.JOB_KIND).count()
    job = _import(tmp_path, "same", rows)
    assert job.status == "succeeded", job.error
    assert job.result["inserted"] == 0 and job.result["already_present"] == 20
    assert "Dropped" not in "\n".join(job.logs.values_list("message", flat=True))
    assert _index_oid(ds.pk) == oid and Job.objects.filter(kind=search_index.JOB_KIND).count() == n_jobs
    more = [{"id": f"n{i}", "text": f"new {i}"} for i in range(25)]
    job = _import(tmp_path, "same", rows + more)  # 25 new of 45 rows: more new rows than the dataset's 20
    assert "Dropped the dataset's search index" in "\n".join(job.logs.values_list("message", flat=True))
    ds.refresh_from_db()
    assert ds.n_records == 45 and search_index.state(ds) == "ready" and _index_oid(ds.pk) != oid


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # as in a worker: what other sessions see while the import runs
def test_an_import_is_one_transaction_and_its_progress_is_visible_meanwhile(tmp_path, settings, monkeypatch):
    from django.db import DEFAULT_DB_ALIAS, connections

    settings.IMPORT_BATCH_SIZE = 4
    other = connections.create_connection(DEFAULT_DB_ALIAS)  # another session, like the web process
    seen = []
    real = services.records_insert

    def insert(**kw):
        n = real(**kw)
        with other.cursor() as cur:
            cur.execute("SELECT done, heartbeat_at FROM jobs_job WHERE kind = 'datasets.import'")
            done, beat = cur.fetchone()
            cur.execute("SELECT count(*) FROM datasets_record")
            seen.append((done, beat, cur.fetchone()[0]))
        return n

    monkeypatch.setattr(services, "records_insert", insert)
    try:
        job = _import(tmp_path, "visible", DOCS)
    finally:
        other.close()
    assert job.status == "succeeded", job.error
    # after batch k the other session sees the count of the batch before (written by the heartbeat), no records
    assert [(d, n) for d, _b, n in seen] == [(0, 0), (4, 0), (8, 0)]
    assert seen[1][1] > seen[0][1]
    assert Record.objects.filter(dataset__name="visible").count() == 10 and job.done == 10


def test_a_documents_stored_text_is_flat_text():
    """The import builds a document's Record.text inline; it is what convert.flat_text gives."""
    from medstudio.datasets.convert import flat_text
    from medstudio.datasets.formats import normalize_row

    rows = [{"text": "a"}, {"text": "body", "title": "Title"}, {"text": "x", "title": ""}, {"text": "x", "title": 7},
            {"content": "y", "system": "be brief", "meta": {"department": "neuro"}}, {"document": "头痛", "title": "  "}]
    for row in rows:
        rec = normalize_row(row, "document")
        assert rec.text == flat_text("document", rec.content), row


@pytest.mark.postgres
def test_a_new_dataset_streams_in_fewer_larger_copies(tmp_path, settings, monkeypatch):
    """A COPY's end waits for the server, so a new dataset's streamed rows go in batches of
    IMPORT_STREAM_BATCH_SIZE, not IMPORT_BATCH_SIZE; an append keeps IMPORT_BATCH_SIZE."""
    settings.IMPORT_BATCH_SIZE = 2
    settings.IMPORT_STREAM_BATCH_SIZE = 5
    real = services.records_insert
    sizes: list[int] = []

    def counting(**kw):
        rows = kw["rows"]
        kw["rows"] = list(rows)
        sizes.append(len(kw["rows"]))
        return real(**kw)

    monkeypatch.setattr(services, "records_insert", counting)
    docs = [{"id": f"s{i}", "text": f"streamed {i}"} for i in range(12)]
    assert _import(tmp_path, "streamed", docs).status == "succeeded"
    assert sizes == [5, 5, 2]
    sizes.clear()
    assert _import(tmp_path, "streamed", docs + [{"id": "s12", "text": "one more"}]).status == "succeeded"
    assert sizes == [2] * 6 + [1]
    assert Record.objects.filter(dataset__name="streamed").count() == 13
