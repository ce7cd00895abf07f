"""Decontamination, the domain classifier and the DataRater on a corpus, shard by shard on the real
local Ray: the benchmark index is built once by the MedStudio job and shipped through Ray's object
store; the trained models come from the model registry (local directories) and load once per
worker process. A missing model or benchmark is refused before anything runs."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from curation.corpus.models import Corpus, CorpusRun
from curation.corpus.services import corpus_register, corpus_run_start
from curation.modelscorers.models import TrainedModel
from curation.pipeline.rater import REGRESS, CLASSIFY, RaterModel, train_rater
from medstudio.datasets.models import Dataset
from tests.conftest import SHARED_DATA
from tests.corpus.conftest import write_jsonl, write_parquet

pytestmark = pytest.mark.django_db


def _jsonl(name, n, skip=0):
    with open(SHARED_DATA / name, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return rows[skip:skip + n]


def _med(n, skip=0):
    return [{"id": f"m{r['id']}", "text": r["answer"], "lang": "zh", "source": "huatuo"}
            for r in _jsonl("huatuo26m_test_qa.jsonl", n, skip)]


def _gen(n, skip=0):
    return [{"id": f"g{r['id']}", "text": r["text"], "lang": "zh", "source": "wiki"} for r in _jsonl("general_zh.jsonl", n, skip)]


def _models(tmp_path):
    """A domain classifier and a DataRater trained on other documents (hashed features), registered ready."""
    med, gen = _med(60, 200), _gen(60, 200)
    texts = [d["text"] for d in med + gen]
    dom, _ = train_rater(texts, ["medical"] * 60 + ["general"] * 60, task=CLASSIFY)
    rat, _ = train_rater(texts, [min(5.0, len(t) / 100) for t in texts], task=REGRESS)
    out = {}
    for kind, model in (("domain", dom), ("datarater", rat)):
        path = model.save(tmp_path / "models" / kind)
        out[kind] = TrainedModel.objects.create(kind=kind, version=1, status="ready", path=path, classes=model.classes)
    return out


def _refused(**kw):
    with pytest.raises(ValueError) as exc:
        corpus_run_start(actor=None, enqueue=False, **kw)
    return str(exc.value)


def test_missing_model_or_benchmark_is_refused_before_the_run(tmp_path, settings):
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    d = tmp_path / "c"
    d.mkdir()
    write_parquet(d / "a.parquet", _med(4))
    c = corpus_register(actor=None, name="c", uri=str(d))
    assert "train one on the Model scorers page" in _refused(corpus=c, scorers={"domain": {}})
    assert "train one on the Model scorers page" in _refused(corpus=c, scorers={"datarater": {"model_version": 7}})
    assert "no benchmark dataset" in _refused(corpus=c, scorers={"decontam": {}})
    assert "no dataset named nope" in _refused(corpus=c, scorers={"decontam": {"benchmarks": ["nope"]}})
    assert "unknown settings" in _refused(corpus=c, scorers={"decontam": {"n": 3}})
    assert "unknown corpus scorer" in _refused(corpus=c, scorers={"magic": {}})
    assert not CorpusRun.objects.exists()


@pytest.mark.slow
def test_decontam_domain_and_datarater_on_ray(tmp_path, on_ray, make_dataset, capsys):
    models = _models(tmp_path)
    med, gen = _med(30), _gen(30)
    d = tmp_path / "corpus"
    d.mkdir()
    write_parquet(d / "a.parquet", med[:15] + gen[:15])
    write_jsonl(d / "b.jsonl", med[15:] + gen[15:])
    corpus_register(actor=None, name="mix", uri=str(d))
    # a benchmark whose items copy three corpus documents
    leaked = [med[2], gen[20], med[25]]
    bench = make_dataset("bench", "document", [{"id": f"b{i}", "text": x["text"]} for i, x in enumerate(leaked)])
    Dataset.objects.filter(pk=bench.pk).update(is_benchmark=True)

    call_command("corpus", "run", "mix", "--scorer", "decontam", "--scorer", "domain", "--scorer", "datarater",
                 "--workers", "2", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded", out
    assert out["documents"] == 60 and out["shards_done"] == 2
    run = Corpus.objects.get(name="mix").runs.first()
    assert run.scorers["domain"]["model_version"] == 1 and run.scorers["decontam"]["benchmarks"] == ["bench"]
    rows = [r for p in sorted(Path(run.out_dir).glob("*.scores.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 60
    by_id = {r["doc_id"]: r for r in rows}

    # decontamination: the copied documents are dropped, with their reason, and few others
    contaminated = {r["doc_id"] for r in rows if not r["decontam_keep"]}
    assert {x["id"] for x in leaked} <= contaminated and len(contaminated) < 10
    assert all(by_id[x["id"]]["decontam_value"] >= 1 and by_id[x["id"]]["decontam_reason"] == "contaminated" for x in leaked)
    assert not any(by_id[x["id"]]["keep"] for x in leaked)

    # the domain classifier keeps the medical documents and drops the general ones
    med_kept = sum(by_id[x["id"]]["domain_keep"] for x in med)
    gen_kept = sum(by_id[x["id"]]["domain_keep"] for x in gen)
    assert med_kept >= 24 and gen_kept <= 6
    assert all(r["domain_reason"] == "domain:general" for r in rows if not r["domain_keep"])

    # DataRater on Ray gives exactly what the same model gives in this process
    local = RaterModel.load(models["datarater"].path).predict([x["text"] for x in med + gen])
    assert [round(by_id[x["id"]]["datarater_value"], 6) for x in med + gen] == [round(v, 6) for v in local]
    assert all(r["datarater_keep"] for r in rows)

    agg = run.aggregates["scorers"]
    assert agg["decontam"]["dropped"] == len(contaminated) and agg["domain"]["kept"] == med_kept + gen_kept
    assert sum(agg["datarater"]["histogram"]["counts"]) == 60
    assert list(Path(run.out_dir, "_decontam").glob("index-run*.pkl"))
