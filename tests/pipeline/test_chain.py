"""The chain the product exists for, from the command line on public data and a tiny local Llama:

rules scores -> recipe -> selections -> Stable-CPT mixture -> CPT-stable -> Boost mixture ->
CPT-boost -> SFT on a selection -> objective preference set -> DPO with online merging, each
stage loading the previous checkpoint; then the DPO model's lineage reaches back to the sources.
"""
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.training.toydata import _rows
from training.models import ModelRef, TrainingRun

pytestmark = pytest.mark.slow

TINY = ["max_length=96", "per_device_batch_size=4", "global_batch_size=4", "logging_steps=1", "save_total_limit=1",
        "learning_rate=2e-3"]


@pytest.fixture(autouse=True)
def _runs_dir(settings, tmp_path):
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    settings.MEDIA_ROOT = tmp_path / "media"


def _cmd(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _documents():
    """Medical documents in both languages (PubMedQA long answers, Huatuo answers) and general text."""
    med = [{"id": f"pm{i}", "lang": "en", "source": "pubmedqa", "text": r["explanation"]}
           for i, r in enumerate(_rows("pubmedqa.jsonl", 80)) if r.get("explanation")]
    med += [{"id": f"hu{i}", "lang": "zh", "source": "huatuo", "text": r["answer"]}
            for i, r in enumerate(_rows("huatuo26m_test_qa.jsonl", 80)) if len(r["answer"]) > 20]
    gen = [{"id": r["id"], "lang": r["lang"], "source": r["source"], "text": r["text"][:400]} for r in _rows("general_en.jsonl", 40)]
    gen += [{"id": r["id"], "lang": r["lang"], "source": r["source"], "text": r["text"][:300]} for r in _rows("general_zh.jsonl", 40)]
    return med, gen


def _select(recipe, dataset, name):
    out = _cmd("apply_recipe", "--recipe", recipe, "--dataset", dataset, "--name", name,
               "--conditions", json.dumps({"bounds": [], "flags": ["rules"]}))
    assert f"{name}:" in out, out


def _train(stage, base, data, *sets, merge_base=""):
    args = ["train", "--stage", stage, "--base", str(base), "--data", data, "--name", f"{stage} on {data}"]
    if merge_base:
        args += ["--merge-base", merge_base]
    for s in (*TINY, *sets):
        args += ["--set", s]
    out = _cmd(*args)
    name = out.strip().splitlines()[-1].removeprefix("model: ")
    assert out.strip().splitlines()[-1].startswith("model: ")
    model = ModelRef.objects.get(name=name)
    assert model.run.status == "succeeded"
    return model


def test_cli_chain_on_curated_data(tiny_llama_path, make_dataset, client_for):  # noqa: F811
    med, gen = _documents()
    make_dataset("med-docs", "document", med)
    make_dataset("general-docs", "document", gen)
    # SFT data in both languages, so the boost mixture can meet zh:en 4:6 in each category.
    qa = [{"id": r["id"], "question": r["question"][:80], "answer": r["answer"][:80]} for r in _rows("zh_med_qa_toyhom.jsonl", 40)]
    qa += [{"id": r["id"], "lang": "en", "question": r["question"][:200], "answer": r["explanation"][:200]}
           for r in _rows("pubmedqa.jsonl", 130)[80:] if r.get("explanation")]
    make_dataset("qa", "qa", qa)
    make_dataset("exam", "mcq", _rows("cmmlu_med.jsonl", 24))
    for ds in ("med-docs", "general-docs", "qa"):
        _cmd("score", "--dataset", ds, "--scorer", "rules")
    _select("clean-medical", "med-docs", "medical-clean")
    _select("clean-general", "general-docs", "general-clean")
    _select("clean-qa", "qa", "qa-clean")

    out = _cmd("build_mixture", "--name", "stable-mix", "--stage", "stable", "--budget", "6000", "--shard-tokens", "2000",
               "--source", "medical-clean=medical", "--source", "general-clean=general")
    out += _cmd("build_mixture", "--name", "boost-mix", "--stage", "boost", "--budget", "4000",
                "--source", "medical-clean=medical", "--source", "qa-clean=sft")

    stable = _train("cpt-stable", tiny_llama_path, "mixture:stable-mix", "max_steps=3")
    # The run trained on the mixture's drawn plan: achieved token shares match the plan's targets.
    achieved = stable.run.data_ref["achieved"]
    targets = stable.run.data_ref["targets"]
    total_c = sum(targets["categories"].values())
    for cat, w in targets["categories"].items():
        assert abs(achieved["categories"].get(cat, 0) - w / total_c) < 0.01, (cat, achieved)
    total_l = sum(targets["langs"].values())
    for lang, w in targets["langs"].items():
        assert abs(achieved["langs"].get(lang, 0) - w / total_l) < 0.01, (lang, achieved)

    boost = _train("cpt-boost", stable.name, "mixture:boost-mix", "max_steps=3")
    sft = _train("sft", boost.name, "selection:qa-clean", "max_steps=3")
    assert sft.run.data_ref["content_hash"] and sft.run.data_ref["n_records"] > 0

    out = _cmd("preferences", "build", "--builder", "objective", "--dataset", "exam", "--set", "exam-pairs")
    assert re.search(r"set: exam-pairs \(\d+ pairs\)", out), out
    dpo = _train("dpo", sft.name, "preference_set:exam-pairs", "max_steps=3", "max_length=160",
                 "merging.enabled=true", "merging.p=0.5", "merging.alpha=0.001", merge_base=boost.name)
    assert dpo.run.data_ref["by_origin"] == {"objective": dpo.run.data_ref["n_records"]}
    assert [m.stage for m in dpo.lineage()] == ["dpo", "sft", "cpt-boost", "cpt-stable", ""]

    g = json.loads(_cmd("lineage", dpo.name, "--format", "json"))
    types = [n["type"] for n in g["nodes"]]
    for t in ("preference_set", "mixture", "selection", "recipe_version", "scorer_run", "dataset"):
        assert t in types, (t, types)
    assert types.count("run") == 4
    ids = {n["id"] for n in g["nodes"]}
    assert all(a in ids and b in ids for a, b in g["edges"])
    names = {(n["type"], n["name"]) for n in g["nodes"]}
    assert {("mixture", "stable-mix"), ("mixture", "boost-mix"), ("selection", "qa-clean"),
            ("preference_set", "exam-pairs"), ("dataset", "exam")} <= names
    assert TrainingRun.objects.filter(status="succeeded").count() == 4

    # The model page draws the same graph, every node a link.
    page = client_for("curator").get(f"/training/models/{dpo.pk}/").content.decode()
    assert page.count('class="lineage-node"') == len(g["nodes"])

    # The pipeline board follows this line of descent and offers each next step pre-filled.
    html = client_for("curator").get("/pipeline/").content.decode()
    for step in ("score", "select", "mix", "cpt-stable", "cpt-boost", "sft", "pairs", "dpo"):
        block = html.split(f'data-step="{step}"')[1].split("</li>")[0]
        assert 'class="artefact"' in block, step
    dpo_block = html.split('data-step="dpo"')[1].split("</li>")[0]
    assert f"?model_ref={dpo.pk}" in dpo_block  # next: evaluate this model
    pairs_block = html.split('data-step="pairs"')[1].split("</li>")[0]  # next: DPO from the SFT model on this set
    assert f"base={sft.pk}" in pairs_block and f"merge_base={boost.pk}" in pairs_block
    assert f"data=preference_set:{dpo.run.data_ref['id']}" in pairs_block
    mix_block = html.split('data-step="mix"')[1].split("</li>")[0]
    assert "stage=cpt-stable" in mix_block and "data=mixture:" in mix_block
    r = client_for("clinician").get("/pipeline/")
    assert r.status_code == 302 and r["Location"].endswith("/annotate/")
