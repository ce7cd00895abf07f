"""A corpus on object storage: shards in an S3 bucket (a real S3 server on 127.0.0.1, moto's),
registered, scored and deduplicated on a real local Ray, resumed, sampled into a dataset, frozen,
counted and browsed, with its score files in the same bucket or on local disk. A site with MinIO or
Ceph names its endpoint the same way, by AWS_ENDPOINT_URL."""
from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from curation.corpus.models import Corpus
from curation.pipeline.corpus.studio import verify_frozen
from medstudio.handoffs import sources
from tests.charts import chart_options
from tests.corpus.conftest import docs

pytestmark = pytest.mark.django_db


def _put_corpus(fs, bucket: str) -> tuple[str, list[dict]]:
    """Three shards under s3://bucket/corpus/ (Parquet, Parquet, JSONL.gz in a sub-folder); the
    last shard repeats ten documents of the first, lightly edited: planted near-duplicates."""
    base = docs(90, 0)
    planted = [{**r, "id": r["id"] + "-dup", "text": r["text"] + " (reposted)"} for r in base[:10]]
    cols = ("id", "text", "lang", "source")
    pq.write_table(pa.table({k: [r[k] for r in base[:40]] for k in cols}), f"{bucket}/corpus/a.parquet", filesystem=fs)
    pq.write_table(pa.table({k: [r[k] for r in base[40:70]] for k in cols}), f"{bucket}/corpus/b.parquet", filesystem=fs)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in base[70:] + planted).encode()
    with fs.open_output_stream(f"{bucket}/corpus/more/c.jsonl.gz", compression=None) as fh:
        fh.write(gzip.compress(body))
    return f"s3://{bucket}/corpus", planted


def _score_files(fs, prefix: str) -> dict[str, int]:
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True)):
        if info.path.endswith(".scores.parquet"):
            out[info.path.rsplit("/", 1)[1]] = info.mtime_ns
    return out


