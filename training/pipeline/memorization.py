"""Memorisation audit and high-risk embedding store (SF-Med appendix B; docs/METHODS.md section 5).

Audit: split a training sample into prefix A and suffix B, let the model continue A, and flag the
sample when ROUGE-L(output, B) > 0.8 (SF-Med found 512 of 61,225 samples, 0.84%).
Store: embeddings of the flagged samples' prefixes; a new prompt whose embedding lies within
cosine > 0.8 of an entry is high-risk, so a serving stack can refuse or substitute it. The store is
written as plain files (npy + json) beside the model, and holds hashes, not the memorised text.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from training.pipeline.rouge import _TOKEN_RE, rouge_l

# SF-Med appendix B: ROUGE-L above 0.8 = memorised; cosine above 0.8 = high-risk. Both editable.
DEFAULT_ROUGE_THRESHOLD = 0.8
DEFAULT_COSINE_THRESHOLD = 0.8
# The paper does not give the split point; half of the sample is the common choice.
DEFAULT_PREFIX_RATIO = 0.5


@dataclass
class Probe:
    key: Any  # record id
    prefix: str
    suffix: str


def split_prefix_suffix(text: str, *, prefix_ratio: float = DEFAULT_PREFIX_RATIO,
                        max_prefix_units: int | None = None, max_suffix_units: int | None = None) -> tuple[str, str]:
    """Split at a unit boundary (a CJK character or a word, as ROUGE counts them), so that the
    prefix holds `prefix_ratio` of the units. Caps keep long documents' probes short."""
    if not 0 < prefix_ratio < 1:
        raise ValueError("prefix_ratio must lie strictly between 0 and 1")
    text = text or ""
    # Spans on the NFKC form map 1:1 to the original for the text we see; fall back if not.
    norm = unicodedata.normalize("NFKC", text)
    base = norm if len(norm) == len(text) else text
    spans = [m.span() for m in _TOKEN_RE.finditer(base.lower())]
    if len(spans) < 2:
        return text, ""
    k = max(1, min(len(spans) - 1, round(len(spans) * prefix_ratio)))
    if max_prefix_units is not None and k > max_prefix_units:
        k = max_prefix_units
    cut = spans[k][0]
    prefix, suffix = text[:cut], text[cut:]
    if max_suffix_units is not None and len(spans) - k > max_suffix_units:
        suffix = text[cut:spans[k + max_suffix_units - 1][1]]
    return prefix, suffix


def make_probes(records: Sequence[tuple[Any, str]], **split_kw: Any) -> list[Probe]:
    probes = []
    for key, text in records:
        prefix, suffix = split_prefix_suffix(text, **split_kw)
        if prefix.strip() and suffix.strip():
            probes.append(Probe(key, prefix, suffix))
    return probes


@dataclass
class MemResult:
    key: Any
    prefix: str
    suffix: str
    output: str | None
    rouge_l: float | None
    flagged: bool
    error: str = ""


def judge_memorised(probes: Sequence[Probe], outputs: Sequence[str | None], *, threshold: float = DEFAULT_ROUGE_THRESHOLD,
                    errors: Sequence[str] | None = None) -> list[MemResult]:
    """ROUGE-L F-measure of each continuation against the true suffix; > threshold flags it."""
    if len(probes) != len(outputs):
        raise ValueError(f"{len(probes)} probes but {len(outputs)} outputs")
    res = []
    for i, (p, out) in enumerate(zip(probes, outputs)):
        if out is None:
            res.append(MemResult(p.key, p.prefix, p.suffix, None, None, False, (errors[i] if errors else "") or "no output"))
            continue
        # Compare with the suffix's length of output: a model that recites B and then rambles on is
        # still reciting; F over the whole ramble would hide it.
        n_suffix = len(_TOKEN_RE.findall(unicodedata.normalize("NFKC", p.suffix).lower()))
        spans = [m.span() for m in _TOKEN_RE.finditer(out.lower())]
        trimmed = out[: spans[n_suffix - 1][1]] if n_suffix and len(spans) > n_suffix else out
        score = rouge_l(trimmed, p.suffix).fmeasure
        res.append(MemResult(p.key, p.prefix, p.suffix, out, score, score > threshold))
    return res


