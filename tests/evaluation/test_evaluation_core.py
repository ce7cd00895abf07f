"""MCQ prompts, grading, seed aggregation, consultation items, judge parsing and pairwise tables."""
import json
import os

import pytest

from training.pipeline.evaluation import (
    ASPECTS, ConsultItem, JudgeParseError, McqItem, accuracy_table, aggregate_seeds, consultation_items,
    judge_messages, mcq_messages, mcq_verdicts, pairwise_from_scores, parse_judge_scores, per_turn_table,
)

DATA = os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")


def _rows(name, n):
    path = os.path.join(DATA, name)
    if not os.path.exists(path):
        pytest.skip("shared data not available")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def test_prompt_is_in_the_items_language():
    zh = _rows("cmmlu_med.jsonl", 1)[0]
    msgs = mcq_messages(zh, lang="zh", subject=zh["subject"])
    text = msgs[0]["content"]
    assert "解剖学" in text and "单项选择题" in text and text.rstrip().endswith("答案：")
    for k, v in zh["options"].items():
        assert f"{k}. {v}" in text
    en = _rows("pubmedqa.jsonl", 1)[0]
    text = mcq_messages({**en, "meta": {"context": en["context"]}}, lang="en", subject=en["subject"])[0]["content"]
    assert text.startswith("The following is a multiple-choice question")
    assert "Context: " in text and "A. yes" in text and "答案" not in text


def test_multi_answer_items_ask_for_every_correct_option():
    c = {"question": "q", "options": {"A": "x", "B": "y", "C": "z"}, "answer": "AC"}
    assert "多项选择题" in mcq_messages(c, lang="zh")[0]["content"]
    assert "several correct" in mcq_messages(c, lang="en")[0]["content"]


def test_accuracy_counts_invalid_as_wrong_and_reports_it_per_subject():
    opts = {"A": "yes", "B": "no", "C": "maybe"}
    items = [McqItem(1, "s1", opts, "A"), McqItem(2, "s1", opts, "A"), McqItem(3, "s2", opts, "B"), McqItem(4, "s2", opts, "C")]
    v = mcq_verdicts(items, ["A", "I cannot say.", "答案是B", None])
    t = accuracy_table(v)
    assert t["overall"]["n"] == 4 and t["overall"]["correct"] == 2
    assert t["overall"]["accuracy"] == pytest.approx(0.5)
    assert t["overall"]["invalid"] == 1 and t["overall"]["failed"] == 1
    assert t["per_subject"]["s1"]["accuracy"] == pytest.approx(0.5)
    assert t["per_subject"]["s2"]["invalid_rate"] == 0.0
    with pytest.raises(ValueError):
        mcq_verdicts(items, ["A"])


def test_seed_aggregate_gives_mean_and_sample_std():
    mk = lambda acc, sub: {"overall": {"accuracy": acc, "invalid_rate": 0.0}, "per_subject": {"x": {"accuracy": sub}}}
    agg = aggregate_seeds([mk(0.5, 0.4), mk(0.6, 0.6), mk(0.7, 0.8)])
    assert agg["n_runs"] == 3
    assert agg["overall"]["mean"] == pytest.approx(0.6)
    assert agg["overall"]["std"] == pytest.approx(0.1)
    assert agg["per_subject"]["x"]["mean"] == pytest.approx(0.6)
    assert agg["per_subject"]["x"]["std"] == pytest.approx(0.2)


def test_dialogue_items_get_true_history_per_assistant_turn():
    row = _rows("cmtmedqa_multiturn.jsonl", 1)[0]
    items = consultation_items(7, "dialogue", {"turns": row["turns"]}, lang="zh")
    n_assistant = sum(t["role"] == "assistant" for t in row["turns"])
    assert len(items) == n_assistant >= 2
    second = items[1]
    assert second.turn == 2
    assert second.messages == row["turns"][:3]  # user, reference assistant reply, user
    assert second.reference == row["turns"][3]["content"]


def test_qa_gives_one_item_and_system_prompt_is_kept():
    items = consultation_items(1, "qa", {"question": "头痛怎么办？", "answer": "休息。", "system": "你是医生"})
    assert len(items) == 1 and items[0].messages[0] == {"role": "system", "content": "你是医生"}
    with pytest.raises(ValueError):
        consultation_items(1, "mcq", {})


def test_judge_prompt_holds_one_reply_and_the_reference():
    item = ConsultItem(1, 1, [{"role": "user", "content": "头痛怎么办？"}], "多休息", "zh")
    msgs = judge_messages(item, "去医院")
    assert "多休息" in msgs[1]["content"] and "去医院" in msgs[1]["content"]
    assert all(a in msgs[0]["content"] for a in ASPECTS)


@pytest.mark.parametrize("text", [
    '{"fluency": 4, "relevance": 5, "completeness": 3, "proficiency": 4}',
    'Here are my scores:\n```json\n{"fluency": "4", "relevance": 5, "completeness": 3, "proficiency": 4}\n```',
    '{"流畅性": 4, "相关性": 5, "完整性": 3, "专业性": 4}',
    "流畅性：4\n相关性：5\n完整性：3\n专业性：4",
    "Fluency: 4/5\nRelevance: 5/5\nCompleteness: 3/5\nProficiency: 4/5",
    '{"fluency": {"score": 4}, "relevance": {"score": 5}, "completeness": {"score": 3}, "proficiency": {"score": 4}}',
])
def test_judge_scores_parse_from_varied_replies(text):
    assert parse_judge_scores(text) == {"fluency": 4, "relevance": 5, "completeness": 3, "proficiency": 4}


@pytest.mark.parametrize("text", [
    '{"fluency": 4, "relevance": 5, "completeness": 3}',  # one aspect missing
    '{"fluency": 7, "relevance": 5, "completeness": 3, "proficiency": 4}',  # out of range
    '{"fluency": 3.5, "relevance": 5, "completeness": 3, "proficiency": 4}',
    "I think the reply is good.",
    "",
])
def test_bad_judge_replies_raise_instead_of_defaulting(text):
    with pytest.raises(JudgeParseError):
        parse_judge_scores(text)


def test_per_turn_table_and_pairwise_from_individual_scores():
    s = lambda f, r, c, p: {"fluency": f, "relevance": r, "completeness": c, "proficiency": p}
    table = per_turn_table([(1, s(4, 4, 4, 4)), (1, s(2, 2, 2, 2)), (2, s(5, 5, 5, 5)), (2, None)])
    assert [r["turn"] for r in table] == [1, 2, "all"]
    assert table[0]["fluency"] == 3 and table[0]["n"] == 2
    assert table[1]["n"] == 1 and table[2]["mean"] == pytest.approx(11 / 3)
    a = {("r1", 1): s(5, 5, 5, 5), ("r1", 2): s(3, 3, 3, 3), ("r2", 1): s(2, 4, 2, 2), ("r3", 1): None}
    b = {("r1", 1): s(4, 5, 4, 4), ("r1", 2): s(3, 3, 3, 3), ("r2", 1): s(3, 4, 3, 3), ("r3", 1): s(1, 1, 1, 1)}
    wtl = pairwise_from_scores(a, b)
    assert (wtl["mean"]["win"], wtl["mean"]["tie"], wtl["mean"]["loss"]) == (1, 1, 1)
    assert (wtl["relevance"]["win"], wtl["relevance"]["tie"], wtl["relevance"]["loss"]) == (0, 3, 0)
