"""LLM judge and generator calls for preference pairs (plain Python, no Django).

The judge rates ONE answer per prompt, 1-5 on the four CareBot aspects (docs/METHODS.md 3.1, 5):
putting both answers in one prompt lets the first position win too often, so a pairwise verdict
is always derived from two independent scores.

A "backend" is anything with `.complete(messages, **params) -> reply` where the reply has `.text`,
`.usage_prompt_tokens`, `.usage_completion_tokens` (medstudio.inference.chat.ChatBackend is the
production one). Any exception it raises becomes a per-item failure with a reason.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

ASPECTS: tuple[str, ...] = ("fluency", "relevance", "completeness", "proficiency")

# docs/METHODS.md 3.1: the generator answers "as a professional and helpful doctor".
DOCTOR_SYSTEM = {
    "en": "You are a professional and helpful doctor. Answer the patient's question accurately, "
    "completely and kindly, as a professional and helpful doctor would.",
    "zh": "你是一名专业且乐于助人的医生。请以专业且乐于助人的医生的身份，准确、完整、耐心地回答患者的问题。",
}

JUDGE_SYSTEM = (
    "You are an expert medical reviewer. You rate ONE answer of a medical assistant to a "
    "conversation. Rate it from 1 (very poor) to 5 (excellent) on each aspect: fluency, "
    "relevance, completeness, proficiency (medical correctness and expertise). Reply with a JSON "
    'object only, for example {"fluency": 4, "relevance": 5, "completeness": 3, "proficiency": 4}.'
)

# Replies that decline the task instead of doing it (judge or generator).
_REFUSAL = re.compile(
    r"(i'?m sorry,? (but )?i can(no|')t|i cannot (help|assist|answer|comply)|as an ai language model, i can|"
    r"抱歉，?我(无法|不能)|我无法(回答|提供|协助)|对不起，?我(无法|不能))",
    re.IGNORECASE,
)


class Backend(Protocol):
    def complete(self, messages: list[dict[str, str]], **params: Any) -> Any: ...


class ItemError(Exception):
    """One item could not be done; `reason` is shown to the curator and stored with the item."""

    def __init__(self, reason: str, *, transient: bool = False, raw: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient  # network/timeout/rate limit: a judge outage, worth retrying later
        self.raw = raw


@dataclass
class Usage:
    """Token use of a job, per model, so the cost can be priced per model."""

    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    # Builders call backends from a thread pool; counters must not lose increments.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, model: str, prompt_tokens: int = 0, completion_tokens: int = 0, failed: bool = False) -> None:
        with self._lock:
            self._add(model, prompt_tokens, completion_tokens, failed)

    def _add(self, model: str, prompt_tokens: int, completion_tokens: int, failed: bool) -> None:
        self.calls += 1
        self.failures += int(failed)
        self.prompt_tokens += int(prompt_tokens or 0)
        self.completion_tokens += int(completion_tokens or 0)
        m = self.by_model.setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        m["calls"] += 1
        m["prompt_tokens"] += int(prompt_tokens or 0)
        m["completion_tokens"] += int(completion_tokens or 0)

    def merge(self, other: "Usage | dict") -> None:
        o = other if isinstance(other, Usage) else Usage.from_dict(other)
        self.calls += o.calls
        self.failures += o.failures
        self.prompt_tokens += o.prompt_tokens
        self.completion_tokens += o.completion_tokens
        for name, m in o.by_model.items():
            mine = self.by_model.setdefault(name, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
            for k in mine:
                mine[k] += m.get(k, 0)

    def cost(self, prices: dict[str, tuple[float, float]] | None) -> float:
        """prices: model -> (USD per 1M prompt tokens, USD per 1M completion tokens); unknown models cost 0."""
        prices = prices or {}
        total = 0.0
        for name, m in self.by_model.items():
            p_in, p_out = prices.get(name, prices.get("*", (0.0, 0.0)))
            total += m["prompt_tokens"] * p_in / 1e6 + m["completion_tokens"] * p_out / 1e6
        return round(total, 6)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "by_model": {k: dict(v) for k, v in self.by_model.items()},
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> "Usage":
        d = d or {}
        return cls(
            calls=d.get("calls", 0),
            failures=d.get("failures", 0),
            prompt_tokens=d.get("prompt_tokens", 0),
            completion_tokens=d.get("completion_tokens", 0),
            by_model={k: dict(v) for k, v in (d.get("by_model") or {}).items()},
        )


@dataclass
class Call:
    """One model call as kept in a pair's provenance."""

    model: str
    messages: list[dict[str, str]]
    reply: str


def backend_model(backend: Any) -> str:
    return str(getattr(backend, "model", type(backend).__name__))


