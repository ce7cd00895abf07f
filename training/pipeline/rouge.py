"""ROUGE-L that works on Chinese (docs/METHODS.md section 5: ROUGE-L win/tie/loss, memorisation audit).

rouge-score's DefaultTokenizer keeps only [a-z0-9] runs, so a Chinese sentence becomes zero tokens
and every score is 0. We hand rouge-score an explicit tokenizer instead: every CJK character is a
token of its own (the usual "by character" convention for Chinese ROUGE), Latin words and numbers
stay whole (lower-cased), punctuation and whitespace are dropped. The LCS itself is rouge-score's.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

# CJK unified ideographs (+ ext. A, compatibility), kana and hangul: scripts written without spaces.
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\u3040-\u309f\u30a0-\u30ff\uac00-\ud7af"
)
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Character tokens for CJK, lower-cased word tokens for everything else, no punctuation."""
    # NFKC folds full-width Latin/digits (Ｂ, １２) into ASCII so they compare equal.
    text = unicodedata.normalize("NFKC", text or "").lower()
    return _TOKEN_RE.findall(text)


class CharTokenizer:
    """The tokenizer object rouge-score expects (it only calls `.tokenize`)."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


@dataclass(frozen=True)
class RougeL:
    precision: float
    recall: float
    fmeasure: float


_scorer = None


def _get_scorer():
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())
    return _scorer


def rouge_l(prediction: str, reference: str) -> RougeL:
    """ROUGE-L of `prediction` against `reference` (precision over the prediction, recall over the reference)."""
    s = _get_scorer().score(reference or "", prediction or "")["rougeL"]
    return RougeL(precision=float(s.precision), recall=float(s.recall), fmeasure=float(s.fmeasure))


@dataclass(frozen=True)
class WinTieLoss:
    win: int
    tie: int
    loss: int

    @property
    def n(self) -> int:
        return self.win + self.tie + self.loss

    def as_dict(self) -> dict:
        n = self.n or 1
        return {
            "win": self.win, "tie": self.tie, "loss": self.loss, "n": self.n,
            "win_rate": self.win / n, "tie_rate": self.tie / n, "loss_rate": self.loss / n,
        }


def win_tie_loss(a: Sequence[float | None], b: Sequence[float | None], *, margin: float = 0.0) -> WinTieLoss:
    """Compare two models item by item from their *individual* scores (docs/METHODS.md 5: never from a
    prompt holding both answers). |a - b| <= margin is a tie; items where either side is None
    (failed generation or judge) are left out rather than counted for anyone."""
    if len(a) != len(b):
        raise ValueError(f"score lists differ in length: {len(a)} vs {len(b)}")
    win = tie = loss = 0
    for x, y in zip(a, b):
        if x is None or y is None:
            continue
        if abs(x - y) <= margin:
            tie += 1
        elif x > y:
            win += 1
        else:
            loss += 1
    return WinTieLoss(win, tie, loss)


def rouge_win_tie_loss(
    outputs_a: Iterable[str | None], outputs_b: Iterable[str | None], references: Iterable[str], *, margin: float = 0.0
) -> WinTieLoss:
    """ROUGE-L (F) of each model's output against the shared reference, then win/tie/loss of A over B."""
    sa: list[float | None] = []
    sb: list[float | None] = []
    for oa, ob, ref in zip(outputs_a, outputs_b, references, strict=True):
        sa.append(None if oa is None else rouge_l(oa, ref).fmeasure)
        sb.append(None if ob is None else rouge_l(ob, ref).fmeasure)
    return win_tie_loss(sa, sb, margin=margin)
