"""`corpus dedup` as a MedStudio job on a real local Ray, and `corpus counts | freeze` over a run's
score files, from the command line."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.corpus.models import CorpusRun
from curation.corpus.services import corpus_register
from tests.corpus.conftest import docs, write_parquet
from tests.corpus.test_studio import _ok, _score_files

pytestmark = pytest.mark.django_db


def test_counts_and_freeze_from_the_cli(tmp_path, capsys):
    d = tmp_path / "corpus"
    d.mkdir()
    write_parquet(d / "p.parquet", docs(10, 0))
    c = corpus_register(actor=None, name="pool", uri=str(d))
    with pytest.raises(CommandError, match="no scoring run yet"):
        call_command("corpus", "counts", "pool", "--where", "rules_value >= 0.3")
    rows = _score_files(tmp_path / "out" / "rules-abc")
    CorpusRun.objects.create(corpus=c, scorers={"rules": {}}, out_dir=str(tmp_path / "out" / "rules-abc"))
    where = ["--where", "rules_value >= 0.3", "--where", "pii_value <= 1", "--where", "rules_keep == true",
             "--where", "n_chars > 100", "--where", "pii_keep != false"]
    call_command("corpus", "counts", "pool", *where, "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["kept"] == sum(map(_ok, rows)) and out["docs"] == len(rows)
    call_command("corpus", "freeze", "pool", *where, "--as", "clean-v1", "--json")
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads(open(res["dest"] + "/manifest.json").read())
    assert manifest["name"] == "clean-v1" and manifest["kept"] == out["kept"]
    with pytest.raises(CommandError, match="unknown column"):
        call_command("corpus", "counts", "pool", "--where", "nope >= 1")
    with pytest.raises(CommandError, match="no operator"):
        call_command("corpus", "counts", "pool", "--where", "rules_value")


@pytest.mark.slow
def test_dedup_job_on_ray(tmp_path, on_ray, capsys, settings):
    base = docs(80, 0)
    copies = [{**r, "id": r["id"] + "-copy", "source": "mirror"} for r in base[:20]]
    d = tmp_path / "corpus"
    d.mkdir()
    write_parquet(d / "a.parquet", base[:50])
    write_parquet(d / "b.parquet", base[50:] + copies)
    corpus_register(actor=None, name="dups", uri=str(d))
    call_command("corpus", "dedup", "dups", "--partitions", "2", "--json")
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "succeeded", res
    assert res["documents"] == 100 and res["dropped"] >= 20
    decisions = [r for name in ("a.parquet", "b.parquet")
                 for r in pq.read_table(f"{res['out_dir']}/_dedup/{name}.dedup.parquet").to_pylist()]
    dropped = {r["id"] for r in decisions if not r["keep"]}
    assert {r["id"] + "-copy" for r in base[:20]} <= dropped  # copies come later in corpus order
    assert all(r["duplicate_of"] for r in decisions if not r["keep"])
    assert res["verify_rounds"] == {"source": 0, "merged": 1}  # the copies are in another source

    # the site's MEDSTUDIO_DEDUP_SIGS_PER_ROUND reaches the job: a tiny object-store budget
    # verifies in several rounds, and finds the same duplicates
    settings.CORPUS_DEDUP_SIGS_PER_ROUND = 8
    call_command("corpus", "dedup", "dups", "--partitions", "2", "--json")
    small = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert small["status"] == "succeeded" and small["verify_rounds"]["merged"] > 1
    assert small["dropped"] == res["dropped"] and small["clusters"] == res["clusters"]
