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
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

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


def _dialogues(n):
    return [{"id": r["id"], "turns": r["turns"], "lang": r["lang"], "source": r["source"]}
            for r in _jsonl("cmtmedqa_multiturn.jsonl", n)]


def test_dialogue_scorers_need_a_local_model(tmp_path, settings):
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    settings.MEDSTUDIO_SCORING_LM = str(tmp_path / "no-such-model")
    d = tmp_path / "dlg"
    d.mkdir()
    write_jsonl(d / "a.jsonl", _dialogues(3))
    c = corpus_register(actor=None, name="dlg", uri=str(d), turns_field="turns")
    assert "MEDSTUDIO_SCORING_LM" in _refused(corpus=c, scorers={"confilter": {}})
    assert "chat judge" in _refused(corpus=c, scorers={"deita": {"mode": "chat"}})
    assert not CorpusRun.objects.exists()


@pytest.mark.slow
def test_confilter_and_deita_on_a_dialogue_corpus_on_ray(tmp_path, on_ray, settings, tiny_llama_path, capsys):  # noqa: F811
    from curation.pipeline.base import RecordView
    from curation.pipeline.confilter import ConFilter
    from medstudio.inference.lm import load_causal_lm

    settings.MEDSTUDIO_SCORING_LM = tiny_llama_path
    settings.MEDSTUDIO_DEITA_COMPLEXITY_MODEL = tiny_llama_path
    settings.MEDSTUDIO_DEITA_QUALITY_MODEL = tiny_llama_path
    rows = _dialogues(6)
    d = tmp_path / "dlg"
    d.mkdir()
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows[:3]), d / "a.parquet")  # turns as a list of structs
    write_jsonl(d / "b.jsonl", rows[3:])
    call_command("corpus", "add", "dlg", str(d), "--turns-field", "turns")
    call_command("corpus", "run", "dlg", "--scorer", "confilter", "--scorer", "deita", "--scorer", "rules",
                 "--param", "confilter.max_length=2048", "--param", "deita.max_length=256", "--json")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "succeeded", out
    run = Corpus.objects.get(name="dlg").runs.first()
    assert run.scorers["confilter"]["model"] == tiny_llama_path
    got = {r["doc_id"]: r for p in sorted(Path(run.out_dir).glob("*.scores.parquet")) for r in pq.read_table(p).to_pylist()}
    assert len(got) == 6 and all(r["n_chars"] > 0 for r in got.values())
    # the same model in this process gives the same ConFilter values (within float noise)
    cf = ConFilter(load_causal_lm(tiny_llama_path, setting="MEDSTUDIO_SCORING_LM", backend="transformers"), max_length=2048)
    views = [RecordView(id=i, kind="dialogue", lang="zh", text="", content={"turns": r["turns"]}) for i, r in enumerate(rows)]
    local = cf.score_batch(views)
    multi = [i for i, res in enumerate(local) if res.value is not None]
    assert multi  # CMtMedQA dialogues have several exchanges
    for i, res in enumerate(local):
        v = got[rows[i]["id"]]["confilter_value"]
        assert (v is None) == (res.value is None) and (v is None or abs(v - res.value) < 1e-3)
    assert all(r["deita_value"] is not None and r["deita_value"] > 0 for r in got.values())
    assert sum(run.aggregates["scorers"]["deita"]["histogram"]["counts"]) == 6


def test_each_ray_worker_loads_the_models_once(tmp_path, ray_address):
    """The run's actors build the scorers (and load the DataRater) at their first shard and reuse
    them for the next ones: 6 shards on 2 workers come from at most 2 processes, each built once."""
    import ray

    from curation.pipeline.corpus.ray_job import run

    models = _models(tmp_path)
    d = tmp_path / "corpus"
    d.mkdir()
    med, gen = _med(24), _gen(24)
    for i in range(6):
        write_parquet(d / f"p{i}.parquet", med[i * 4:(i + 1) * 4] + gen[i * 4:(i + 1) * 4])
    spec = {"uri": str(d), "out_dir": str(tmp_path / "out"), "mapping": {}, "workers": 2,
            "scorers": {"datarater": {"model_path": models["datarater"].path}, "rules": {}}}
    ray.init(address="auto", log_to_driver=False)
    try:
        out = run(spec)
    finally:
        ray.shutdown()
    res = out["results"]
    assert [r["status"] for r in res] == ["done"] * 6 and sum(r["docs"] for r in res) == 48
    assert 1 <= len({r["worker"] for r in res}) <= 2
    assert all(r["blocks_built"] == 1 for r in res)
    local = RaterModel.load(models["datarater"].path).predict([x["text"] for x in med[:4] + gen[:4]])
    got = pq.read_table(tmp_path / "out" / "p0.parquet.scores.parquet").to_pydict()["datarater_value"]
    assert [round(v, 6) for v in got] == [round(v, 6) for v in local]
