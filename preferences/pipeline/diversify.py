"""Instruction diversification (SF-Med, docs/METHODS.md 2.4), plain Python.

Seed system instructions are split evenly into a Question bank and an Answer bank. Each round
shows the LLM a 5-exchange history (5 Question-bank instructions as user turns, 5 Answer-bank
instructions as assistant turns) and one more Question-bank instruction to expand; the LLM writes
new instructions; those that are complete and use medical terms go back, half to each bank; each
bank keeps only its oldest m (the seeds anchor the style) and newest n; banks swap every k rounds.

State is a plain dict (banks, round, accepted, log) so a job can persist it after each round and
resume there. Each round draws from its own Random(seed, round), so a resumed run draws the same.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .judge import Backend, ItemError, Usage, call

DIVERSIFY_SYSTEM = (
    "You write system instructions for a medical AI assistant. Each user message is one such "
    "instruction; you reply with a new instruction in the same spirit but different in wording and "
    "focus. For the last message, reply with several new, complete instructions, one per line, "
    "each mentioning medical concepts (patients, symptoms, diagnosis, treatment...)."
)

MEDICAL_TERMS: tuple[str, ...] = (
    "医", "病", "症", "患者", "诊", "治疗", "药", "健康", "临床", "检查", "手术", "护理", "科",
    "doctor", "patient", "medical", "medicine", "diagnos", "symptom", "treatment", "therap",
    "clinic", "health", "disease", "medication", "physician", "nurse",
)

_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d{1,3}[.)、:：]|[一二三四五六七八九十]+[、.])\s*")
_END = re.compile(r"[。．.!！?？”\"』」)）]$")


@dataclass
class DiversifyConfig:
    rounds: int = 10
    history: int = 5  # docs/METHODS.md 2.4: 5 Question + 5 Answer instructions as history, then 1 to expand
    keep_oldest: int = 20  # m
    keep_newest: int = 40  # n
    swap_every: int = 3  # k
    min_chars: int = 10
    max_chars: int = 600
    seed: int = 0
    medical_terms: tuple[str, ...] = MEDICAL_TERMS
    params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.9})


def split_seeds(seeds: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Split the seed instructions evenly (shuffled, seeded) into the two banks."""
    clean = list(dict.fromkeys(s.strip() for s in seeds if s and s.strip()))
    if len(clean) < 2:
        raise ValueError("need at least two distinct seed instructions")
    random.Random(f"{seed}:split").shuffle(clean)
    return {"question": clean[0::2], "answer": clean[1::2]}


def split_generated(text: str) -> list[str]:
    """One instruction per non-empty line, list numbering removed."""
    out = []
    for line in text.splitlines():
        s = _NUMBERING.sub("", line).strip().strip("\"'“”")
        if s:
            out.append(s)
    return out


def check_instruction(s: str, cfg: DiversifyConfig) -> str | None:
    """None when the instruction is usable, else why not."""
    if len(s) < cfg.min_chars:
        return "too short"
    if len(s) > cfg.max_chars:
        return "too long"
    if not _END.search(s) or s.count("(") != s.count(")") or s.count("（") != s.count("）"):
        return "incomplete"
    low = s.lower()
    if not any(t in low for t in cfg.medical_terms):
        return "no medical terms"
    return None


def _prune(bank: list[str], m: int, n: int) -> list[str]:
    return bank if len(bank) <= m + n else bank[:m] + bank[len(bank) - n :]


def round_messages(banks: dict[str, list[str]], rng: random.Random, history: int) -> list[dict[str, str]]:
    q, a = banks["question"], banks["answer"]
    hq = rng.sample(q, min(history, max(len(q) - 1, 0)))
    rest = [x for x in q if x not in hq] or q
    ha = rng.sample(a, min(history, len(a)))
    msgs = [{"role": "system", "content": DIVERSIFY_SYSTEM}]
    for x, y in zip(hq, ha):
        msgs += [{"role": "user", "content": x}, {"role": "assistant", "content": y}]
    msgs.append({"role": "user", "content": rng.choice(rest)})
    return msgs


def new_state(seeds: list[str], cfg: DiversifyConfig) -> dict[str, Any]:
    return {"round": 0, "banks": split_seeds(seeds, cfg.seed), "accepted": [], "log": []}


def run_round(state: dict[str, Any], backend: Backend, cfg: DiversifyConfig, usage: Usage) -> dict[str, Any]:
    """One round, in place on `state`; returns its log entry. A backend failure is logged, not raised,
    unless it is transient (an outage), which the job should stop and resume on."""
    r = state["round"]
    rng = random.Random(f"{cfg.seed}:round:{r}")
    banks = state["banks"]
    entry: dict[str, Any] = {"round": r, "accepted": [], "rejected": []}
    msgs = round_messages(banks, rng, cfg.history)
    try:
        text = call(backend, msgs, usage, **cfg.params)
    except ItemError as exc:
        if exc.transient:
            raise
        entry["error"] = exc.reason
        text = ""
    known = set(banks["question"]) | set(banks["answer"])
    for s in split_generated(text):
        why = check_instruction(s, cfg)
        if why is None and s in known:
            why = "duplicate"
        if why:
            entry["rejected"].append({"text": s, "reason": why})
        else:
            entry["accepted"].append(s)
            known.add(s)
    # Half to each bank, alternating which bank gets the odd one so neither grows faster.
    first, second = ("question", "answer") if r % 2 == 0 else ("answer", "question")
    for i, s in enumerate(entry["accepted"]):
        banks[first if i % 2 == 0 else second].append(s)
    for name in ("question", "answer"):
        banks[name] = _prune(banks[name], cfg.keep_oldest, cfg.keep_newest)
    state["round"] = r + 1
    if cfg.swap_every and state["round"] % cfg.swap_every == 0:
        banks["question"], banks["answer"] = banks["answer"], banks["question"]
        entry["swapped"] = True
    state["accepted"].extend(entry["accepted"])
    state["log"].append({k: (len(v) if k == "rejected" else v) for k, v in entry.items()})
    return entry


def diversify(
    seeds: list[str],
    backend: Backend,
    cfg: DiversifyConfig | None = None,
    usage: Usage | None = None,
    state: dict[str, Any] | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the remaining rounds from `state` (or fresh from `seeds`); `on_round(state)` after each."""
    cfg = cfg or DiversifyConfig()
    usage = usage or Usage()
    state = state or new_state(seeds, cfg)
    while state["round"] < cfg.rounds:
        run_round(state, backend, cfg, usage)
        if on_round:
            on_round(state)
    return state


def attach_instructions(contents: list[dict[str, Any]], instructions: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Copies of SFT records (qa / dialogue content) with a drawn instruction as system prompt."""
    if not instructions:
        raise ValueError("no instructions to attach")
    rng = random.Random(f"{seed}:attach")
    out = []
    for c in contents:
        new = dict(c)
        new["system"] = rng.choice(instructions)
        out.append(new)
    return out
