"""Preference-pair builders (docs/METHODS.md section 3), plain Python over RecordView-like objects.

Each builder turns one record into a `Pair` (possibly a tie, kept apart and never forced into a
chosen/rejected order) or raises `ItemError` with a reason. The Django job runs them in bounded
batches, stores what they return, and resumes from the last stored record.
"""
from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .judge import JUDGE_SYSTEM, Backend, Call, ItemError, Usage, generate_answer, judge_answer
from .voting import best_worst_by_vote

OK = "ok"
TIE = "tie"


@dataclass
class Pair:
    prompt_turns: list[dict[str, str]]
    chosen: str
    rejected: str
    origin: str  # subjective | objective | sampled | from_scores
    status: str = OK  # ok | tie (kept apart: chosen/rejected are then just "a" and "b")
    chosen_score: float | None = None
    rejected_score: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    record_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _content(record: Any) -> dict[str, Any]:
    return record.content if hasattr(record, "content") else record


def _rid(record: Any) -> Any:
    return getattr(record, "id", None) if hasattr(record, "content") else record.get("id")


def _lang(record: Any) -> str:
    lang = getattr(record, "lang", None) if hasattr(record, "content") else record.get("lang")
    return (lang or "en")[:2]


# --- objective pairs (CareBot, docs/METHODS.md 3.2) -----------------------------------------------

_LABELS = {
    "zh": {"answer": "答案", "explanation": "解析", "sep": "："},
    "en": {"answer": "Answer", "explanation": "Explanation", "sep": ": "},
}


def mcq_prompt(question: str, options: dict[str, str]) -> str:
    lines = [question.strip()] + [f"{k}. {v}" for k, v in sorted(options.items())]
    return "\n".join(lines)


def _mcq_answer_text(letters: str, options: dict[str, str], lang: str, explanation: str | None = None) -> str:
    lab = _LABELS.get(lang, _LABELS["en"])
    body = "; ".join(f"{k}. {options[k]}" for k in letters)
    text = f"{lab['answer']}{lab['sep']}{body}"
    if explanation and explanation.strip():
        text += f"\n{lab['explanation']}{lab['sep']}{explanation.strip()}"
    return text


def objective_pair(record: Any, *, seed: int | str = 0) -> Pair:
    """chosen = the correct option(s) (+ explanation when present), rejected = a random wrong option.

    The draw is seeded by (seed, record id), so a resumed or re-sharded job draws the same option.
    """
    c = _content(record)
    options = c.get("options") or {}
    answer = str(c.get("answer") or "").strip().upper()
    if not c.get("question") or len(options) < 2:
        raise ItemError("not a multiple-choice question (needs a question and at least two options)")
    letters = "".join(ch for ch in answer if ch.isalpha())
    if not letters or any(ch not in options for ch in letters):
        raise ItemError(f"answer {answer!r} is not one of the options {sorted(options)}")
    wrong = sorted(k for k in options if k not in letters)
    if not wrong:
        raise ItemError("every option is correct: no wrong option to reject")
    rid = _rid(record)
    rng = random.Random(f"{seed}:{rid}")
    pick = rng.choice(wrong)
    lang = _lang(record)
    explanation = c.get("explanation") or (c.get("meta") or {}).get("explanation")
    turns = ([{"role": "system", "content": c["system"]}] if c.get("system") else []) + [
        {"role": "user", "content": mcq_prompt(c["question"], options)}
    ]
    return Pair(
        prompt_turns=turns,
        chosen=_mcq_answer_text(letters, options, lang, explanation),
        rejected=_mcq_answer_text(pick, options, lang),
        origin="objective",
        provenance={"builder": "objective", "seed": seed, "correct": letters, "rejected_option": pick},
        record_id=rid,
    )


# --- from scores --------------------------------------------------------------------------------


def _scored_responses(c: dict[str, Any]) -> list[dict[str, Any]]:
    return c.get("responses") or (c.get("meta") or {}).get("responses") or []


def _first_reply(turns: list[dict[str, str]]) -> tuple[list[dict[str, str]], str] | None:
    for i, t in enumerate(turns):
        if t.get("role") == "assistant":
            return turns[:i], t.get("content", "")
    return None


