"""Pure pair builders (no database): objective, from-scores, subjective, sampled."""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from preferences.pipeline.builders import TIE, from_scores_pairs, objective_pair, sampled_pair, subjective_pair
from preferences.pipeline.judge import ASPECTS, ItemError, Usage, judge_votes, parse_judge_reply

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def load(name: str, limit: int | None = None) -> list[dict]:
    rows = []
    with open(DATA / name, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


class Reply:
    def __init__(self, text: str, p: int = 10, c: int = 5):
        self.text, self.usage_prompt_tokens, self.usage_completion_tokens = text, p, c


class FakeChat:
    """In-process backend: `fn(messages) -> str` or raise. Records every call."""

    def __init__(self, model: str, fn):
        self.model, self.fn, self.calls = model, fn, []

    def complete(self, messages, **params):
        self.calls.append(messages)
        return Reply(self.fn(messages))


def scores_json(v: float) -> str:
    return json.dumps({a: v for a in ASPECTS})


# --- objective -------------------------------------------------------------------------------


def test_objective_pairs_from_cmmlu_always_choose_the_correct_option():
    rows = load("cmmlu_med.jsonl")
    rejected_letters = Counter()
    for row in rows:
        pair = objective_pair(row, seed=7)
        correct = row["answer"]
        # The chosen text names exactly the correct letter and its option text; the rejected names a wrong one.
        assert pair.chosen.startswith(f"答案：{correct}. {row['options'][correct]}")
        m = re.match(r"答案：([A-Z])\. ", pair.rejected)
        assert m and m.group(1) != correct and m.group(1) in row["options"]
        assert pair.rejected == f"答案：{m.group(1)}. {row['options'][m.group(1)]}"
        assert row["question"] in pair.prompt_turns[-1]["content"]
        rejected_letters[m.group(1)] += 1
    assert len(rows) > 1500
    # A random draw of the wrong option uses every letter, not always the first wrong one.
    assert len(rejected_letters) == 4 and min(rejected_letters.values()) > len(rows) / 8


def test_objective_pair_is_seeded_and_keeps_the_explanation():
    row = load("pubmedqa.jsonl", limit=1)[0]
    a = objective_pair(row, seed=1)
    assert objective_pair(row, seed=1).rejected == a.rejected
    assert "Explanation: " + row["explanation"].strip()[:40] in a.chosen
    assert "Explanation" not in a.rejected
    draws = {objective_pair(dict(row, id=f"x{i}"), seed=1).provenance["rejected_option"] for i in range(30)}
    assert draws == {k for k in row["options"] if k != row["answer"]}


def test_objective_multi_letter_answer_and_bad_answers():
    row = {"id": 1, "lang": "en", "question": "Q?", "options": {"A": "a", "B": "b", "C": "c"}, "answer": "AC"}
    p = objective_pair(row)
    assert p.chosen.startswith("Answer: A. a; C. c") and p.rejected == "Answer: B. b"
    with pytest.raises(ItemError, match="not one of the options"):
        objective_pair(dict(row, answer="E"))
    with pytest.raises(ItemError, match="no wrong option"):
        objective_pair(dict(row, answer="ABC"))


# --- from scores -----------------------------------------------------------------------------


def test_from_scores_pairs_on_disc_eval_respect_min_gap_and_skip_empty_scores():
    rows = load("disc_eval_scored_dialogues.jsonl")
    made, skipped = [], Counter()
    for row in rows:
        try:
            made.extend(from_scores_pairs(row, min_gap=1.0))
        except ItemError as exc:
            skipped[exc.reason.split(" (")[0]] += 1
    assert made and skipped
    for p in made:
        assert p.chosen_score - p.rejected_score >= 1.0
        assert p.prompt_turns[0]["role"] == "user" and p.chosen != p.rejected
    # Case 0-33275 has five models with `gpt4_scores: {}`: they are left out, not scored 0.
    case = next(r for r in rows if r["id"].endswith("0-33275"))
    with pytest.raises(ItemError, match="fewer than two scored answers"):
        from_scores_pairs(case, min_gap=0)
    # Check one pair by hand: chosen is the model with the highest mean GPT-4 score.
    row = rows[0]
    means = {r["model"]: sum(r["gpt4_scores"].values()) / 4 for r in row["responses"]}
    pairs = from_scores_pairs(row, min_gap=0)
    assert pairs[0].provenance["chosen_model"] == max(means, key=lambda m: (means[m], -ord(m[0])))
    assert pairs[0].chosen_score == max(means.values()) and pairs[0].rejected_score == min(means.values())
    all_pairs = from_scores_pairs(row, min_gap=0.5, mode="all")
    assert all(p.chosen_score - p.rejected_score >= 0.5 for p in all_pairs)


# --- subjective ------------------------------------------------------------------------------

QA = {"id": 5, "lang": "zh", "question": "头痛怎么办？", "answer": "多喝水。"}


def judge_by_length(messages):
    answer = messages[-1]["content"].split("Answer to rate:\n", 1)[1]
    return scores_json(5 if "医生建议" in answer else 2)


def test_subjective_pair_judges_each_answer_alone_and_picks_the_better():
    gen = FakeChat("gen", lambda m: "医生建议：休息并就医检查。")
    judge = FakeChat("judge", judge_by_length)
    usage = Usage()
    p = subjective_pair(QA, gen, judge, usage)
    assert p.chosen == "医生建议：休息并就医检查。" and p.rejected == "多喝水。" and p.status == "ok"
    assert "专业且乐于助人的医生" in gen.calls[0][0]["content"]
    assert len(judge.calls) == 2
    for msgs in judge.calls:  # never both answers in one prompt
        text = json.dumps(msgs, ensure_ascii=False)
        assert ("多喝水" in text) != ("医生建议" in text)
    assert usage.calls == 3 and usage.prompt_tokens == 30
    assert p.provenance["judge"]["calls"][0]["reply"]


def test_subjective_tie_is_kept_apart_and_both_orders_disagreement_is_a_tie():
    gen = FakeChat("gen", lambda m: "另一个回答。")
    p = subjective_pair(QA, gen, FakeChat("judge", lambda m: scores_json(3)), Usage())
    assert p.status == TIE
    # A judge whose verdict depends on call order: round 1 prefers generated, round 2 original.
    seq = iter([scores_json(2), scores_json(4), scores_json(2), scores_json(4)])
    p = subjective_pair(QA, gen, FakeChat("judge", lambda m: next(seq)), Usage(), both_orders=True)
    assert p.status == TIE and p.provenance["round_winners"] == ["generated", "original"]


def test_subjective_failures_have_reasons():
    gen = FakeChat("gen", lambda m: "好的。")
    with pytest.raises(ItemError, match="malformed judge reply"):
        subjective_pair(QA, gen, FakeChat("judge", lambda m: "I think it is good"), Usage())
    with pytest.raises(ItemError, match="generator refused"):
        subjective_pair(QA, FakeChat("gen", lambda m: "抱歉，我无法回答这个问题"), FakeChat("j", judge_by_length), Usage())
    with pytest.raises(ItemError, match="no existing answer"):
        subjective_pair({"id": 1, "question": "q"}, gen, FakeChat("j", judge_by_length), Usage())


def test_parse_judge_reply_variants():
    assert parse_judge_reply('Sure!\n```json\n{"Fluency": 4, "relevance": "5", "completeness": 3, "proficiency": 2}\n```') == {
        "fluency": 4.0, "relevance": 5.0, "completeness": 3.0, "proficiency": 2.0}
    with pytest.raises(ItemError, match="lacks aspects: proficiency"):
        parse_judge_reply('{"fluency": 4, "relevance": 5, "completeness": 3}')
    with pytest.raises(ItemError, match="out of range"):
        parse_judge_reply('{"fluency": 9, "relevance": 5, "completeness": 3, "proficiency": 1}')
    with pytest.raises(ItemError, match="refused"):
        parse_judge_reply("I'm sorry, but I can't rate medical content.")


def test_subjective_against_the_fake_openai_server_with_failures():
    from medstudio.inference.chat import ChatBackend
    from tests.fakes.openai_server import Malformed, Slow, Status, fake_openai_server

    def script(req):
        system = req["messages"][0]["content"]
        if "helpful doctor" in system or "医生" in system:
            return "医生建议：多休息。"
        return scores_json(4 if "医生建议" in req["messages"][-1]["content"] else 2)

    with fake_openai_server(chat=script) as url:
        p = subjective_pair(QA, ChatBackend(url, "gen", max_retries=0), ChatBackend(url, "judge", max_retries=0), Usage())
        assert p.chosen.startswith("医生建议") and p.provenance["judge"]["model"] == "judge"
    # Rate limited past the retries: a transient per-item failure (an outage), with its reason.
    with fake_openai_server(chat=[Status(429)]) as url:
        with pytest.raises(ItemError) as err:
            subjective_pair(QA, ChatBackend(url, "gen", max_retries=1), ChatBackend(url, "judge", max_retries=1), Usage())
        assert err.value.transient and "429" in err.value.reason
    # A generator that times out is an outage too; one that refuses is this item's failure.
    with fake_openai_server(chat=[Slow(1.0, "late")]) as url:
        with pytest.raises(ItemError) as err:
            subjective_pair(QA, ChatBackend(url, "gen", timeout=0.2, max_retries=0), ChatBackend(url, "j"), Usage())
        assert err.value.transient and "timed out" in err.value.reason
    with fake_openai_server(chat=[{"content": None, "refusal": "I cannot help with that."}]) as url:
        with pytest.raises(ItemError, match="refused") as err:
            subjective_pair(QA, ChatBackend(url, "gen", max_retries=0), ChatBackend(url, "j", max_retries=0), Usage())
        assert not err.value.transient
    with fake_openai_server(chat=[Malformed()]) as url:
        with pytest.raises(ItemError, match="malformed") as err:
            subjective_pair(QA, ChatBackend(url, "gen", max_retries=0), ChatBackend(url, "j", max_retries=0), Usage())
        assert not err.value.transient


# --- sampled + judge votes ------------------------------------------------------------------


def test_sampled_pair_majority_best_and_worst():
    answers = iter(["回答一", "回答二很好", "回答三"])
    gen = FakeChat("sft", lambda m: next(answers))
    quality = {"回答一": 3, "回答二很好": 5, "回答三": 1}

    def judge(noise):
        def fn(m):
            ans = m[-1]["content"].split("Answer to rate:\n", 1)[1].split("\n\n")[0]
            return scores_json(max(1, min(5, quality[ans] + noise.get(ans, 0))))
        return fn

    judges = [FakeChat("j1", judge({})), FakeChat("j2", judge({})), FakeChat("j3", judge({"回答三": 4}))]
    p = sampled_pair({"id": 1, "lang": "zh", "question": "咳嗽"}, gen, judges, Usage(), n=3)
    assert (p.chosen, p.rejected, p.status) == ("回答二很好", "回答三", "ok")
    # j3 ties 回答二很好 and 回答三 at the top: its best vote is split between them.
    assert p.provenance["vote"]["best_votes"][1] == 2.5 and p.provenance["vote"]["worst_votes"][2] == 2


def test_judge_votes_leave_a_failed_judge_out():
    good = FakeChat("a", lambda m: scores_json(5 if "GOOD" in m[-1]["content"] else 1))
    bad = FakeChat("b", lambda m: "no json here")
    c, r, errors = judge_votes([good, bad], [{"role": "user", "content": "q"}], "GOOD", "bad", Usage())
    assert c == [5.0, None] and r == [1.0, None] and "malformed" in errors[0]


# --- batches: parallel calls, outage split ------------------------------------------------------


def test_run_items_keeps_order_retries_transient_once_and_settle_splits_at_outage():
    from preferences.pipeline.builders import run_items, settle_batch

    attempts = Counter()

    def build(rec):
        attempts[rec["id"]] += 1
        if rec["id"] == 3:
            raise ItemError("bad record")
        if rec["id"] == 5 and attempts[5] == 1:
            raise ItemError("HTTP 503", transient=True)  # recovers on the item-level retry
        if rec["id"] == 7:
            raise ItemError("cannot reach judge", transient=True)
        return objective_pair({"id": rec["id"], "lang": "en", "question": "q", "options": {"A": "x", "B": "y"}, "answer": "A"})

    recs = [{"id": i} for i in range(10)]
    results = run_items(recs, build, max_workers=4, outage_retry_wait=0)
    assert [r["id"] for r, _ in results] == list(range(10))
    assert attempts[5] == 2 and attempts[7] == 2 and attempts[3] == 1
    done, outage = settle_batch(results)
    assert [r["id"] for r, _ in done] == list(range(7)) and outage.reason == "cannot reach judge"
    assert isinstance(done[3][1], ItemError) and isinstance(done[5][1], list)


def test_a_malformed_record_fails_alone():
    from preferences.pipeline.builders import run_items

    recs = [{"id": 1, "responses": [{"model": "a", "turns": "not a list", "gpt4_scores": {"x": 1}}] * 2},
            {"id": 2, "lang": "en", "question": "q", "options": {"A": "x", "B": "y"}, "answer": "A"}]
    out = run_items(recs, lambda r: from_scores_pairs(r) if "responses" in r else objective_pair(r), max_workers=1)
    assert isinstance(out[0][1], ItemError) and out[0][1].reason.startswith("bad record")
    assert isinstance(out[1][1], list)
