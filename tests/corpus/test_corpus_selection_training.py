"""A frozen corpus selection is a training data source: `corpus freeze` registers it through the
platform hand-off, and a CPT run on a tiny Llama reads exactly its kept documents, shard by shard,
from the corpus's own files (offline, no Ray needed: the score files come from the real scorer)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from curation.corpus.models import CorpusRun
from curation.corpus.services import corpus_register
from curation.pipeline.corpus.score import score_shard
from curation.pipeline.corpus.shards import filesystem
from medstudio.handoffs import sources
from medstudio.handoffs.models import CorpusSelection
from tests.corpus.conftest import docs, write_jsonl, write_parquet
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

pytestmark = pytest.mark.django_db


def _scored_corpus(tmp_path, scorers=None):
    scorers = scorers or {"rules": {}}
    d = tmp_path / "corpus"
    d.mkdir()
    write_parquet(d / "a.parquet", docs(30, 0))
    write_jsonl(d / "b.jsonl.gz", docs(30, 30), "gz")
    c = corpus_register(actor=None, name="med", uri=str(d))
    out = tmp_path / "scores" / "med" / "rules-x"
    out.mkdir(parents=True)
    fs, _ = filesystem(str(d))
    for s in c.shards.all():
        res = score_shard(fs=fs, path=s.path, fmt=s.fmt, key=s.key, out_dir=str(out), mapping=c.mapping,
                          scorers=scorers)
        assert res["status"] == "done"
    CorpusRun.objects.create(corpus=c, scorers=scorers, out_dir=str(out))
    return c, d, out


def _kept(out, cond):
    import pyarrow.parquet as pq

    rows = [r for p in sorted(Path(out).glob("*.scores.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["doc_id"] for r in rows if cond(r)}, len(rows)


def test_freeze_registers_a_selection_that_exports_exactly_the_kept_documents(tmp_path, capsys):
    c, d, out = _scored_corpus(tmp_path)
    call_command("corpus", "freeze", "med", "--where", "rules_keep == true", "--where", "n_chars > 200",
                 "--as", "med-v1", "--json")
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want, total = _kept(out, lambda r: r["rules_keep"] and r["n_chars"] > 200)
    assert 0 < len(want) < total and res["kept"] == len(want) and res["docs"] == total == 60
    sel = CorpusSelection.objects.get(name="med-v1")
    assert sel.n_records == len(want) and sel.corpus == "med" and len(sel.manifest_sha256) == 64
    ref = sources.resolve("corpus_selection:med-v1")
    assert sources.describe(ref)["kind"] == "document"
    assert any(o["ref"] == f"corpus_selection:{sel.pk}" for o in sources.choices_for(["document"]))

    info = sources.export(ref, tmp_path / "data.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert info["n_records"] == len(lines) == len(want) and {x["id"] for x in lines} == want
    assert all(x["kind"] == "document" and x["content"]["text"] for x in lines)
    assert [x["id"] for x in lines[:3]] == [r["id"] for r in docs(30, 0) if r["id"] in want][:3]  # shard order
    assert set(info["by_lang"]) == {"en", "zh"}

    # the shard changed after the freeze: the export refuses and names the shard, leaving no file
    write_parquet(d / "a.parquet", docs(30, 0)[:5])
    with pytest.raises(sources.DataSourceError, match="a.parquet.*changed since the freeze"):
        sources.export(ref, tmp_path / "data2.jsonl")
    assert not (tmp_path / "data2.jsonl").exists() and not (tmp_path / "data2.part").exists()


def test_bad_freeze_requests_are_refused(tmp_path):
    from django.core.management.base import CommandError

    _scored_corpus(tmp_path)
    with pytest.raises(CommandError, match="unknown column"):
        call_command("corpus", "freeze", "med", "--where", "nope >= 1", "--as", "x")
    with pytest.raises(CommandError, match="name the selection"):
        call_command("corpus", "freeze", "med", "--where", "rules_keep == true", "--as", "../escape")
    assert not CorpusSelection.objects.exists()


@pytest.mark.slow
def test_cpt_trains_on_a_frozen_corpus_selection(tmp_path, settings, admin_user, tiny_llama_path, capsys):  # noqa: F811
    from training import services
    from training.models import RunStatus
    from training.pipeline.specs import default_spec

    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    _scored_corpus(tmp_path)
    call_command("corpus", "freeze", "med", "--where", "rules_keep == true", "--as", "med-cpt", "--json")
    kept = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kept"]
    base = services.model_ref_create(actor=None, name="tiny", path=tiny_llama_path)
    spec = default_spec("cpt-stable", base.path, max_steps=3, learning_rate=1e-3, max_length=64,
                        per_device_batch_size=2, global_batch_size=2, logging_steps=1, save_total_limit=1)
    run = services.training_run_start(actor=admin_user, spec=spec, base_model=base,
                                      data_ref=sources.resolve("corpus_selection:med-cpt"))
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error, run.log_tail)
    assert run.step == 3 and run.data_ref["type"] == "corpus_selection" and run.data_ref["n_records"] == kept
    assert run.data_ref["manifest_sha256"] and run.checkpoints.filter(is_final=True).exists()
    from medstudio.handoffs.lineage import graph

    g = graph(f"run:{run.pk}")
    node = next(n for n in g["nodes"] if n["id"] == f"corpus_selection:{run.data_ref['id']}")
    assert node["name"] == "med-cpt (med)" and not node.get("missing") and "/studio/" in node["url"]


def test_cpt_reads_its_data_file_into_an_on_disk_dataset(tmp_path):
    """CPT's examples are written to Arrow files under the run directory as the data file is read
    (memory-mapped by the trainer, not a list in memory), in file order; documents, not SFT rows."""
    from training.pipeline.specs import TrainingSpec
    from training.pipeline.train import build_examples, read_records, train_dataset

    rows = [{"kind": "document", "content": {"text": d["text"]}} for d in docs(40)]
    rows.insert(5, {"kind": "qa", "content": {"question": "What lowers blood pressure?", "answer": "Less salt."}})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    spec = TrainingSpec(stage="cpt-stable", base_model="-", data_path=str(data))
    ds = train_dataset(spec, tmp_path / "run")
    assert ds["text"] == [e["text"] for e in build_examples(spec, read_records(str(data)))]
    assert len(ds) == 41 and ds.cache_files
    assert all(Path(f["filename"]).is_relative_to(tmp_path / "run") for f in ds.cache_files)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no usable cpt-stable examples"):
        train_dataset(TrainingSpec(stage="cpt-stable", base_model="-", data_path=str(empty)), tmp_path / "run2")