def from_scores_pairs(
    record: Any, *, min_gap: float = 1.0, aspects: Iterable[str] | None = None, mode: str = "best_worst"
) -> list[Pair]:
    """Pairs from a record carrying several answers with judge scores (e.g. DISC-MedLLM's GPT-4 scores).

    An answer's score is the mean of its aspect scores; answers with no scores (DISC's case
    0-33275 has `gpt4_scores: {}`) are left out, not scored as 0. `mode="best_worst"` gives one
    pair (highest vs lowest), `"all"` every pair whose gap reaches `min_gap`.
    The scores judge a whole consultation whose later patient turns differ between models, so
    the pair holds the first user turn as prompt and each model's first reply.
    """
    c = _content(record)
    responses = _scored_responses(c)
    if len(responses) < 2:
        raise ItemError("fewer than two answers to compare")
    wanted = tuple(aspects) if aspects else None
    scored: list[tuple[float, str, list[dict[str, str]], str]] = []
    unscored: list[str] = []
    for r in responses:
        scores = r.get("gpt4_scores") or r.get("scores") or {}
        vals = [float(v) for k, v in scores.items() if (wanted is None or k in wanted) and isinstance(v, (int, float))]
        split = _first_reply(r.get("turns") or [])
        if not vals or split is None:
            unscored.append(str(r.get("model")))
            continue
        prompt, reply = split
        scored.append((sum(vals) / len(vals), str(r.get("model")), prompt, reply))
    if len(scored) < 2:
        raise ItemError(f"fewer than two scored answers (unscored: {', '.join(unscored) or 'none'})")
    scored.sort(key=lambda s: (-s[0], s[1]))
    candidates = [(scored[0], scored[-1])] if mode == "best_worst" else [
        (a, b) for i, a in enumerate(scored) for b in scored[i + 1 :]
    ]
    pairs = []
    for hi, lo in candidates:
        if hi[0] - lo[0] < min_gap:
            continue
        pairs.append(
            Pair(
                prompt_turns=hi[2],
                chosen=hi[3],
                rejected=lo[3],
                origin="from_scores",
                chosen_score=hi[0],
                rejected_score=lo[0],
                provenance={
                    "builder": "from_scores",
                    "chosen_model": hi[1],
                    "rejected_model": lo[1],
                    "min_gap": min_gap,
                    "aspects": list(wanted) if wanted else "all",
                    "unscored_models": unscored,
                },
                record_id=_rid(record),
            )
        )
    if not pairs:
        raise ItemError(f"score gap below {min_gap} (best {scored[0][0]:.2f}, worst {scored[-1][0]:.2f})")
    return pairs


# --- prompts of QA / dialogue records ---------------------------------------------------------


def prompt_and_answer(record: Any) -> tuple[list[dict[str, str]], str | None]:
    """The conversation up to the last assistant reply, and that reply (None when there is none)."""
    c = _content(record)
    system = [{"role": "system", "content": c["system"]}] if c.get("system") else []
    if "turns" in c:
        turns = [{"role": t["role"], "content": t["content"]} for t in c["turns"]]
        last_a = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
        if last_a is None:
            if not turns or turns[-1]["role"] != "user":
                raise ItemError("dialogue has no user turn to answer")
            return system + turns, None
        return system + turns[:last_a], turns[last_a]["content"]
    if "prompt_turns" in c:
        return system + list(c["prompt_turns"]), c.get("chosen")
    if c.get("question"):
        if c.get("options"):
            return system + [{"role": "user", "content": mcq_prompt(c["question"], c["options"])}], None
        return system + [{"role": "user", "content": c["question"]}], c.get("answer")
    raise ItemError("record has no question or dialogue")


# --- subjective pairs (CareBot, docs/METHODS.md 3.1) -----------------------------------------------


def subjective_pair(
    record: Any,
    generator: Backend,
    judge: Backend,
    usage: Usage,
    *,
    both_orders: bool = False,
    gen_params: dict[str, Any] | None = None,
    judge_params: dict[str, Any] | None = None,
) -> Pair:
    """A doctor-styled new answer against the record's own answer, each judged alone.

    `both_orders` scores the two answers a second time in the opposite order and averages; if
    the rounds disagree on the winner the pair is a tie (kept apart). Equal totals are a tie too.
    """
    prompt, original = prompt_and_answer(record)
    if not original or not original.strip():
        raise ItemError("record has no existing answer to compare with")
    lang = _lang(record)
    gen = generate_answer(generator, prompt, lang, usage, **(gen_params or {}))
    answers = {"original": original, "generated": gen.reply}
    rounds = [("original", "generated")] + ([("generated", "original")] if both_orders else [])
    totals: dict[str, list[float]] = {"original": [], "generated": []}
    judge_calls: list[dict[str, Any]] = []
    winners = []
    for order in rounds:
        round_scores = {}
        for name in order:
            j = judge_answer(judge, prompt, answers[name], usage, **(judge_params or {}))
            totals[name].append(j.total)
            round_scores[name] = j.total
            judge_calls.append({"answer": name, "scores": j.scores, "total": j.total, "model": j.call.model, "reply": j.call.reply})
        d = round_scores["generated"] - round_scores["original"]
        winners.append("generated" if d > 0 else "original" if d < 0 else None)
    mean = {k: sum(v) / len(v) for k, v in totals.items()}
    consistent = len(set(winners)) == 1 and winners[0] is not None
    winner = winners[0] if consistent else None
    loser = None if winner is None else ("original" if winner == "generated" else "generated")
    a, b = (winner, loser) if winner else ("generated", "original")
    return Pair(
        prompt_turns=prompt,
        chosen=answers[a],
        rejected=answers[b],
        origin="subjective",
        status=OK if winner else TIE,
        chosen_score=mean[a],
        rejected_score=mean[b],
        provenance={
            "builder": "subjective",
            "generator": {"model": gen.model, "messages": gen.messages, "params": gen_params or {}},
            "judge": {"model": judge_calls[0]["model"], "params": judge_params or {}, "system": JUDGE_SYSTEM,
                      "calls": judge_calls},
            "both_orders": both_orders,
            "round_winners": winners,
            "chosen_is": a,
        },
        record_id=_rid(record),
    )


