"""Preference jobs through the real job framework (eager), the fake OpenAI server and the database."""
from __future__ import annotations

import json
import threading

import pytest

from medstudio.jobs.models import Job
from preferences import selectors, services
from preferences.models import BuildFailure, BuildRun, PreferencePair, RunStatus
from preferences.pipeline.judge import ASPECTS
from tests.fakes.openai_server import Malformed, Status, fake_openai_server
from tests.charts import chart_options


@pytest.fixture
def pref_settings(settings, tmp_path):
    settings.MEDSTUDIO_PREF_OUTAGE_RETRY_WAIT = 0
    settings.MEDSTUDIO_PREF_CHAT_MAX_RETRIES = 1
    settings.MEDSTUDIO_PREF_BATCH_SIZE = 4
    settings.MEDSTUDIO_PREF_MAX_WORKERS = 2
    settings.MEDSTUDIO_PREF_DIR = tmp_path / "prefs"
    settings.MEDSTUDIO_PREF_PRICES = {"*": [1000.0, 2000.0]}  # USD per 1M tokens, so the cost is visible
    return settings


def scores(v):
    return json.dumps({a: v for a in ASPECTS})


def load(shared_data, name, limit=None):
    rows = []
    with open(shared_data / name, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


def test_objective_job_on_cmmlu_picks_the_right_option_every_time(curator, make_dataset, shared_data, pref_settings):
    rows = load(shared_data, "cmmlu_med.jsonl", limit=400)
    ds = make_dataset("cmmlu", "mcq", rows)
    s = services.preference_set_create(user=curator, name="obj")
    run = services.build_start(user=curator, pref_set=s, builder="objective", dataset=ds, params={"seed": 3})
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs == len(rows) and run.n_failed == 0
    by_id = {r["id"]: r for r in rows}
    for p in PreferencePair.objects.filter(pref_set=s).select_related("record"):
        src = by_id[p.record.external_id]
        assert p.chosen.startswith(f"答案：{src['answer']}. {src['options'][src['answer']]}")
        wrong = p.provenance["rejected_option"]
        assert wrong != src["answer"] and p.rejected == f"答案：{wrong}. {src['options'][wrong]}"
        assert p.provenance["seed"] == 3


def test_from_scores_job_reads_the_disc_file_and_reports_unscored_cases(curator, shared_data, pref_settings):
    s = services.preference_set_create(user=curator, name="disc")
    run = services.build_start(user=curator, pref_set=s, builder="from_scores",
                               path=str(shared_data / "disc_eval_scored_dialogues.jsonl"), params={"min_gap": 1.5})
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs > 0 and run.n_done == 267
    reasons = list(BuildFailure.objects.filter(run=run).values_list("reason", flat=True))
    assert any("fewer than two scored answers" in r for r in reasons)  # case 0-33275, gpt4_scores {}
    assert all("gap below" in r or "scored answers" in r for r in reasons)
    for p in PreferencePair.objects.filter(run=run):
        assert p.chosen_score - p.rejected_score >= 1.5 and p.provenance["chosen_model"] != p.provenance["rejected_model"]


def test_bad_input_is_refused_with_a_reason(curator, make_dataset, pref_settings):
    ds = make_dataset("qa1", "qa", [{"id": "1", "question": "q", "answer": "a"}])
    s = services.preference_set_create(user=curator, name="bad")
    with pytest.raises(services.PreferenceError, match="needs a mcq dataset"):
        services.build_start(user=curator, pref_set=s, builder="objective", dataset=ds)
    with pytest.raises(services.PreferenceError, match="MEDSTUDIO_CHAT_URL"):
        services.build_start(user=curator, pref_set=s, builder="subjective", dataset=ds)
    with pytest.raises(services.PreferenceError, match="already exists"):
        services.preference_set_create(user=curator, name="bad")
    assert BuildRun.objects.count() == 0


class Scripted:
    """Generator + judge behind one fake server; `down` simulates a judge outage."""

    def __init__(self, down_after: int | None = None):
        self.down_after = down_after  # judge calls served before the outage starts
        self.lock = threading.Lock()
        self.judge_calls = 0

    def __call__(self, req):
        system = req["messages"][0]["content"]
        if "乐于助人的医生" in system or "helpful doctor" in system:
            return "医生建议：多休息，必要时就医。"
        with self.lock:
            self.judge_calls += 1
            down = self.down_after is not None and self.judge_calls > self.down_after
        if down:
            return Status(503)
        answer = req["messages"][-1]["content"]
        if "MALFORMED" in answer:
            return Malformed()
        if "NOJSON" in answer:
            return "This answer is fine."
        return scores(5 if "医生建议" in answer else 2)


def qa_rows(n):
    rows = [{"id": f"q{i}", "lang": "zh", "question": f"问题{i}：头痛怎么办？", "answer": f"原回答{i}"} for i in range(n)]
    rows[2]["answer"] = "NOJSON 原回答"
    return rows


def test_subjective_job_judge_outage_keeps_finished_pairs_and_resumes(curator, make_dataset, pref_settings):
    ds = make_dataset("qa", "qa", qa_rows(12))
    s = services.preference_set_create(user=curator, name="subj")
    # The judge goes down after the first batch (4 items: 3 x 2 judge calls + 2 calls for the
    # item whose judge reply has no JSON): the job stops, keeping every pair stored so far.
    script = Scripted(down_after=9)
    with fake_openai_server(chat=script) as url:
        pref_settings.MEDSTUDIO_CHAT_URL = url
        run = services.build_start(user=curator, pref_set=s, builder="subjective", dataset=ds)
        run.refresh_from_db()
        job = Job.objects.get(pk=run.job_id)
        assert job.status == "failed" and "unavailable" in job.error
        assert run.status == RunStatus.PAUSED and "resume" in run.error
        kept = list(PreferencePair.objects.filter(run=run).values_list("item_key", "chosen"))
        assert run.n_done == 4 and len(kept) + run.n_failed == 4
        assert all(c.startswith("医生建议") for _, c in kept)
        assert BuildFailure.objects.get(run=run).reason.startswith("malformed judge reply")
        assert run.usage["calls"] > 0 and run.cost_usd > 0
        first_usage = run.usage["prompt_tokens"]

        # Back up: resume continues after the last stored item; nothing is redone or lost.
        script.down_after = None
        services.build_resume(user=curator, run=run)
        run.refresh_from_db()
        assert run.status == RunStatus.DONE and run.n_done == 12
        assert PreferencePair.objects.filter(run=run).count() == 11 and run.n_failed == 1
        keys = list(PreferencePair.objects.filter(run=run).values_list("item_key", flat=True))
        assert len(keys) == len(set(keys))
        assert run.usage["prompt_tokens"] > first_usage
        p = PreferencePair.objects.filter(run=run).first()
        assert p.provenance["judge"]["calls"][0]["reply"] and p.provenance["generator"]["messages"]


def test_judge_voting_job_and_editable_fractions(curator, client_for, pref_settings):
    s = services.preference_set_create(user=curator, name="vote")
    from preferences.models import PreferencePair as PP

    # 20 pairs; the 2 planted ones have their better answer stored as rejected.
    for i in range(20):
        good, bad = f"GOOD answer {i}", f"bad answer {i}"
        chosen, rejected = (bad, good) if i in (4, 13) else (good, bad)
        PP.objects.create(pref_set=s, origin="sampled", item_key=i, prompt_turns=[{"role": "user", "content": f"q{i}"}],
                          chosen=chosen, rejected=rejected)

    def judge(req):
        a = req["messages"][-1]["content"].split("Answer to rate:\n", 1)[1]
        return scores(5 if "GOOD" in a else 1) if req["model"] != "j3" else scores(3)

    with fake_openai_server(chat=judge) as url:
        v = services.vote_start(user=curator, pref_set=s, method="judges", params={"judges": ["j1", "j2", "j3"], "base_url": url},
                                flip_frac=0.1, drop_frac=0.1)
    v.refresh_from_db()
    assert v.status == RunStatus.DONE and v.summary["counts"]["flip"] == 2
    flipped = set(PP.objects.filter(pref_set=s, action="flip").values_list("item_key", flat=True))
    assert flipped == {4, 13}
    p = PP.objects.get(pref_set=s, item_key=0)
    assert p.strength == pytest.approx((4 + 4 + 0) / 3) and p.vote_detail["chosen"] == [5.0, 5.0, 3.0]
    assert v.usage["calls"] == 20 * 3 * 2
    page = client_for("curator").get(f"/preferences/{s.pk}/").content.decode()
    plot = chart_options(page)["Preference strength histogram"]
    assert 'id="strength-plot"' in page and [n for _, n in plot["series"][0]["data"]] == v.summary["histogram"]["counts"]
    flip_cut = max(PP.objects.filter(pref_set=s, action="flip").values_list("strength", flat=True))
    assert flip_cut in [m["xAxis"] for m in plot["series"][0]["markLine"]["data"]]
    # Editing the fractions through the page re-applies them without re-voting.
    r = client_for("curator").post(f"/preferences/votes/{v.pk}/apply/", {"flip_frac": "0", "drop_frac": "0.25"})
    assert r.status_code == 302
    v.refresh_from_db()
    assert v.summary["counts"] == {"keep": 15, "flip": 0, "drop": 5, "unscored": 0}
    assert not PP.objects.filter(pref_set=s, action="flip").exists()
    with pytest.raises(services.PreferenceError):
        services.vote_apply(user=curator, vote=v, flip_frac=0.8, drop_frac=0.5)


def test_review_verdicts_override_judges_in_export(curator, clinician, pref_settings, tmp_path):
    from medstudio.annotation import services as ann
    from medstudio.annotation.models import Assignment
    from medstudio.annotation.questions import canonical_to_shown
    from preferences.models import PreferenceExport
    from preferences.models import PreferencePair as PP

    s = services.preference_set_create(user=curator, name="rev")
    for i in range(6):
        PP.objects.create(pref_set=s, origin="subjective" if i < 4 else "objective", item_key=i,
                          prompt_turns=[{"role": "user", "content": f"头痛{i}怎么办？"}], chosen=f"好回答{i}", rejected=f"差回答{i}")
    review = services.review_send(user=curator, pref_set=s, seed=1)
    assert review.n_pairs == 6 and review.queue.question.kind == "preference"
    # The clinician labels through the annotation engine: disagrees on pair 0, tie on pair 1, agrees otherwise.
    wanted = {0: "rejected", 1: "tie"}
    orders = set()
    while (a := ann.assignment_next(queue=review.queue, user=clinician)) is not None:
        pair = PP.objects.get(pk=int(a.item.record.external_id[5:]))
        canonical = wanted.get(pair.item_key, "chosen")
        orders.add(a.swapped)
        ann.label_submit(assignment_id=a.pk, user=clinician, answer={"winner": canonical_to_shown(canonical, a.swapped)},
                         revision=a.revision)
    assert Assignment.objects.filter(queue=review.queue, status="done").count() == 6
    out = services.review_sync(user=curator, review=review)
    assert out["verdicts"] == 6
    assert PP.objects.get(pref_set=s, item_key=0).verdict == "rejected"
    agreement = {r["origin"]: r for r in selectors.agreement(pref_set=s)}
    assert agreement["subjective"]["agree"] == 2 and agreement["subjective"]["disagree"] == 1
    assert agreement["subjective"]["clinician_tie"] == 1 and agreement["objective"]["agree_pct"] == 100.0

    job = services.export_start(user=curator, pref_set=s)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    e = PreferenceExport.objects.get(pref_set=s)
    assert e.counts["by_origin"] == {"subjective": 3, "objective": 2} and e.counts["left_out"] == {"clinician tie": 1}
    rows = [json.loads(line) for line in open(e.files["trl"], encoding="utf-8")]
    first = rows[0]
    assert first["prompt"][0]["content"] == "头痛0怎么办？" and first["chosen"][0]["content"] == "差回答0"


def test_diversify_job_builds_a_dataset_with_system_prompts_and_resumes(curator, make_dataset, pref_settings):
    from medstudio.datasets.models import Record
    from preferences.models import DiversifyRun

    src = make_dataset("sft", "qa", [{"id": f"s{i}", "lang": "zh", "question": f"问{i}", "answer": f"答{i}"} for i in range(5)])
    seeds = [f"请像一名医生一样回答患者的问题，第{i}条。" for i in range(12)]
    state = {"n": 0, "down_at": 3}

    def gen(req):
        state["n"] += 1
        if state["n"] == state["down_at"]:
            return Status(500)
        return f"1. 请作为临床医生，耐心解释患者症状的原因（{state['n']}）。\n2. 写一首诗。"

    with fake_openai_server(chat=gen) as url:
        pref_settings.MEDSTUDIO_PREF_CHAT_MAX_RETRIES = 0
        run = services.diversify_start(user=curator, seeds=seeds, source=src, output_name="sft-div",
                                       params={"rounds": 4, "base_url": url, "m": 4, "n": 4, "k": 2})
        run.refresh_from_db()
        assert run.status == RunStatus.PAUSED and run.state["round"] == 2 and len(run.state["accepted"]) == 2
        services.diversify_resume(user=curator, run=run)
    run = DiversifyRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.DONE and run.state["round"] == 4 and len(run.state["accepted"]) == 4
    assert all(len(b) <= 8 for b in run.state["banks"].values())
    recs = list(Record.objects.filter(dataset=run.output))
    assert len(recs) == 5 and all(r.content["system"] in run.state["accepted"] for r in recs)
    assert run.usage["calls"] == 5 and run.output.parent_id == src.pk


def test_pages_render_for_curator_and_build_through_the_form(client_for, make_dataset, pref_settings):
    c = client_for("curator")
    r = c.post("/preferences/", {"name": "web set"})
    assert r.status_code == 302
    pk = int(r["Location"].rstrip("/").split("/")[-1])
    ds = make_dataset("mcq-web", "mcq", [{"id": "m1", "question": "哪个对？", "options": {"A": "甲", "B": "乙"}, "answer": "B"}])
    r = c.post(f"/preferences/{pk}/build/", {"builder": "objective", "dataset": ds.pk, "seed": 0, "n": 4})
    assert r.status_code == 302
    page = c.get(f"/preferences/{pk}/").content.decode()
    assert "objective 1" in page and "Build runs" in page
    pairs = c.get(f"/preferences/{pk}/pairs/").content.decode()
    assert "答案：B. 乙" in pairs
    pair = PreferencePair.objects.get(pref_set_id=pk)
    assert "rejected_option" in c.get(f"/preferences/pairs/{pair.pk}/").content.decode()
    assert client_for("clinician").get(f"/preferences/{pk}/").status_code == 403


def test_sampled_job_n_answers_k_judges(curator, make_dataset, pref_settings):
    ds = make_dataset("dlg", "dialogue", [
        {"id": f"d{i}", "lang": "zh", "turns": [{"role": "user", "content": f"咳嗽{i}天了"}, {"role": "assistant", "content": "旧回答"}]}
        for i in range(3)])
    def script(req):
        if "乐于助人的医生" in req["messages"][0]["content"]:
            i = req["seed"] % 1000  # the builder gives sample i its own seed
            return f"回答{i} " + "详细" * i  # quality = number of 详细
        a = req["messages"][-1]["content"].split("Answer to rate:\n", 1)[1]
        return scores(1 + a.count("详细") * 2)

    with fake_openai_server(chat=script) as url:
        s = services.preference_set_create(user=curator, name="sampled")
        run = services.build_start(user=curator, pref_set=s, builder="sampled", dataset=ds,
                                   params={"base_url": url, "n": 3, "judges": ["j1", "j2"], "seed": 1})
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs == 3, run.error
    for p in PreferencePair.objects.filter(run=run):
        assert p.chosen.count("详细") == 2 and p.rejected.count("详细") == 0
        assert p.prompt_turns == [{"role": "user", "content": p.prompt_turns[0]["content"]}]
        assert len(p.provenance["answers"]) == 3 and p.provenance["vote"]["best_votes"][
            p.provenance["answers"].index(p.chosen)] == 2
    assert run.usage["calls"] == 3 * (3 + 3 * 2)


def test_objective_job_over_a_curation_selection(curator, make_dataset, pref_settings):
    from medstudio.handoffs.models import Selection, SelectionRecord
    from medstudio.datasets.models import Record

    rows = [{"id": f"m{i}", "lang": "en", "question": f"Q{i}?", "options": {"A": "x", "B": "y", "C": "z"}, "answer": "C"}
            for i in range(6)]
    ds = make_dataset("mcq-sel", "mcq", rows)
    sel = Selection.objects.create(name="half", status="ready")
    picked = list(Record.objects.filter(dataset=ds).order_by("id").values_list("id", flat=True))[::2]
    SelectionRecord.objects.bulk_create([SelectionRecord(selection=sel, record_id=i) for i in picked])
    s = services.preference_set_create(user=curator, name="sel")
    run = services.build_start(user=curator, pref_set=s, builder="objective", selection_id=sel.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs == 3
    assert sorted(PreferencePair.objects.filter(run=run).values_list("record_id", flat=True)) == picked
    assert all(p.chosen == "Answer: C. z" for p in PreferencePair.objects.filter(run=run))


def test_from_scores_file_with_a_bad_line_fails_that_line_only(curator, shared_data, pref_settings, tmp_path):
    lines = (shared_data / "disc_eval_scored_dialogues.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "scored.jsonl"
    path.write_text(lines[0] + "\n{not json\n" + lines[1] + "\n", encoding="utf-8")
    s = services.preference_set_create(user=curator, name="badline")
    run = services.build_start(user=curator, pref_set=s, builder="from_scores", path=str(path), params={"min_gap": 0})
    run.refresh_from_db()
    assert run.status == RunStatus.DONE and run.n_pairs == 2 and run.n_failed == 1
    f = BuildFailure.objects.get(run=run)
    assert f.item_key == 2 and f.reason.startswith("bad line")
