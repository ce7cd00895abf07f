"""Deita scoring (CareBot; docs/METHODS.md 2.1): s = complexity(instruction) * quality(instruction, response).

The published Deita scorers (hkust-nlp/deita-complexity-scorer, hkust-nlp/deita-quality-scorer) are
LLaMA models fine-tuned to answer a digit 1-6 after the prompt templates below (their model cards).
The score is the expected digit under the next-token distribution restricted to the six digit tokens
(softmax over their six log-probs). When there is no usable distribution (non-finite values, none of
the six digits among a server's top log-probs, no digit in a judge's text) the item is *unscored*,
never given a default. For a dialogue, s is the mean of its turns' scores (CareBot; Deita itself
sums); a dialogue with any unscored turn is unscored.

Two ways to get the digit distribution:
  - `LMDigitScorer`: a local causal LM (medstudio.inference.lm: transformers or vLLM);
  - `ChatDigitScorer`: a judge prompt through an OpenAI-compatible chat server, using the returned
    top log-probs when the server gives them, else the digit in the reply text.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from curation.pipeline.base import RecordView, ScoreResult

VERSION = "1"
DIGITS = ("1", "2", "3", "4", "5", "6")

# The scorers' own prompt templates (Deita model cards); they must match what the models were
# trained on, trailing spaces included.
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)

# Judge prompts for the chat route (our wording; the scale mirrors Deita's 1-6).
JUDGE_COMPLEXITY = (
    "Rate the complexity of the following user query on a scale from 1 (trivial) to 6 (very complex: "
    "needs several steps, specialised knowledge or constraints). Answer with a single digit 1-6 only.\n\n"
    "Query:\n{instruction}"
)
JUDGE_QUALITY = (
    "Rate the quality of the response to the question on a scale from 1 (useless or wrong) to 6 (accurate, "
    "complete, helpful, medically sound). Answer with a single digit 1-6 only.\n\n"
    "Question:\n{instruction}\n\nResponse:\n{output}"
)


def expected_digit(logprobs: Sequence[float]) -> float | None:
    """E[digit] under softmax of the six digit log-probs; missing (NaN/-inf) digits get probability 0.

    None when no digit has a finite log-prob (no usable distribution).
    """
    vals = [(d + 1, float(v)) for d, v in enumerate(logprobs) if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    top = max(v for _, v in vals)
    weights = [(d, math.exp(v - top)) for d, v in vals]
    total = sum(w for _, w in weights)
    return sum(d * w for d, w in weights) / total


def digit_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of "1".."6" as the model emits them right after the template."""
    ids = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for d in DIGITS:
        tid = tokenizer.convert_tokens_to_ids(d)
        if tid is None or tid == unk:
            # SentencePiece vocabularies may lack a bare "1"; the last piece of encode("1") is the digit.
            pieces = tokenizer.encode(d, add_special_tokens=False)
            if not pieces:
                raise ValueError(f"tokenizer cannot encode digit {d}")
            tid = pieces[-1]
        ids.append(int(tid))
    if len(set(ids)) != 6:
        raise ValueError("the six digits do not map to six distinct tokens")
    return ids


@dataclass
class Pair:
    instruction: str
    output: str


def record_pairs(record: RecordView) -> list[Pair]:
    """(instruction, response) per turn: one for QA, one per exchange for dialogues."""
    c = record.content or {}
    if record.kind == "qa":
        return [Pair(str(c.get("question") or ""), str(c.get("answer") or ""))]
    if record.kind == "dialogue":
        from curation.pipeline.confilter import parse_dialogue

        return [Pair(ex.user, ex.assistant) for ex in parse_dialogue(record).exchanges]
    if record.kind == "mcq":
        opts = "\n".join(f"{k}. {v}" for k, v in (c.get("options") or {}).items())
        answer = str(c.get("answer") or "")
        out = answer + (f"\n{c['explanation']}" if c.get("explanation") else "")
        return [Pair(f"{c.get('question', '')}\n{opts}".strip(), out)]
    return []


