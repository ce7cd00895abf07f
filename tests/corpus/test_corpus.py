"""Corpora: registration from shard metadata, scoring on a real local Ray with resume, bad shards
(partial + retry alone), aggregates, the stratified sample as a dataset, and the corpus page."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.corpus.models import Corpus
from curation.corpus.services import corpus_register, stratified_pick
from tests.corpus.conftest import docs, write_jsonl, write_parquet

pytestmark = pytest.mark.django_db


def _corpus_dir(tmp_path, bad: bool = False):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    write_parquet(d / "part-0.parquet", docs(60, 0))
    write_parquet(d / "part-1.parquet", docs(60, 30))
    write_jsonl(d / "sub" / "part-2.jsonl.gz", docs(40, 60), "gz")
    write_jsonl(d / "part-3.jsonl.zst", docs(40, 80), "zst")
    if bad:
        lines = [json.dumps(r, ensure_ascii=False) for r in docs(20, 100)]
        lines[7] = '{"id": "broken", "text": '
        (d / "bad-line.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (d / "bad-footer.parquet").write_bytes((d / "part-0.parquet").read_bytes()[:-12])
        write_parquet(d / "no-text.parquet", docs(10, 0), rename={"text": "body"})
    return d


def test_register_counts_from_metadata(tmp_path):
    d = _corpus_dir(tmp_path, bad=True)
    c = corpus_register(actor=None, name="c", uri=str(d))
    shards = {s.key: s for s in c.shards.all()}
    assert sorted(shards) == ["bad-footer.parquet", "bad-line.jsonl", "no-text.parquet", "part-0.parquet",
                              "part-1.parquet", "part-3.jsonl.zst", "sub__part-2.jsonl.gz"]
    assert shards["part-0.parquet"].n_docs == 60 and shards["sub__part-2.jsonl.gz"].n_docs == 40
    assert shards["part-3.jsonl.zst"].n_docs == 40 and shards["no-text.parquet"].n_docs == 10
    assert shards["bad-footer.parquet"].n_docs is None and shards["bad-footer.parquet"].error
    assert c.n_docs == 60 + 60 + 40 + 40 + 20 + 10
    with pytest.raises(CommandError, match="not found"):
        call_command("corpus", "add", "missing", str(tmp_path / "nope"))


def test_stratified_pick_keeps_strata_shares():
    rows = [("a", "en", "s", str(i)) for i in range(80)] + [("b", "zh", "s", f"z{i}") for i in range(20)]
    picked = stratified_pick(rows, 10, seed=1)
    assert len(picked) == 10 and sum(r[0] == "b" for r in picked) == 2
    assert stratified_pick(rows, 10, seed=1) == picked


@pytest.mark.slow
def test_run_on_ray_partial_retry_resume_and_sample(tmp_path, on_ray, capsys):
    d = _corpus_dir(tmp_path, bad=True)
    call_command("corpus", "add", "med", str(d))
    corpus = Corpus.objects.get(name="med")

    # three bad shards fail with their reason, the four good ones are scored: the job ends partial
    with pytest.raises(CommandError, match="partial"):
        call_command("corpus", "run", "med", "--scorer", "rules", "--scorer", "pii", "--workers", "2", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "partial"
    failed = {f["shard"]: f["reason"] for f in out["failed_shards"]}
    assert sorted(failed) == ["bad-footer.parquet", "bad-line.jsonl", "no-text.parquet"]
    assert "line 8" in failed["bad-line.jsonl"] and "'text'" in failed["no-text.parquet"]
    assert out["documents"] == 200 and out["shards_done"] == 4
    rules = out["scorers"]["rules"]
    assert rules["documents"] == 200 and rules["kept"] + rules["dropped"] == 200 and rules["dropped"] > 0
    assert sum(rules["reasons"].values()) == rules["dropped"]

    run = corpus.runs.first()
    files = sorted(p.name for p in (tmp_path / "scores" / "med").rglob("*.scores.parquet"))
    assert len(files) == 4 and not list((tmp_path / "scores").rglob("*.tmp-*"))
    t = pq.read_table(next((tmp_path / "scores").rglob("part-0.parquet.scores.parquet")))
    assert {"doc_id", "shard", "rules_value", "rules_keep", "rules_reason", "pii_value", "keep", "reason"} <= set(t.column_names)
    assert t.num_rows == 60
    agg = run.aggregates
    assert agg["by_lang"]["en"]["documents"] + agg["by_lang"]["zh"]["documents"] == 200
    assert sum(agg["scorers"]["rules"]["histogram"]["counts"]) == 200
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "scores").rglob("*.scores.parquet")}

    # fix one bad shard and retry the failed ones alone: the done shards are not rewritten
    lines = [json.dumps(r, ensure_ascii=False) for r in docs(20, 100)]
    (d / "bad-line.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CommandError, match="partial"):
        call_command("corpus", "run", "med", "--retry-failed", "--scorer", "rules", "--json")
    retry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert retry["shards_total"] == 3 and retry["shards_done"] == 1
    assert sorted(f["shard"] for f in retry["failed_shards"]) == ["bad-footer.parquet", "no-text.parquet"]
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())

    # the same run again resumes: every committed shard is skipped
    with pytest.raises(CommandError):
        call_command("corpus", "run", "med", "--scorer", "rules", "--scorer", "pii", "--json")
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["shards_skipped"] == 5 and again["documents"] == 220
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())

    # a run killed midway: one shard's score file never committed (only an orphaned temporary
    # file); the re-run redoes that shard alone
    lost = next((tmp_path / "scores").rglob("part-1.parquet.scores.parquet"))
    orphan = lost.with_name(lost.name + ".tmp-deadbeef")
    lost.rename(orphan)
    with pytest.raises(CommandError):
        call_command("corpus", "run", "med", "--scorer", "rules", "--scorer", "pii", "--json")
    redo = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert redo["shards_skipped"] == 4 and redo["shards_done"] == 5 and lost.exists()
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items() if p != lost)

    # a stratified sample becomes a normal dataset through the import job
    call_command("corpus", "sample", "med", "--n", "30", "--dataset", "med-sample")
    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.get(name="med-sample")
    assert ds.records.count() == 30 and ds.kind == "document"
    assert set(ds.records.values_list("lang", flat=True)) == {"en", "zh"}


@pytest.mark.slow
@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_clean_run_succeeds_and_prints_summary(tmp_path, on_ray, capsys, as_uri):
    """A folder, or the same folder as a URI: object storage (s3://, gs://) goes through the same
    pyarrow.fs URI path (FileSystem.from_uri), which file:// exercises without a cloud account."""
    d = tmp_path / "c2"
    d.mkdir()
    write_parquet(d / "a.parquet", docs(40, 0))
    write_jsonl(d / "b.jsonl", docs(40, 40))
    out = tmp_path / "scores"
    if as_uri:
        call_command("corpus", "add", "small", d.as_uri(), "--output-uri", out.as_uri())
    else:
        call_command("corpus", "add", "small", str(d))
    call_command("corpus", "run", "small", "--scorer", "rules")
    text = capsys.readouterr().out
    assert "succeeded; 2/2 shards" in text and "rules: documents=80" in text
    if as_uri:  # the score files went where the output URI said
        assert sorted(p.name for p in out.rglob("*.scores.parquet")) == ["a.parquet.scores.parquet", "b.jsonl.scores.parquet"]


def test_corpus_pages_check_roles(tmp_path, client, django_user_model):
    d = tmp_path / "c3"
    d.mkdir()
    write_parquet(d / "a.parquet", docs(30, 0))
    c = corpus_register(actor=None, name="page", uri=str(d))
    clin = django_user_model.objects.create_user("clin", password="pw", role="clinician")
    cur = django_user_model.objects.create_user("cur", password="pw", role="curator")
    client.force_login(clin)
    assert client.get(f"/curation/corpora/{c.pk}/").status_code == 403
    client.force_login(cur)
    page = client.get(f"/curation/corpora/{c.pk}/?seed=3")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Random sample" in body and body.count("<code>a.parquet</code>") >= 20
    assert client.get("/curation/corpora/").status_code == 200