def memorisation_rate(results: Sequence[MemResult]) -> dict[str, Any]:
    scored = [r for r in results if r.rouge_l is not None]
    flagged = sum(r.flagged for r in scored)
    return {
        "n": len(results), "scored": len(scored), "failed": len(results) - len(scored),
        "flagged": flagged, "rate": flagged / len(scored) if scored else None,
    }


# ---------------------------------------------------------------------------------------------
# High-risk store
# ---------------------------------------------------------------------------------------------

STORE_VECTORS = "high_risk_embeddings.npy"
STORE_META = "high_risk_store.json"
STORE_DIRNAME = "high_risk_store"


@dataclass(frozen=True)
class RiskCheck:
    high_risk: bool
    max_cosine: float | None
    nearest: Any  # the entry's key (record id) or None for an empty store


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class HighRiskStore:
    """Unit-normalised embeddings of memorised prefixes with a cosine-threshold check."""

    def __init__(self, vectors, keys: Sequence[Any], *, threshold: float = DEFAULT_COSINE_THRESHOLD,
                 embedding_model: str = "", prefix_hashes: Sequence[str] | None = None):
        import numpy as np

        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim == 1 and vecs.size == 0:
            vecs = vecs.reshape(0, 0)
        if vecs.ndim != 2 or len(vecs) != len(keys):
            raise ValueError(f"need one row per key: {vecs.shape} vectors for {len(keys)} keys")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True) if len(vecs) else np.ones((0, 1), np.float32)
        if len(vecs) and (norms == 0).any():
            raise ValueError("a high-risk embedding is all zeros; cosine is undefined")
        self.vectors = vecs / norms if len(vecs) else vecs
        self.keys = list(keys)
        self.threshold = float(threshold)
        self.embedding_model = embedding_model
        self.prefix_hashes = list(prefix_hashes) if prefix_hashes is not None else [""] * len(self.keys)

    @classmethod
    def build(cls, prefixes: Sequence[str], keys: Sequence[Any], embed, **kw: Any) -> "HighRiskStore":
        """embed(list[str]) -> vectors; e.g. medstudio.inference.embeddings on bge-m3."""
        vecs = embed(list(prefixes)) if prefixes else []
        return cls(vecs, keys, prefix_hashes=[_sha(p) for p in prefixes], **kw)

    def __len__(self) -> int:
        return len(self.keys)

    def check_many(self, vectors) -> list[RiskCheck]:
        import numpy as np

        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if not len(self.keys):
            return [RiskCheck(False, None, None) for _ in range(len(q))]
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"embedding has {q.shape[1]} dimensions, the store {self.vectors.shape[1]}: "
                             f"embed with the store's model ({self.embedding_model or 'unknown'})")
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        qn[qn == 0] = 1.0
        # float32 rounding can push an identical vector's cosine just past 1.0
        sims = np.clip((q / qn) @ self.vectors.T, -1.0, 1.0)
        best = sims.argmax(axis=1)
        return [RiskCheck(bool(sims[i, j] > self.threshold), float(sims[i, j]), self.keys[j]) for i, j in enumerate(best)]

    def check(self, vector) -> RiskCheck:
        return self.check_many(vector)[0]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write <directory>/high_risk_embeddings.npy and high_risk_store.json (no memorised text)."""
        import numpy as np

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / STORE_VECTORS, self.vectors.astype(np.float32))
        meta = {
            "format": "medstudio.high_risk_store/1",
            "threshold": self.threshold,
            "metric": "cosine",
            "rule": "high risk when cosine(prompt embedding, entry) > threshold",
            "embedding_model": self.embedding_model,
            "dim": int(self.vectors.shape[1]) if len(self.keys) else 0,
            "entries": [{"key": k, "prefix_sha256": h} for k, h in zip(self.keys, self.prefix_hashes)],
        }
        (d / STORE_META).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, threshold: float | None = None) -> "HighRiskStore":
        import numpy as np

        d = Path(directory)
        meta = json.loads((d / STORE_META).read_text(encoding="utf-8"))
        vecs = np.load(d / STORE_VECTORS)
        entries = meta.get("entries", [])
        return cls(vecs if len(entries) else np.zeros((0, 0), np.float32), [e["key"] for e in entries],
                   threshold=meta["threshold"] if threshold is None else threshold,
                   embedding_model=meta.get("embedding_model", ""), prefix_hashes=[e.get("prefix_sha256", "") for e in entries])