class LMDigitScorer:
    """Expected digit from a local causal LM (a Deita scorer) and its prompt template."""

    def __init__(self, lm: Any, template: str, *, max_length: int = 2048):
        self.lm = lm
        self.template = template
        self.max_length = min(max_length, int(getattr(lm, "max_length", max_length)))
        self.digit_ids = digit_token_ids(lm.tokenizer)

    def _encode(self, fields: dict[str, str]) -> list[int]:
        tok = self.lm.tokenizer
        ids = tok.encode(self.template.format(**fields))
        if len(ids) <= self.max_length:
            return ids
        # Too long: shorten the filled-in texts (not the template, whose tail cues the digit),
        # each to an equal share of the room left.
        fixed = len(tok.encode(self.template.format(**{k: "" for k in fields})))
        share = max(8, (self.max_length - fixed) // max(1, len(fields)))
        cut = {k: tok.decode(tok.encode(v, add_special_tokens=False)[:share]) for k, v in fields.items()}
        return tok.encode(self.template.format(**cut))[-self.max_length:]

    def score(self, items: Sequence[dict[str, str]]) -> list[tuple[float | None, dict]]:
        if not items:
            return []
        seqs = [self._encode(f) for f in items]
        logprobs = self.lm.next_token_logprobs(seqs, self.digit_ids)
        out = []
        for row in logprobs:
            row = [float(v) for v in row]
            finite = [v for v in row if math.isfinite(v)]
            mass = sum(math.exp(v) for v in finite)
            out.append((expected_digit(row), {"digit_mass": round(mass, 6)}))
        return out


class ChatDigitScorer:
    """Expected digit from a judge model behind an OpenAI-compatible chat endpoint."""

    def __init__(self, backend: Any, template: str, *, top_logprobs: int = 20, use_logprobs: bool = True,
                 max_workers: int = 4):
        self.backend = backend
        self.template = template
        self.top_logprobs = top_logprobs
        self.use_logprobs = use_logprobs
        self.max_workers = max_workers

    def score(self, items: Sequence[dict[str, str]]) -> list[tuple[float | None, dict]]:
        from medstudio.inference.chat import ChatError

        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 2}
        if self.use_logprobs:
            params.update(logprobs=True, top_logprobs=self.top_logprobs)
        convs = [[{"role": "user", "content": self.template.format(**f)}] for f in items]
        replies = self.backend.complete_many(convs, max_workers=self.max_workers, **params)
        out: list[tuple[float | None, dict]] = []
        for reply in replies:
            if isinstance(reply, ChatError):
                out.append((None, {"error": reply.reason}))
                continue
            dist = _digit_logprobs_from_raw(reply.raw)
            if dist is not None:
                out.append((expected_digit(dist), {"method": "logprobs"}))
                continue
            m = re.search(r"[1-6]", reply.text or "")
            if m:
                out.append((float(m.group(0)), {"method": "text"}))
            else:
                out.append((None, {"error": f"no digit 1-6 in reply {reply.text[:40]!r}"}))
        return out


def _digit_logprobs_from_raw(raw: dict[str, Any]) -> list[float] | None:
    """Log-probs of "1".."6" at the first generated token, from an OpenAI-style `logprobs` block."""
    try:
        first = raw["choices"][0]["logprobs"]["content"][0]
    except (KeyError, IndexError, TypeError):
        return None
    found: dict[str, float] = {}
    for cand in (first.get("top_logprobs") or []) + [first]:
        token = str(cand.get("token", "")).strip()
        if token in DIGITS and cand.get("logprob") is not None and token not in found:
            found[token] = float(cand["logprob"])
    if not found:
        return None
    return [found.get(d, float("nan")) for d in DIGITS]


class Deita:
    """The `deita` scorer: value = mean over turns of c * q."""

    name = "deita"
    version = VERSION

    def __init__(self, complexity: Any, quality: Any):
        self.complexity = complexity
        self.quality = quality

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        pairs = [record_pairs(r) for r in records]
        flat = [(i, p) for i, ps in enumerate(pairs) for p in ps if p.instruction.strip() and p.output.strip()]
        cs = self.complexity.score([{"instruction": p.instruction} for _, p in flat])
        qs = self.quality.score([{"instruction": p.instruction, "output": p.output} for _, p in flat])
        per_record: dict[int, list[dict]] = {}
        for (i, _), (c, cd), (q, qd) in zip(flat, cs, qs):
            row = {"c": c, "q": q, "s": c * q if c is not None and q is not None else None}
            errors = [d.get("error") for d in (cd, qd) if d.get("error")]
            if errors:
                row["error"] = "; ".join(errors)
            per_record.setdefault(i, []).append(row)
        results: list[ScoreResult] = []
        for i, rec in enumerate(records):
            turns = per_record.get(i, [])
            if not pairs[i]:
                results.append(ScoreResult(value=None, reason=f"Deita needs instructions and responses ({rec.kind})"))
                continue
            if len(turns) != len(pairs[i]):
                results.append(ScoreResult(value=None, reason="empty instruction or response", detail={"turns": turns}))
                continue
            missing = [n + 1 for n, t in enumerate(turns) if t["s"] is None]
            if missing:
                results.append(ScoreResult(value=None, reason=f"unscored: no usable digit distribution (turn {missing[0]})",
                                           detail={"turns": turns}))
                continue
            s = [t["s"] for t in turns]
            results.append(ScoreResult(value=sum(s) / len(s), detail={"turns": turns, "n_turns": len(turns)}))
        return results
