"""ConFilter (CareBot; docs/METHODS.md 2.2): how much a dialogue's history helps each turn.

For turns t_i = (user q_i, assistant r_i), with the loss taken over the reply tokens only:
    L(t_i | H) = mean over r_i's tokens of -log P(token | system, t_1..t_{i-1}, q_i, earlier r_i tokens)
    L(t_i)     = the same with no earlier exchange (same system prompt and chat template)
    CF_i       = L(t_i | H) / L(t_i)
CF > 1: the history hurts (unrelated turns); CF well below 1: the history makes the turn easy
(repetition). Turn 1 has no history, so CF_1 = 1 by construction and is left out of the summary.

Cost: ONE forward pass over each whole dialogue gives every L(t_i | H) (a causal LM's logits at
reply i's tokens only see what precedes them), and ONE batched pass over the turns alone gives
every L(t_i); the naive reference (`confilter_naive`) runs 2n passes and exists for tests/benchmarks.

Reply tokens: the tokens of the assistant message's text as the chat template renders it; template
markup (role headers, the end-of-turn marker) is not part of the reply.

Left truncation rule: when the rendered dialogue is longer than `max_length` tokens, whole
exchanges are dropped from the left (the system prompt is always kept) until the rest fits. Each
remaining turn is conditioned on the remaining earlier exchanges only; dropped turns are reported
as `truncated` and unscored; the first remaining turn plays the role of turn 1 (CF = 1, not in the
summary). The cut is made once per dialogue, so the one-pass and naive computations see exactly the
same tokens. A dialogue whose last exchange alone does not fit is unscored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from curation.pipeline.base import RecordView, ScoreResult

VERSION = "1"
DEFAULT_MAX_LENGTH = 4096  # CareBot's CPT max length; capped by the scoring model's own context


@dataclass(frozen=True)
class Exchange:
    user: str
    assistant: str


@dataclass
class ParsedDialogue:
    system: str | None
    exchanges: list[Exchange]
    notes: list[str] = field(default_factory=list)


def parse_dialogue(record: RecordView) -> ParsedDialogue:
    """Exchanges (user message + assistant reply) of a dialogue or QA record."""
    content = record.content or {}
    notes: list[str] = []
    if record.kind == "qa":
        q, a = str(content.get("question") or ""), str(content.get("answer") or "")
        return ParsedDialogue(content.get("system") or None, [Exchange(q, a)] if q and a else [], notes)
    turns = content.get("turns") or []
    system = content.get("system") or None
    exchanges: list[Exchange] = []
    pending_user: list[str] = []
    last_reply: list[str] | None = None
    for turn in turns:
        role, text = turn.get("role"), str(turn.get("content") or "")
        if role == "system":
            system = system or text
        elif role == "user":
            pending_user.append(text)
            last_reply = None
        elif role == "assistant":
            if pending_user:
                # Consecutive same-role messages are one message (the data README merges them too).
                exchanges.append(Exchange("\n".join(pending_user), text))
                pending_user = []
                last_reply = [text]
            elif last_reply is not None and exchanges:
                exchanges[-1] = Exchange(exchanges[-1].user, exchanges[-1].assistant + "\n" + text)
            else:
                notes.append("leading assistant message ignored")
    if pending_user:
        notes.append("final user message has no reply; ignored")
    return ParsedDialogue(system, exchanges, notes)


def _messages(system: str | None, exchanges: Sequence[Exchange]) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    for ex in exchanges:
        msgs += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.assistant}]
    return msgs


def encode_exchanges(tokenizer: Any, system: str | None, exchanges: Sequence[Exchange]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the chat-templated conversation and, per exchange, the [start, end) token span of its reply."""
    msgs = _messages(system, exchanges)
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    # Add no BOS of our own: chat templates that want one write it themselves.
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    spans: list[tuple[int, int]] = []
    cursor = 0
    n_before = 1 if system else 0
    for i, ex in enumerate(exchanges):
        # Where the reply text starts: right after the template's assistant header, which we get by
        # rendering the conversation up to q_i with a generation prompt.
        reply = ex.assistant.strip()
        if not reply:
            spans.append((0, 0))
            continue
        prompt = tokenizer.apply_chat_template(msgs[: n_before + 2 * i + 1], tokenize=False, add_generation_prompt=True)
        start_hint = len(prompt) if text.startswith(prompt) else cursor
        cs = text.find(reply, max(start_hint, cursor))
        if cs < 0:
            cs = text.find(reply, cursor)
        if cs < 0:
            raise ValueError(f"reply {i + 1} not found in the chat-templated text; unsupported chat template")
        ce = cs + len(reply)
        cursor = ce
        toks = [j for j, (s, e) in enumerate(offsets) if s < ce and e > cs and e > s]
        spans.append((toks[0], toks[-1] + 1) if toks else (0, 0))
    return ids, spans


