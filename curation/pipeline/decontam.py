"""Decontamination: flag training text that shares a long n-gram with a benchmark item
(docs/METHODS.md 1.4: training text must not contain benchmark test items).

Method after GPT-3 (Brown et al. 2020, appendix C): a training document is contaminated when it
shares a word n-gram with a benchmark item; GPT-3 used N = 13 for most benchmarks (down to 8 for
sets of short items), so the default here is 13 words. For Chinese the unit is the character
(textutil); a Chinese word averages about 1.5 characters, so the default is 20 characters (ours:
13 x 1.5). Benchmark parts shorter than n (most MCQ stems are) are matched whole (ours), if they
have at least `min_item_tokens` tokens: shorter ones ("yes", "以上都是") would match everything.
Tokens are normalised (NFKC, lower case, punctuation dropped), so re-punctuated or full-width
copies still match.

The index keeps n-gram hashes in a sorted numpy array; a document's n-grams are looked up with one
vectorised `searchsorted`, so scanning costs O(tokens log index) with no Python loop per n-gram.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from curation.pipeline.base import RecordView, ScoreResult
from curation.pipeline.minhash import _norm_tokens, rolling_gram_hashes, token_hashes
from curation.pipeline.textutil import is_cjk_text
from medstudio.datasets.convert import text_fields


@dataclass
class DecontamConfig:
    """Settings of the overlap test; every field is a curator-facing setting."""

    ngram_en: int = 13  # words (GPT-3's usual N)
    ngram_zh: int = 20  # characters (ours: 13 words x ~1.5 characters per Chinese word)
    min_item_tokens: int = 8  # shorter benchmark parts are not indexed at all
    max_hits: int = 0  # records matching more benchmark items than this are dropped

    def __post_init__(self) -> None:
        if min(self.ngram_en, self.ngram_zh, self.min_item_tokens) < 1:
            raise ValueError("n-gram sizes and min_item_tokens must be >= 1")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "DecontamConfig":
        params = {k: v for k, v in dict(params or {}).items() if k in cls.__dataclass_fields__}
        return cls(**{k: int(v) for k, v in params.items()})


@dataclass
class BenchmarkItem:
    """A benchmark record the index can name in a hit."""

    ref: dict[str, Any]  # e.g. {"dataset": "cmmlu_med", "record_id": 12, "external_id": "..."}


@dataclass
class Hit:
    item: int  # index into BenchmarkIndex.items
    n_matches: int  # matched n-gram positions in the document
    sample: str  # the first matching span, as normalised tokens

    def as_dict(self, items: list[BenchmarkItem]) -> dict[str, Any]:
        return {**items[self.item].ref, "n_matches": self.n_matches, "sample": self.sample}


@dataclass
class BenchmarkIndex:
    cfg: DecontamConfig = field(default_factory=DecontamConfig)
    items: list[BenchmarkItem] = field(default_factory=list)
    _keys: dict[int, list[np.ndarray]] = field(default_factory=dict)  # gram length -> hash chunks
    _owners: dict[int, list[np.ndarray]] = field(default_factory=dict)  # parallel item indices
    _final: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, ref: dict[str, Any], texts: Sequence[str]) -> None:
        """Index one benchmark item given its text parts (question, options, answer...)."""
        item = len(self.items)
        self.items.append(BenchmarkItem(ref))
        parts = [t for t in texts if t and t.strip()]
        for text, toks in zip(parts, token_hashes(parts)):
            n = self.cfg.ngram_zh if is_cjk_text(text) else self.cfg.ngram_en
            size = len(toks)
            if size < self.cfg.min_item_tokens:
                continue
            length = min(n, size)
            grams = np.unique(rolling_gram_hashes(toks, length))
            self._keys.setdefault(length, []).append(grams)
            self._owners.setdefault(length, []).append(np.full(grams.size, item, dtype=np.int64))
        self._final.clear()

    def add_record(self, ref: dict[str, Any], content: dict, kind: str) -> None:
        self.add(ref, text_fields(kind, content))

    def _finalize(self) -> None:
        if self._final or not self._keys:
            return
        for length in self._keys:
            keys = np.concatenate(self._keys[length])
            owners = np.concatenate(self._owners[length])
            order = np.argsort(keys, kind="stable")
            self._final[length] = (keys[order], owners[order])

    @property
    def n_items(self) -> int:
        return len(self.items)

    def match(self, text: str) -> list[Hit]:
        """Benchmark items sharing a long n-gram with `text`, most matches first."""
        self._finalize()
        if not self._final or not text:
            return []
        toks = _norm_tokens(text)
        (hashes,) = token_hashes([text])
        per_item: dict[int, list[int]] = {}  # item -> [n_matches, first position, gram length]
        for length, (keys, owners) in self._final.items():
            grams = rolling_gram_hashes(hashes, length)
            if grams.size == 0:
                continue
            pos = np.searchsorted(keys, grams)
            pos_c = np.minimum(pos, keys.size - 1)
            found = np.flatnonzero(keys[pos_c] == grams)
            for p in found:
                # a gram shared by several items: every owner is named
                k = pos_c[p]
                g = keys[k]
                while k < keys.size and keys[k] == g:
                    entry = per_item.setdefault(int(owners[k]), [0, int(p), length])
                    entry[0] += 1
                    k += 1
        hits = []
        for item, (count, first, length) in per_item.items():
            span = toks[first : first + length]
            sample = ("" if is_cjk_text(text) else " ").join(span)
            hits.append(Hit(item=item, n_matches=count, sample=sample))
        hits.sort(key=lambda h: (-h.n_matches, h.item))
        return hits


class DecontamScorer:
    """Per-record scorer over a built index: value = number of benchmark items matched."""

    name = "decontam"
    version = "1"

    def __init__(self, index: BenchmarkIndex):
        self.index = index

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        out = []
        for rec in records:
            hits = self.index.match(rec.text)
            keep = len(hits) <= self.index.cfg.max_hits
            out.append(
                ScoreResult(
                    value=float(len(hits)),
                    keep=keep,
                    reason="" if keep else "contaminated",
                    detail={"hits": [h.as_dict(self.index.items) for h in hits[:10]], "n_items": len(hits)},
                )
            )
        return out
