"""Instruction diversification loop (docs/METHODS.md 2.4) against a scripted backend."""
from __future__ import annotations

import pytest

from preferences.pipeline.diversify import (
    DiversifyConfig,
    attach_instructions,
    check_instruction,
    diversify,
    new_state,
    split_generated,
    split_seeds,
)
from preferences.pipeline.judge import ItemError, Usage

SEEDS = [f"请像医生一样回答患者的问题，第{i}条。" for i in range(12)]


class Reply:
    def __init__(self, text):
        self.text, self.usage_prompt_tokens, self.usage_completion_tokens = text, 7, 3


class Gen:
    """Writes three new instructions per call: two good ones and one without medical terms."""

    model = "gen"

    def __init__(self):
        self.n = 0
        self.seen = []

    def complete(self, messages, **params):
        self.seen.append(messages)
        self.n += 1
        return Reply(
            f"1. 请作为经验丰富的医生，详细解释患者症状的可能原因（版本{self.n}）。\n"
            f"2. 你是一名临床医生，请先询问病史再给出治疗建议，不要重复提问（版本{self.n}）。\n"
            f"3. 请写一首关于春天的诗{self.n}。\n"
            "4. 请作为医生回答患者"
        )


def test_split_and_checks():
    banks = split_seeds(SEEDS, seed=1)
    assert len(banks["question"]) == len(banks["answer"]) == 6
    assert set(banks["question"]) | set(banks["answer"]) == set(SEEDS)
    assert split_generated("1. 甲。\n- 乙。\n\n三、丙。") == ["甲。", "乙。", "丙。"]
    cfg = DiversifyConfig()
    assert check_instruction("请作为一名医生详细地回答患者的", cfg) == "incomplete"
    assert check_instruction("Write a poem about spring, please.", cfg) == "no medical terms"
    assert check_instruction("Answer the patient as a careful doctor would.", cfg) is None


def test_rounds_history_banks_pruning_and_swap():
    gen = Gen()
    cfg = DiversifyConfig(rounds=6, keep_oldest=4, keep_newest=3, swap_every=2, seed=3)
    usage = Usage()
    seen_states = []
    state = diversify(SEEDS, gen, cfg, usage, on_round=lambda s: seen_states.append(s["round"]))
    assert seen_states == [1, 2, 3, 4, 5, 6] and usage.calls == 6
    first = gen.seen[0]
    # 5 exchanges of history (user = Question bank, assistant = Answer bank) + 1 to expand.
    assert [m["role"] for m in first[1:]] == ["user", "assistant"] * 5 + ["user"]
    banks0 = split_seeds(SEEDS, seed=3)
    assert all(m["content"] in banks0["question"] for m in first[1:] if m["role"] == "user")
    assert all(m["content"] in banks0["answer"] for m in first[1:] if m["role"] == "assistant")
    # 2 good instructions per round; the poem and the truncated line are rejected.
    assert len(state["accepted"]) == 12 and all("医生" in s for s in state["accepted"])
    assert state["log"][0]["rejected"] == 2
    for bank in state["banks"].values():
        assert len(bank) <= 7
        # Oldest kept are seeds, newest kept are from the last rounds.
        assert bank[0] in SEEDS and "版本6" in bank[-1] or "版本5" in bank[-1]
    assert [e.get("swapped", False) for e in state["log"]] == [False, True, False, True, False, True]


def test_resume_from_saved_state_gives_the_same_result():
    cfg = DiversifyConfig(rounds=4, seed=9)
    full = diversify(SEEDS, Gen(), cfg)
    partial = diversify(SEEDS, Gen(), DiversifyConfig(rounds=2, seed=9))
    # Resume the remaining rounds with a backend that continues the same reply numbering.
    gen = Gen()
    gen.n = 2
    resumed = diversify(SEEDS, gen, cfg, state=partial)
    assert resumed["banks"] == full["banks"] and resumed["accepted"] == full["accepted"]


def test_outage_is_raised_and_a_bad_reply_is_logged():
    class Down:
        model = "down"

        def complete(self, messages, **params):
            from medstudio.inference.chat import ChatError

            raise ChatError("cannot reach server", retryable=True)

    state = new_state(SEEDS, DiversifyConfig())
    with pytest.raises(ItemError):
        diversify(SEEDS, Down(), DiversifyConfig(rounds=2), state=state)
    assert state["round"] == 0  # nothing half-written

    class Refuses:
        model = "r"

        def complete(self, messages, **params):
            from medstudio.inference.chat import ChatError

            raise ChatError("model refused: no")

    out = diversify(SEEDS, Refuses(), DiversifyConfig(rounds=1))
    assert out["log"][0]["error"].startswith("model refused") and out["accepted"] == []


def test_attach_instructions_as_system_prompts():
    rows = [{"question": "q1", "answer": "a1"}, {"turns": [{"role": "user", "content": "x"}]}]
    out = attach_instructions(rows, ["请像医生一样回答。", "请先询问病史。"], seed=1)
    assert all(r["system"] in ("请像医生一样回答。", "请先询问病史。") for r in out)
    assert "system" not in rows[0]
    with pytest.raises(ValueError):
        attach_instructions(rows, [])