@pytest.mark.slow
def test_corpus_in_a_bucket_runs_resumes_samples_and_freezes(s3_bucket, on_ray, capsys, client, django_user_model,
                                                             tmp_path):
    fs, bucket = s3_bucket
    uri, planted = _put_corpus(fs, bucket)
    out_uri = f"s3://{bucket}/scores"
    call_command("corpus", "add", "bucket", uri, "--output-uri", out_uri)
    corpus = Corpus.objects.get(name="bucket")
    assert corpus.n_docs == 100 and sorted(s.key for s in corpus.shards.all()) == ["a.parquet", "b.parquet", "more__c.jsonl.gz"]

    call_command("corpus", "run", "bucket", "--scorer", "rules", "--scorer", "minhash", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded", out
    assert out["documents"] == 100 and out["shards_done"] == 3
    # one score file per shard, in the bucket, none left half-written
    files = _score_files(fs, f"{bucket}/scores")
    assert sorted(files) == ["a.parquet.scores.parquet", "b.parquet.scores.parquet", "more__c.jsonl.gz.scores.parquet"]
    run = corpus.runs.first()
    rows = []
    for info in fs.get_file_info(pafs.FileSelector(f"{bucket}/scores", recursive=True)):
        assert ".tmp-" not in info.path
        if info.path.endswith(".scores.parquet"):
            rows += pq.read_table(info.path, filesystem=fs).to_pylist()
    dropped = {r["doc_id"] for r in rows if r["minhash_keep"] is False}
    assert {r["id"] for r in planted} <= dropped, "the planted near-duplicates are marked"
    assert run.aggregates["scorers"]["minhash"]["dropped"] == len(dropped)

    # a run killed midway: one shard's score file never committed; the re-run redoes it alone
    lost = next(p for p in fs.get_file_info(pafs.FileSelector(f"{bucket}/scores", recursive=True))
                if p.path.endswith("b.parquet.scores.parquet")).path
    fs.delete_file(lost)
    call_command("corpus", "run", "bucket", "--scorer", "rules", "--scorer", "minhash", "--json")
    redo = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert redo["status"] == "succeeded" and redo["shards_skipped"] == 2
    again = _score_files(fs, f"{bucket}/scores")
    assert {k: v for k, v in again.items() if k != "b.parquet.scores.parquet"} == \
        {k: v for k, v in files.items() if k != "b.parquet.scores.parquet"}
    assert "b.parquet.scores.parquet" in again

    # the staged dedup job reads the bucket and writes its decisions there too
    call_command("corpus", "dedup", "bucket", "--partitions", "2", "--json")
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "succeeded", res
    assert res["out_dir"].startswith(out_uri)
    decided = pq.read_table(f"{bucket}/scores/dedup-t0.8/_dedup/more__c.jsonl.gz.dedup.parquet", filesystem=fs).to_pylist()
    assert {r["id"] for r in planted} <= {r["id"] for r in decided if not r["keep"]}

    # the stratified sample becomes a dataset; a frozen selection is written beside the scores
    call_command("corpus", "sample", "bucket", "--n", "20", "--dataset", "bucket-sample")
    from medstudio.datasets.models import Dataset

    assert Dataset.objects.get(name="bucket-sample").records.count() == 20
    call_command("corpus", "freeze", "bucket", "--where", "rules_keep == true", "--as", "bucket-v1", "--json")
    frozen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert frozen["dest"].startswith("s3://")
    manifest = json.loads(fs.open_input_stream(frozen["dest"][len("s3://"):] + "/manifest.json").read())
    want = {r["doc_id"] for r in rows if r["rules_keep"]}
    assert manifest["name"] == "bucket-v1" and manifest["kept"] == len(want) and manifest["docs"] == 100
    assert not [i.path for i in fs.get_file_info(pafs.FileSelector(bucket, recursive=True)) if ".tmp-" in i.path]
    assert verify_frozen(frozen["dest"]) == []

    # the studio counts read the bucket's score files
    call_command("corpus", "counts", "bucket", "--where", "rules_keep == true", "--json")
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["kept"] == len(want) and got["docs"] == 100

    # training's data source streams exactly the kept documents from the bucket's shards
    ref = sources.resolve("corpus_selection:bucket-v1")
    info = sources.export(ref, tmp_path / "data.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert info["n_records"] == len(lines) == len(want) and {x["id"] for x in lines} == want

    # the corpus page shows a random sample read from the bucket
    cur = django_user_model.objects.create_user("cur", password="pw", role="curator")
    client.force_login(cur)
    page = client.get(f"/curation/corpora/{corpus.pk}/?seed=1")
    assert page.status_code == 200 and page.content.decode().count("<code>a.parquet</code>") >= 1
    # and the threshold studio draws its histograms and live counts from the bucket's score files
    studio = client.get(reverse("curation:corpus_studio", args=[corpus.pk]))
    charts = chart_options(studio.content.decode())
    assert studio.status_code == 200 and "rules_value" in charts
    assert sum(p[1] for series in charts["rules_value"]["series"] for p in series["data"]) == 100
    live = client.post(reverse("curation:corpus_studio_counts", args=[corpus.pk]), {"drop.rules_keep": "on"},
                       HTTP_HX_REQUEST="true")
    assert live.status_code == 200 and f'<strong id="kept-docs">{len(want)}</strong>' in live.content.decode()


@pytest.mark.slow
def test_corpus_in_a_bucket_with_local_score_files(s3_bucket, on_ray, capsys, tmp_path):
    """The default output (MEDSTUDIO_CORPUS_OUTPUT, a local folder) for a corpus in a bucket: every
    stage reads the shards from one filesystem and writes beside the scores on the other."""
    fs, bucket = s3_bucket
    uri, planted = _put_corpus(fs, bucket)
    call_command("corpus", "add", "mixed", uri)
    call_command("corpus", "run", "mixed", "--scorer", "rules", "--scorer", "minhash", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded", out
    local = sorted((tmp_path / "scores" / "mixed").rglob("*.scores.parquet"))
    assert [p.name for p in local] == ["a.parquet.scores.parquet", "b.parquet.scores.parquet",
                                       "more__c.jsonl.gz.scores.parquet"]
    assert not _score_files(fs, bucket), "nothing is written into the corpus's bucket"
    dropped = {r["doc_id"] for p in local for r in pq.read_table(p).to_pylist() if r["minhash_keep"] is False}
    assert {r["id"] for r in planted} <= dropped


def test_missing_bucket_and_bad_shard_in_a_bucket(s3_bucket):
    fs, bucket = s3_bucket
    with pytest.raises(CommandError, match="not found"):
        call_command("corpus", "add", "nothing", f"s3://{bucket}-absent/corpus")
    with fs.open_output_stream(f"{bucket}/c/broken.parquet") as fh:
        fh.write(b"PAR1 not a parquet file")
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["x"], "text": ["a document"]}), buf)
    with fs.open_output_stream(f"{bucket}/c/ok.parquet") as fh:
        fh.write(buf.getvalue())
    call_command("corpus", "add", "half", f"s3://{bucket}/c")
    shards = {s.key: s for s in Corpus.objects.get(name="half").shards.all()}
    assert shards["ok.parquet"].n_docs == 1 and not shards["ok.parquet"].error
    assert shards["broken.parquet"].n_docs is None and shards["broken.parquet"].error