@dataclass
class _Plan:
    record_index: int
    first_kept: int  # index of the first exchange kept after left truncation
    full_ids: list[int]
    full_spans: list[tuple[int, int]]  # spans of the kept exchanges, in the full sequence
    direct: list[tuple[list[int], tuple[int, int]]]  # per kept exchange: (ids, span)


def plan_dialogue(tokenizer: Any, system: str | None, exchanges: Sequence[Exchange], max_length: int) -> tuple[int, list[int], list[tuple[int, int]]]:
    """Apply the left truncation rule; return (first kept exchange, full ids, reply spans)."""
    for k in range(len(exchanges)):
        ids, spans = encode_exchanges(tokenizer, system, exchanges[k:])
        if len(ids) <= max_length:
            return k, ids, spans
    return len(exchanges), [], []


def _mean_loss(logprobs: Any) -> float:
    return float(-sum(logprobs) / len(logprobs))


def _summarise(exchanges: Sequence[Exchange], first_kept: int, cond: list[float | None], direct: list[float | None],
               n_tokens: list[int], notes: list[str]) -> ScoreResult:
    turns: list[dict[str, Any]] = []
    for i in range(first_kept):
        turns.append({"turn": i + 1, "cf": None, "status": "truncated"})
    cfs: list[float] = []
    for j, i in enumerate(range(first_kept, len(exchanges))):
        row: dict[str, Any] = {"turn": i + 1, "n_tokens": n_tokens[j], "loss_cond": cond[j], "loss_direct": direct[j]}
        if cond[j] is None or direct[j] is None:
            row.update(cf=None, status="empty reply")
        elif j == 0:
            row.update(cf=1.0, status="first")  # no history: CF = 1 by construction, not summarised
        elif direct[j] <= 0:
            row.update(cf=None, status="zero direct loss")
        else:
            cf = cond[j] / direct[j]
            row.update(cf=cf, status="ok")
            cfs.append(cf)
        turns.append(row)
    detail: dict[str, Any] = {"turns": turns, "n_exchanges": len(exchanges), "truncated_turns": first_kept}
    if notes:
        detail["notes"] = notes
    if not cfs:
        reason = ("no exchange fits max_length" if first_kept >= len(exchanges) and exchanges
                  else "fewer than two scoreable exchanges: CF undefined")
        return ScoreResult(value=None, detail=detail, reason=reason)
    detail.update(cf_mean=sum(cfs) / len(cfs), cf_min=min(cfs), cf_max=max(cfs))
    return ScoreResult(value=detail["cf_mean"], detail=detail)


