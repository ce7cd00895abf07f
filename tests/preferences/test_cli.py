"""`manage.py preferences ...`: builds, votes and lists through the same services and jobs as the UI."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from medstudio.handoffs.models import PreferenceSet, Selection, SelectionRecord
from preferences.models import BuildRun, PreferencePair, RunStatus, VoteRun
from preferences.pipeline.judge import ASPECTS
from tests.fakes.openai_server import Status, fake_openai_server


@pytest.fixture
def pref_settings(db, settings, tmp_path):
    settings.MEDSTUDIO_PREF_OUTAGE_RETRY_WAIT = 0
    settings.MEDSTUDIO_PREF_CHAT_MAX_RETRIES = 0
    settings.MEDSTUDIO_PREF_BATCH_SIZE = 4
    settings.MEDSTUDIO_PREF_MAX_WORKERS = 2
    settings.MEDSTUDIO_PREF_DIR = tmp_path / "prefs"
    settings.MEDSTUDIO_CHAT_URL = ""
    return settings


def cli(*args) -> str:
    out = StringIO()
    call_command("preferences", *args, stdout=out)
    return out.getvalue()


def load(shared_data, name, limit):
    rows = []
    with open(shared_data / name, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


@pytest.fixture
def exam(make_dataset, shared_data, db):
    rows = load(shared_data, "cmmlu_med.jsonl", 60)
    return make_dataset("cmmlu-exam", "mcq", rows), rows


def test_objective_build_from_a_dataset_name_creates_the_set_and_prints_a_summary(exam, pref_settings):
    ds, rows = exam
    out = cli("build", "--builder", "objective", "--dataset", "cmmlu-exam", "--set", "exam-pairs", "--seed", "3")
    s = PreferenceSet.objects.get(name="exam-pairs")
    pairs = list(PreferencePair.objects.filter(pref_set=s).select_related("record"))
    assert len(pairs) == len(rows) and {p.origin for p in pairs} == {"objective"}
    by_id = {r["id"]: r for r in rows}
    for p in pairs:
        src = by_id[p.record.external_id]
        assert p.chosen.startswith(f"答案：{src['answer']}. {src['options'][src['answer']]}")
        assert p.provenance["rejected_option"] != src["answer"] and p.provenance["seed"] == 3
    run = BuildRun.objects.get(pref_set=s)
    assert run.status == RunStatus.DONE and run.dataset == ds and run.params["seed"] == 3
    assert f"{len(rows)} pair(s) built, 0 tie(s) kept apart, 0 failed" in out
    assert f"set by origin: objective {len(rows)}" in out
    assert out.strip().splitlines()[-1] == f"set: exam-pairs ({len(rows)} pairs)"

    # build_start is not idempotent (each run is its own run; pairs are unique per run): a second
    # build adds a second copy and the command says so.
    out = cli("build", "--builder", "objective", "--dataset", "cmmlu-exam", "--set", "exam-pairs", "--seed", "3")
    assert BuildRun.objects.filter(pref_set=s).count() == 2
    assert PreferencePair.objects.filter(pref_set=s).count() == 2 * len(rows)
    assert f"note: runs #{run.pk} already built objective pairs" in out
    assert out.strip().splitlines()[-1] == f"set: exam-pairs ({2 * len(rows)} pairs)"

    listing = cli("list")
    assert f"exam-pairs\t{2 * len(rows)} pairs\t0 ties\tobjective {2 * len(rows)}" in listing


def test_unknown_dataset_name_is_refused_with_the_name(exam, pref_settings):
    with pytest.raises(CommandError, match=r"No dataset named 'cmmlu-exm'.*did you mean 'cmmlu-exam'.*--dataset"):
        cli("build", "--builder", "objective", "--dataset", "cmmlu-exm", "--set", "exam-pairs")
    assert not PreferenceSet.objects.exists()


def test_wrong_kind_dataset_is_refused_and_leaves_no_empty_set(make_dataset, shared_data, pref_settings):
    make_dataset("wiki", "document", load(shared_data, "general_en.jsonl", 3))
    with pytest.raises(CommandError, match="objective builder needs a mcq dataset; wiki holds document records"):
        cli("build", "--builder", "objective", "--dataset", "wiki", "--set", "exam-pairs")
    assert not PreferenceSet.objects.filter(name="exam-pairs").exists() and not BuildRun.objects.exists()


def test_options_the_builder_does_not_read_and_missing_backends_are_refused(exam, pref_settings, tmp_path):
    with pytest.raises(CommandError, match="--judges is not used by the objective builder"):
        cli("build", "--builder", "objective", "--dataset", "cmmlu-exam", "--set", "x", "--judges", "a,b")
    with pytest.raises(CommandError, match="--min-gap is not used by the sampled builder"):
        cli("build", "--builder", "sampled", "--dataset", "cmmlu-exam", "--set", "x", "--min-gap", "2")
    with pytest.raises(CommandError, match="Only the from-scores builder reads a file"):
        f = tmp_path / "x.jsonl"
        f.write_text("{}\n")
        cli("build", "--builder", "objective", "--file", str(f), "--set", "x")
    with pytest.raises(CommandError, match="--backend: No enabled model backend named nope"):
        cli("build", "--builder", "subjective", "--dataset", "cmmlu-exam", "--set", "x", "--backend", "nope")
    with pytest.raises(CommandError, match="--n: "):
        cli("build", "--builder", "sampled", "--dataset", "cmmlu-exam", "--set", "x", "--n", "1", "--judges", "j")
    with pytest.raises(CommandError, match="No such file"):
        cli("build", "--builder", "from_scores", "--file", str(tmp_path / "missing.jsonl"), "--set", "x")
    assert not PreferenceSet.objects.exists()


def test_qa_dataset_for_a_chat_builder_without_a_server_names_the_setting(make_dataset, pref_settings):
    make_dataset("qa", "qa", [{"id": "1", "question": "头痛怎么办？", "answer": "休息"}])
    with pytest.raises(CommandError, match="MEDSTUDIO_CHAT_URL"):
        cli("build", "--builder", "subjective", "--dataset", "qa", "--set", "x")


def test_selection_source_by_name_or_id(exam, pref_settings):
    ds, rows = exam
    recs = list(ds.records.order_by("id")[:10])
    a = Selection.objects.create(name="hard", status="ready")
    a.datasets.add(ds)
    SelectionRecord.objects.bulk_create([SelectionRecord(selection=a, record=r) for r in recs])
    out = cli("build", "--builder", "objective", "--selection", "hard", "--set", "sel-pairs")
    assert out.strip().splitlines()[-1] == "set: sel-pairs (10 pairs)"
    assert BuildRun.objects.get(pref_set__name="sel-pairs").selection == a

    b = Selection.objects.create(name="hard", status="ready")
    b.datasets.add(ds)
    SelectionRecord.objects.bulk_create([SelectionRecord(selection=b, record=r) for r in recs[:4]])
    with pytest.raises(CommandError, match=rf"2 ready selections are named 'hard'.*--selection '#ID' \(#{a.pk}, #{b.pk}\)"):
        cli("build", "--builder", "objective", "--selection", "hard", "--set", "sel-pairs")
    out = cli("build", "--builder", "objective", "--selection", f"#{b.pk}", "--set", "sel-pairs")
    assert out.strip().splitlines()[-1] == "set: sel-pairs (14 pairs)"

    Selection.objects.create(name="unfinished", status="building")
    with pytest.raises(CommandError, match="is building, not ready"):
        cli("build", "--builder", "objective", "--selection", "unfinished", "--set", "sel-pairs")
    with pytest.raises(CommandError, match="No selection named 'nope'"):
        cli("build", "--builder", "objective", "--selection", "nope", "--set", "sel-pairs")


def test_from_scores_file(shared_data, pref_settings):
    out = cli("build", "--builder", "from_scores", "--file", str(shared_data / "disc_eval_scored_dialogues.jsonl"),
              "--set", "disc", "--min-gap", "1.5")
    run = BuildRun.objects.get(pref_set__name="disc")
    assert run.status == RunStatus.DONE and run.params == {"seed": 0, "min_gap": 1.5, "mode": "best_worst"}
    assert run.n_pairs > 0 and run.n_failed > 0 and "failed item" in out
    assert out.strip().splitlines()[-1] == f"set: disc ({run.n_pairs} pairs)"


def scores(v):
    return json.dumps({a: v for a in ASPECTS})


def test_subjective_build_stops_on_an_outage_then_resumes(make_dataset, pref_settings):
    make_dataset("qa", "qa", [{"id": f"q{i}", "lang": "zh", "question": f"问题{i}：头痛怎么办？", "answer": f"原回答{i}"}
                              for i in range(6)])
    state = {"down": True}

    def chat(req):
        if state["down"]:
            return Status(503)
        system = req["messages"][0]["content"]
        if "乐于助人的医生" in system or "helpful doctor" in system:
            return "医生建议：多休息，必要时就医。"
        return scores(5 if "医生建议" in req["messages"][-1]["content"] else 2)

    with fake_openai_server(chat=chat) as url:
        with pytest.raises(CommandError, match=r"(?s)run \d+ paused: .*unavailable.*preferences resume --run"):
            cli("build", "--builder", "subjective", "--dataset", "qa", "--set", "subj", "--base-url", url,
                "--generator", "gen", "--judge", "judge")
        run = BuildRun.objects.get(pref_set__name="subj")
        assert run.status == RunStatus.PAUSED and run.params["generator"] == "gen" and run.params["both_orders"] is False
        state["down"] = False
        out = cli("resume", "--run", str(run.pk))
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs == 6
    assert "usage:" in out and out.strip().splitlines()[-1] == "set: subj (6 pairs)"
    assert all(p.chosen.startswith("医生建议") for p in PreferencePair.objects.filter(run=run))
    with pytest.raises(CommandError, match="Only a stopped run can be resumed"):
        cli("resume", "--run", str(run.pk))


def test_judge_vote_then_new_fractions_then_list(pref_settings):
    s = PreferenceSet.objects.create(name="vote")
    for i in range(20):
        good, bad = f"GOOD answer {i}", f"bad answer {i}"
        chosen, rejected = (bad, good) if i in (4, 13) else (good, bad)
        PreferencePair.objects.create(pref_set=s, origin="sampled", item_key=i, chosen=chosen, rejected=rejected,
                                      prompt_turns=[{"role": "user", "content": f"q{i}"}])

    def judge(req):
        a = req["messages"][-1]["content"].split("Answer to rate:\n", 1)[1]
        return scores(5 if "GOOD" in a else 1)

    with pytest.raises(CommandError, match="--k is not used by the judges voting method"):
        cli("vote", "--set", "vote", "--method", "judges", "--k", "3")
    with pytest.raises(CommandError, match="No preference set named 'vot'.*did you mean 'vote'"):
        cli("vote", "--set", "vot", "--method", "judges", "--judges", "j1")
    with fake_openai_server(chat=judge) as url:
        out = cli("vote", "--set", "vote", "--method", "judges", "--judges", "j1,j2", "--base-url", url)
    v = VoteRun.objects.get(pref_set=s)
    assert v.status == RunStatus.DONE and v.summary["counts"]["flip"] == 2 and v.flip_frac == 0.1
    assert "20 pair(s) scored by 2 voter(s); keep 16, flip 2, drop 2, unscored 0" in out
    assert out.strip().splitlines()[-1] == "set: vote (20 pairs)"
    out = cli("apply", "--set", "vote", "--flip-frac", "0", "--drop-frac", "0.25")
    assert "keep 15, flip 0, drop 5" in out
    with pytest.raises(CommandError, match="sum to at most 1"):
        cli("apply", "--set", "vote", "--flip-frac", "0.8", "--drop-frac", "0.5")
    assert "vote\t20 pairs\t0 ties\tsampled 20" in cli("list")
