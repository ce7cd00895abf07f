"""manage.py apply_recipe / export_selection / build_mixture."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from medstudio.handoffs.models import Mixture, Selection

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_commands_apply_export_and_mix(scored, tmp_path):
    qa, docs = scored
    cond = json.dumps({"bounds": [{"scorer": "t_rater", "min": 1.5}], "flags": ["t_rules"]})
    out = run("apply_recipe", "--recipe", "cli", "--dataset", "huatuo", "--conditions", cond, "--name", "cli-qa")
    sel_qa = Selection.objects.get(name="cli-qa")
    assert "Saved cli v1" in out and sel_qa.content_hash in out and sel_qa.status == "ready"
    run("apply_recipe", "--recipe", "cli-docs", "--dataset", "general", "--conditions", json.dumps({"flags": ["t_dedup"]}),
        "--name", "cli-docs")
    sel_docs = Selection.objects.get(name="cli-docs")

    out = run("export_selection", "--selection", str(sel_qa.pk), "--format", "llamafactory", "--out", str(tmp_path / "lf"))
    assert f"Wrote {sel_qa.n_records} records" in out
    assert (tmp_path / "lf" / "dataset_info.json").exists() and (tmp_path / "lf" / "provenance.json").exists()

    out = run("build_mixture", "--name", "cli-mix", "--stage", "custom", "--categories", "medical=3,general=1",
              "--langs", "zh=4,en=1", "--budget", "60000", "--strategy", "min_epochs",
              "--source", f"{sel_qa.pk}=medical", "--source", f"{sel_docs.pk}=general", "--shard-tokens", "20000")
    mix = Mixture.objects.get(name="cli-mix")
    assert mix.status == "succeeded" and "max_rel_error" in out
    assert len([f for f in mix.files if f.startswith("shard-")]) >= 3

    plan = run("build_mixture", "--name", "cli-plan", "--stage", "custom", "--categories", "medical=3,general=1",
               "--langs", "zh=4,en=1", "--budget", "600000", "--plan-only",
               "--source", f"{sel_qa.pk}=medical", "--source", f"{sel_docs.pk}=general")
    assert "epochs" in plan and Mixture.objects.get(name="cli-plan").files == []
    # Stable CPT wants 90% English, but all medical text here is Chinese: no plan, a clear reason
    with pytest.raises(CommandError, match="cannot meet both ratios"):
        run("build_mixture", "--name", "cli-stable", "--stage", "stable", "--budget", "60000",
            "--source", f"{sel_qa.pk}=medical", "--source", f"{sel_docs.pk}=general")


def test_command_errors_are_clear(scored):
    with pytest.raises(CommandError, match="No recipe"):
        run("apply_recipe", "--recipe", "nope")
    with pytest.raises(CommandError, match="above maximum"):
        run("apply_recipe", "--recipe", "bad", "--dataset", "huatuo", "--conditions",
            json.dumps({"bounds": [{"scorer": "t_rater", "min": 3, "max": 1}]}))
    with pytest.raises(CommandError, match="No selection"):
        run("export_selection", "--selection", "999999")
    with pytest.raises(CommandError, match="no ready selection named '999999'"):
        run("build_mixture", "--name", "m", "--budget", "10", "--source", "999999=medical")
    with pytest.raises(CommandError, match="no ready selection named 'nope'"):
        run("build_mixture", "--name", "m", "--budget", "10", "--source", "nope=medical")