class ConFilter:
    """The `confilter` scorer: value = mean CF over turns 2..n (band-filtered by the curator)."""

    name = "confilter"
    version = VERSION

    def __init__(self, lm: Any, *, max_length: int | None = None):
        self.lm = lm
        self.tokenizer = lm.tokenizer
        self.max_length = min(max_length or DEFAULT_MAX_LENGTH, int(getattr(lm, "max_length", DEFAULT_MAX_LENGTH)))

    def _plan(self, index: int, parsed: ParsedDialogue) -> _Plan:
        k, ids, spans = plan_dialogue(self.tokenizer, parsed.system, parsed.exchanges, self.max_length)
        direct = []
        for ex in parsed.exchanges[k:]:
            d_ids, d_spans = encode_exchanges(self.tokenizer, parsed.system, [ex])
            direct.append((d_ids, d_spans[0]))
        return _Plan(index, k, ids, spans, direct)

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        results: list[ScoreResult | None] = [None] * len(records)
        plans: list[tuple[_Plan, ParsedDialogue]] = []
        for i, rec in enumerate(records):
            if rec.kind not in ("dialogue", "qa"):
                results[i] = ScoreResult(value=None, reason=f"ConFilter needs dialogues, not {rec.kind}")
                continue
            parsed = parse_dialogue(rec)
            if not parsed.exchanges:
                results[i] = ScoreResult(value=None, reason="no user/assistant exchange", detail={"notes": parsed.notes})
                continue
            try:
                plans.append((self._plan(i, parsed), parsed))
            except ValueError as exc:
                results[i] = ScoreResult(value=None, reason=str(exc))
        # One pass per whole dialogue (all dialogues of the batch together, padded by length)...
        full_seqs = [p.full_ids for p, _ in plans if p.full_ids]
        full_targets = [[j for s, e in p.full_spans for j in range(s, e)] for p, _ in plans if p.full_ids]
        full_lp = iter(self.lm.token_logprobs(full_seqs, full_targets)) if full_seqs else iter(())
        # ...and one batched pass over every kept turn on its own.
        direct_seqs = [ids for p, _ in plans for ids, _ in p.direct]
        direct_targets = [list(range(s, e)) for p, _ in plans for _, (s, e) in p.direct]
        direct_lp = iter(self.lm.token_logprobs(direct_seqs, direct_targets)) if direct_seqs else iter(())
        for plan, parsed in plans:
            cond: list[float | None] = []
            direct: list[float | None] = []
            n_tokens: list[int] = []
            flp = next(full_lp) if plan.full_ids else []
            pos = 0
            for (s, e), (_, (ds, de)) in zip(plan.full_spans, plan.direct):
                n = e - s
                cond.append(_mean_loss(flp[pos:pos + n]) if n else None)
                pos += n
                dlp = next(direct_lp)
                direct.append(_mean_loss(dlp) if de > ds else None)
                n_tokens.append(n)
            results[plan.record_index] = _summarise(parsed.exchanges, plan.first_kept, cond, direct, n_tokens, parsed.notes)
        return [r if r is not None else ScoreResult(value=None, reason="not scored") for r in results]


def confilter_naive(lm: Any, record: RecordView, *, max_length: int | None = None) -> ScoreResult:
    """Reference: a separate forward pass per turn for both losses (2n passes per dialogue).

    Same truncation cut and templates as `ConFilter`; used by the equality test and the benchmark.
    """
    tokenizer = lm.tokenizer
    limit = min(max_length or DEFAULT_MAX_LENGTH, int(getattr(lm, "max_length", DEFAULT_MAX_LENGTH)))
    parsed = parse_dialogue(record)
    if not parsed.exchanges:
        return ScoreResult(value=None, reason="no user/assistant exchange")
    k, _, _ = plan_dialogue(tokenizer, parsed.system, parsed.exchanges, limit)
    kept = parsed.exchanges[k:]
    cond: list[float | None] = []
    direct: list[float | None] = []
    n_tokens: list[int] = []
    for i in range(len(kept)):
        ids, spans = encode_exchanges(tokenizer, parsed.system, kept[: i + 1])
        s, e = spans[-1]
        cond.append(_mean_loss(lm.token_logprobs([ids], [list(range(s, e))])[0]) if e > s else None)
        d_ids, d_spans = encode_exchanges(tokenizer, parsed.system, [kept[i]])
        ds, de = d_spans[0]
        direct.append(_mean_loss(lm.token_logprobs([d_ids], [list(range(ds, de))])[0]) if de > ds else None)
        n_tokens.append(e - s)
    return _summarise(parsed.exchanges, k, cond, direct, n_tokens, parsed.notes)