def call(backend: Backend, messages: list[dict[str, str]], usage: Usage, **params: Any) -> str:
    """Call a backend once; count tokens; turn every failure into an ItemError with a reason."""
    model = backend_model(backend)
    try:
        reply = backend.complete(messages, **params)
    except Exception as exc:  # noqa: BLE001 - any backend failure is a per-item failure
        usage.add(model, failed=True)
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        # ChatError.retryable: timeouts, rate limits, 5xx, connection errors (after the client's
        # own back-off) are an outage of the backend, not a property of the item.
        transient = bool(getattr(exc, "retryable", False) or getattr(exc, "transient", False))
        raise ItemError(str(reason), transient=transient) from exc
    usage.add(model, getattr(reply, "usage_prompt_tokens", 0) or 0, getattr(reply, "usage_completion_tokens", 0) or 0)
    text = getattr(reply, "text", reply if isinstance(reply, str) else None)
    if not isinstance(text, str) or not text.strip():
        raise ItemError("empty reply", raw=str(text or ""))
    return text


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text[:300]))


def judge_messages(prompt_turns: list[dict[str, str]], answer: str) -> list[dict[str, str]]:
    convo = "\n".join(f"[{t['role']}] {t['content']}" for t in prompt_turns)
    user = f"Conversation so far:\n{convo}\n\nAnswer to rate:\n{answer}\n\nReply with the JSON object only."
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


_JSON_OBJ = re.compile(r"\{[^{}]*\}", re.S)


def parse_judge_reply(text: str) -> dict[str, float]:
    """Read the four 1-5 aspect scores from a judge reply, or raise ItemError saying why not."""
    for m in reversed(_JSON_OBJ.findall(text)):
        try:
            obj = json.loads(m)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        scores: dict[str, float] = {}
        for a in ASPECTS:
            v = lowered.get(a)
            if isinstance(v, str):
                try:
                    v = float(v.strip())
                except ValueError:
                    v = None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                break
            if not 1 <= v <= 5:
                raise ItemError(f"judge score out of range: {a}={v}", raw=text)
            scores[a] = float(v)
        else:
            return scores
        missing = [a for a in ASPECTS if a not in scores]
        raise ItemError(f"judge reply lacks aspects: {', '.join(missing)}", raw=text)
    if is_refusal(text):
        raise ItemError("judge refused", raw=text)
    raise ItemError("malformed judge reply (no JSON object)", raw=text)


@dataclass
class Judgement:
    scores: dict[str, float]
    total: float  # mean of the aspects
    call: Call


def judge_answer(
    judge: Backend, prompt_turns: list[dict[str, str]], answer: str, usage: Usage, *, parse_retries: int = 1, **params: Any
) -> Judgement:
    """Score one answer alone. A malformed reply is asked again `parse_retries` times."""
    messages = judge_messages(prompt_turns, answer)
    last: ItemError | None = None
    for _ in range(parse_retries + 1):
        text = call(judge, messages, usage, **params)
        try:
            scores = parse_judge_reply(text)
        except ItemError as exc:
            last = exc
            continue
        return Judgement(scores, sum(scores.values()) / len(scores), Call(backend_model(judge), messages, text))
    assert last is not None
    raise last


def generate_answer(generator: Backend, prompt_turns: list[dict[str, str]], lang: str, usage: Usage, **params: Any) -> Call:
    """Write a new answer "as a professional and helpful doctor" (docs/METHODS.md 3.1)."""
    system = DOCTOR_SYSTEM.get(lang[:2] if lang else "en", DOCTOR_SYSTEM["en"])
    turns = [t for t in prompt_turns if t["role"] != "system"]
    messages = [{"role": "system", "content": system}, *turns]
    text = call(generator, messages, usage, **params)
    if is_refusal(text):
        raise ItemError("generator refused", raw=text)
    return Call(backend_model(generator), messages, text.strip())


def judge_votes(
    judges: list[Backend], prompt_turns: list[dict[str, str]], chosen: str, rejected: str, usage: Usage, **params: Any
) -> tuple[list[float | None], list[float | None], list[str]]:
    """The cheap voting variant (docs/METHODS.md 3.4 with judges as voters): each judge scores the two
    answers of a pair, each alone. A judge that fails on a pair gives None (left out of the mean);
    a transient failure (outage) is raised so the job can stop and resume."""
    c_scores: list[float | None] = []
    r_scores: list[float | None] = []
    errors: list[str] = []
    for judge in judges:
        try:
            c = judge_answer(judge, prompt_turns, chosen, usage, **params).total
            r = judge_answer(judge, prompt_turns, rejected, usage, **params).total
        except ItemError as exc:
            if exc.transient:
                raise
            c = r = None
            errors.append(f"{backend_model(judge)}: {exc.reason}")
        c_scores.append(c)
        r_scores.append(r)
    return c_scores, r_scores, errors
