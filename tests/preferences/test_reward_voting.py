"""Reward-model voting on the tiny Llama: K TRL reward models flip mostly the planted noisy pairs."""
from __future__ import annotations

import random

import pytest

from preferences.pipeline.reward import RewardSpec, score_pairs, to_trl_rows, train_reward_models
from preferences.pipeline.voting import FLIP, preference_strengths, select_by_strength
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401 (fixture)

GOOD = [
    "Please describe your symptoms and see a doctor if the rash spreads.",
    "Hypertension is treated with lifestyle changes and antihypertensive drugs.",
    "根据您的描述，可能是紧张性头痛，建议规律作息，必要时到神经内科就诊。",
    "高血压患者应低盐饮食，按时服用降压药，定期监测血压。",
]
BAD = [
    "The quick brown fox jumps over the lazy dog.",
    "北京是中华人民共和国的首都，历史悠久。",
    "Wikipedia is a free encyclopedia.",
]
PROMPTS = ["医生您好，我最近总是头痛，这是怎么回事？", "The patient reports a headache and fever.", "孩子发烧三十八度五，需要吃抗生素吗？"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The dev box has 2 shared cores; torch's thread pool under contention spins far more than it computes.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_pairs(n: int, noise: float, seed: int = 0):
    rng = random.Random(seed)
    pairs, planted = [], set()
    for i in range(n):
        p = {"prompt_turns": [{"role": "user", "content": rng.choice(PROMPTS)}], "chosen": rng.choice(GOOD), "rejected": rng.choice(BAD)}
        if i % int(1 / noise) == 0:
            p["chosen"], p["rejected"] = p["rejected"], p["chosen"]
            planted.add(i)
        pairs.append(p)
    return pairs, planted


def test_trl_rows_are_conversational():
    rows = to_trl_rows([{"prompt_turns": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}])
    assert rows == [{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
                     "rejected": [{"role": "assistant", "content": "b"}]}]


@pytest.mark.slow
def test_reward_model_voting_flips_mostly_planted_pairs(tiny_llama_path, tmp_path):
    pairs, planted = synthetic_pairs(40, noise=0.1)
    spec = RewardSpec(base_model=tiny_llama_path, k=3, epochs=3, learning_rate=2e-3, batch_size=8, max_length=256, use_cpu=True)
    seen = []
    paths = train_reward_models(pairs, spec, tmp_path, on_model=lambda i, p: seen.append(i))
    assert seen == [0, 1, 2] and len(set(paths)) == 3
    chosen, rejected = [], []
    for path in paths:
        c, r = score_pairs(path, pairs, max_length=256)
        chosen.append(c)
        rejected.append(r)
    # The voters differ (different shuffles and seeds), yet agree on the direction.
    assert chosen[0] != chosen[1]
    strengths = preference_strengths(chosen, rejected)
    flipped = {i for i, a in enumerate(select_by_strength(strengths, flip_frac=0.1, drop_frac=0.1)) if a == FLIP}
    assert len(flipped) == 4
    assert len(flipped & planted) >= 3, (sorted(flipped), sorted(planted))
    # Resuming with the first two models done trains only the third.
    seen.clear()
    again = train_reward_models(pairs, spec, tmp_path / "resume", done=paths[:2], on_model=lambda i, p: seen.append(i))
    assert seen == [2] and again[:2] == paths[:2]


@pytest.mark.slow
def test_reward_model_vote_job_stores_strengths_and_actions(curator, tiny_llama_path, settings, tmp_path):
    from medstudio.jobs.models import Job
    from preferences import services
    from preferences.models import PreferencePair, RunStatus

    settings.MEDSTUDIO_PREF_DIR = tmp_path / "prefs"
    s = services.preference_set_create(user=curator, name="rm")
    pairs, planted = synthetic_pairs(30, noise=0.1)
    for i, p in enumerate(pairs):
        PreferencePair.objects.create(pref_set=s, origin="sampled", item_key=i, **p)
    vote = services.vote_start(user=curator, pref_set=s, method="reward_models",
                               params={"k": 2, "base_model": tiny_llama_path, "epochs": 4, "learning_rate": 2e-3,
                                       "max_length": 256})
    vote.refresh_from_db()
    assert vote.status == RunStatus.DONE, vote.error
    assert len(vote.state["paths"]) == 2 and vote.summary["counts"]["flip"] == 3
    flipped = set(PreferencePair.objects.filter(pref_set=s, action="flip").values_list("item_key", flat=True))
    assert len(flipped & planted) >= 2
    p = PreferencePair.objects.filter(pref_set=s).first()
    assert len(p.vote_detail["chosen"]) == 2 and p.strength == pytest.approx(
        sum(c - r for c, r in zip(p.vote_detail["chosen"], p.vote_detail["rejected"])) / 2)

    # A base model that is not on the machine: the job says which setting to change, no crash.
    bad = services.vote_start(user=curator, pref_set=s, method="reward_models", params={"k": 1, "base_model": "/no/such/model"})
    bad.refresh_from_db()
    assert bad.status == RunStatus.FAILED and "MEDSTUDIO_PREF_REWARD_BASE" in bad.error
    assert "MEDSTUDIO_PREF_REWARD_BASE" in Job.objects.get(pk=bad.job_id).error