# --- sampled pairs (SF-Med, docs/METHODS.md 3.3) ---------------------------------------------------


def sampled_pair(
    record: Any,
    generator: Backend,
    judges: list[Backend],
    usage: Usage,
    *,
    n: int = 4,
    seed: int = 0,
    gen_params: dict[str, Any] | None = None,
    judge_params: dict[str, Any] | None = None,
) -> Pair:
    """N answers from the model; every judge scores every answer alone; the vote picks best and worst."""
    if n < 2 or not judges:
        raise ItemError("sampled pairs need n >= 2 answers and at least one judge")
    prompt, _ = prompt_and_answer(record)
    if prompt and prompt[-1]["role"] == "assistant":
        prompt = prompt[:-1]
    lang = _lang(record)
    params = {"temperature": 1.0, **(gen_params or {})}
    answers: list[Call] = []
    for i in range(n):
        # A distinct seed per sample keeps the draw reproducible where the server honours seeds.
        answers.append(generate_answer(generator, prompt, lang, usage, seed=seed * 1000 + i, **params))
    scores: list[list[float]] = []
    judge_log = []
    for judge in judges:
        row = []
        for i, ans in enumerate(answers):
            j = judge_answer(judge, prompt, ans.reply, usage, **(judge_params or {}))
            row.append(j.total)
            judge_log.append({"judge": j.call.model, "answer": i, "scores": j.scores, "total": j.total, "reply": j.call.reply})
        scores.append(row)
    vote = best_worst_by_vote(scores)
    prov = {
        "builder": "sampled",
        "generator": {"model": answers[0].model, "params": params, "seed": seed, "messages": answers[0].messages},
        "judge_system": JUDGE_SYSTEM,
        "answers": [a.reply for a in answers],
        "judges": [j["judge"] for j in judge_log[:: len(answers)]],
        "judge_calls": judge_log,
        "vote": vote,
    }
    best, worst = vote["best"], vote["worst"]
    tie = best is None or worst is None or best == worst
    a, b = (best, worst) if not tie else (0, 1)
    mean = [sum(col) / len(col) for col in zip(*scores)]
    return Pair(
        prompt_turns=prompt,
        chosen=answers[a].reply,
        rejected=answers[b].reply,
        origin="sampled",
        status=TIE if tie else OK,
        chosen_score=mean[a],
        rejected_score=mean[b],
        provenance=prov,
        record_id=_rid(record),
    )


# --- running a batch ----------------------------------------------------------------------------


def run_items(
    records: Sequence[Any],
    build: Callable[[Any], Pair | list[Pair]],
    *,
    max_workers: int = 4,
    outage_retry_wait: float = 5.0,
) -> list[tuple[Any, list[Pair] | ItemError]]:
    """Build every record of a batch, in order, with up to `max_workers` calls in flight.

    Model calls are network-bound, so threads overlap their latency (bench/preferences_builders.py).
    An item whose failure is transient (outage, rate limit, timeout, after the client's own
    back-off) is tried once more after `outage_retry_wait` seconds.
    """

    def one(rec: Any) -> list[Pair] | ItemError:
        for attempt in (0, 1):
            try:
                out = build(rec)
                return out if isinstance(out, list) else [out]
            except ItemError as exc:
                if not exc.transient or attempt == 1:
                    return exc
                time.sleep(outage_retry_wait)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # A record whose content does not have the shape its kind promises: that item fails.
                return ItemError(f"bad record: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    if max_workers <= 1 or len(records) <= 1:
        results = [one(r) for r in records]
    else:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            results = list(pool.map(one, records))
    return list(zip(records, results))


def settle_batch(
    results: list[tuple[Any, list[Pair] | ItemError]],
) -> tuple[list[tuple[Any, list[Pair] | ItemError]], ItemError | None]:
    """Split a batch at its first transient failure: everything before it can be stored and the
    cursor moved past it; that failure means the backend is down, so the job stops there and a
    resumed job starts with that record (nothing after it is stored, nothing is lost)."""
    for i, (_, res) in enumerate(results):
        if isinstance(res, ItemError) and res.transient:
            return results[:i], res
    return results, None
