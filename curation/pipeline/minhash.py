"""MinHash-LSH near-duplicate detection (docs/METHODS.md 1.5 and 2.3; SF-Med: within each source,
then across all sources after merging).

Pipeline, per text:
1. shingles: CJK-aware tokens (the same tokens as textutil), n-grams of `ngram_zh` characters for
   Chinese text and `ngram_en` words otherwise; each n-gram is a 64-bit hash. A whole batch is
   tokenised, hashed and cut into n-grams in numpy (`batch_tokens`), with no Python object per
   token: building n-gram strings in Python cost more than all the MinHash work;
2. signatures: `rensa` R-MinHash digest matrix, `num_perm` 32-bit slots per text;
3. LSH candidates: `bands` bands of `num_perm // bands` rows. Own code here, on purpose: rensa's
   own LSH needs one Python RMinHash object per text to *query* candidates (its matrix API only
   returns yes/no flags, not whom a text collides with), while grouping the digest matrix band by
   band with a numpy sort yields every candidate bucket in a handful of vectorised calls;
4. verification: each candidate pair's *exact* Jaccard over the n-gram hash sets (or, with
   verify="estimate", the signature estimate) must reach `threshold`;
5. clusters: connected components of the verified pairs (union-find); one member is kept by
   policy: first, longest, or highest score of a chosen scorer run.

Defaults (settings, see MinHashConfig): num_perm 128, 32 bands x 4 rows, threshold 0.8, 5-grams.
FineWeb/datatrove use 5-grams and 112 permutations as 14 bands x 8 rows, tuned to catch J ~ 0.75
with few candidates; with 8 rows the chance that a pair at J = 0.8 shares a band is only
1 - (1 - 0.8^8)^14 = 0.92, below the 0.95 recall this project requires. With 4 rows and 32 bands
it is 1 - (1 - 0.8^4)^32 > 0.9999; the extra candidates this admits (J = 0.5: 87%) are removed
by the exact verification, so precision does not suffer, only a little verification time.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from curation.pipeline.textutil import _CJK, _CJK_RE, _TOKEN_RE

KEEP_POLICIES = ("first", "longest", "score")
_P = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: odd, so the polynomial mixes every position


@dataclass
class MinHashConfig:
    """Settings of the near-duplicate search; every field is a curator-facing setting."""

    num_perm: int = 128
    bands: int = 32
    threshold: float = 0.8
    ngram_zh: int = 5  # characters (Chinese text)
    ngram_en: int = 5  # words (other text); FineWeb/datatrove use 5
    seed: int = 42
    verify: str = "exact"  # "exact" (Jaccard of n-gram sets) or "estimate" (signature agreement)
    # A bucket larger than this (boilerplate shared by thousands of texts) is verified as a star
    # around its first member instead of all pairs, to keep the work linear.
    max_bucket_pairs: int = 64

    def __post_init__(self) -> None:
        if self.num_perm <= 0 or self.bands <= 0 or self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a positive multiple of bands ({self.bands})")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.verify not in ("exact", "estimate"):
            raise ValueError("verify must be 'exact' or 'estimate'")
        if self.ngram_zh < 1 or self.ngram_en < 1:
            raise ValueError("n-gram sizes must be >= 1")

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def candidate_probability(self, j: float) -> float:
        """Chance that a pair with Jaccard j shares at least one band (the LSH S-curve)."""
        return 1.0 - (1.0 - j**self.rows) ** self.bands

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "MinHashConfig":
        params = dict(params or {})
        names = set(cls.__dataclass_fields__)
        unknown = set(params) - names
        if unknown:
            raise ValueError(f"unknown minhash settings {sorted(unknown)}; known: {', '.join(sorted(names))}")
        typed: dict[str, Any] = {}
        for k, v in params.items():
            default = getattr(cls, k, None) if k in cls.__dataclass_fields__ else None
            if isinstance(default, bool):
                typed[k] = v
            elif isinstance(default, int):
                typed[k] = int(v)
            elif isinstance(default, float):
                typed[k] = float(v)
            else:
                typed[k] = v
        return cls(**typed)


# Characters whose NFKC form changes a *token* (full-width letters/digits, compatibility
# ideographs, circled/parenthesised numbers, superscripts, ligatures, no-break spaces). Other
# compatibility characters (full-width punctuation above all, in nearly every Chinese text) are
# dropped by the tokeniser anyway, so normalising for them would be wasted time.
_NFKC_RELEVANT = re.compile("[\u00a0\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff"
                            "\u3200-\u33ff\uf900-\ufaff\ufb00-\ufb06\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9f]")


def _norm_tokens(text: str) -> list[str]:
    if _NFKC_RELEVANT.search(text) and not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _TOKEN_RE.findall(text.lower())


def rolling_gram_hashes(token_hashes: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every token n-gram, in text order (polynomial over the token hashes)."""
    a = np.asarray(token_hashes, dtype=np.uint64)
    if a.size < n or n < 1:
        return np.zeros(0, dtype=np.uint64)
    m = a.size - n + 1
    out = a[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            out = out * _P + a[j : j + m]
    return out


def token_hashes(texts: Sequence[str]) -> list[list[int]]:
    """Normalised CJK-aware tokens of each text, hashed to u64 by rensa (Rust, one call).

    Used by decontamination, which needs token positions to quote the matching span; the
    near-duplicate search uses the batch numpy path (`batch_tokens`)."""
    from rensa import RMinHash

    return RMinHash.hash_token_sets([_norm_tokens(t) for t in texts])


_CHAR_CLASS: np.ndarray | None = None  # BMP code point -> 0 separator, 1 word character, 2 CJK
_WORD_CHAR_RE = re.compile(f"[^\\W{_CJK}]")


def _char_classes() -> np.ndarray:
    global _CHAR_CLASS
    if _CHAR_CLASS is None:
        table = np.zeros(0x10000, dtype=np.uint8)
        for i in range(0x10000):
            if 0xD800 <= i <= 0xDFFF:
                continue
            c = chr(i)
            table[i] = 2 if _CJK_RE.match(c) else 1 if _WORD_CHAR_RE.match(c) else 0
        _CHAR_CLASS = table
    return _CHAR_CLASS


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def batch_tokens(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokenise and hash a batch of texts in numpy: (flat token hashes, tokens per text, is-CJK per text).

    Same tokens as textutil's regex (`_norm_tokens`; a test checks it), but with no Python object
    per token: the batch is lower-cased and encoded once, every code point is classed through a
    lookup table, and a token's hash is the sum of its characters' (code point, offset) mixes,
    reduced per token with `np.add.reduceat`. This is own code because tokenising + hashing in
    Python was three quarters of the near-duplicate search's run time.
    """
    norm = []
    for t in texts:
        t = t.replace("\x00", " ")
        if _NFKC_RELEVANT.search(t) and not unicodedata.is_normalized("NFKC", t):
            t = unicodedata.normalize("NFKC", t)
        norm.append(t)
    n_docs = len(norm)
    # NUL separates texts; lower() may change lengths, so boundaries are found after it
    cps = np.frombuffer("\x00".join(norm).lower().encode("utf-32-le"), dtype=np.uint32)
    bounds = np.concatenate(([0], np.flatnonzero(cps == 0) + 1))
    cls = np.zeros(cps.size, dtype=np.uint8)
    bmp = cps < 0x10000
    cls[bmp] = _char_classes()[cps[bmp]]
    if not bmp.all():
        for cp in np.unique(cps[~bmp]):
            c = chr(int(cp))
            cls[cps == cp] = 2 if _CJK_RE.match(c) else 1 if _WORD_CHAR_RE.match(c) else 0
    prev = np.concatenate(([0], cls[:-1]))
    start = (cls == 2) | ((cls == 1) & (prev != 1))
    tok_chars = np.flatnonzero(cls != 0)
    starts = np.flatnonzero(start)
    token_of = np.cumsum(start)[tok_chars] - 1
    offset = np.minimum(tok_chars - starts[token_of], (1 << 20) - 1).astype(np.uint64)
    mixed = _splitmix64((cps[tok_chars].astype(np.uint64) << np.uint64(20)) | offset)
    if starts.size:
        first_in_compressed = np.flatnonzero(start[tok_chars])
        tok_hash = np.add.reduceat(mixed, first_in_compressed)
    else:
        tok_hash = np.zeros(0, dtype=np.uint64)
    doc_of_token = np.searchsorted(bounds, starts, side="right") - 1
    counts = np.bincount(doc_of_token, minlength=n_docs).astype(np.int64)
    doc_len = np.diff(np.concatenate((bounds, [cps.size + 1]))) - 1
    cjk_chars = np.bincount(np.searchsorted(bounds, np.flatnonzero(cls == 2), side="right") - 1, minlength=n_docs)
    is_cjk = (doc_len > 0) & (cjk_chars >= 0.3 * doc_len)
    return tok_hash, counts, is_cjk


def shingle_sets(texts: Sequence[str], cfg: MinHashConfig) -> list[np.ndarray]:
    """For each text, the sorted unique n-gram hashes (uint64) its similarity is measured on."""
    grams, offsets, _ = _batch_grams(texts, cfg)
    return [np.unique(grams[offsets[i] : offsets[i + 1]]) if offsets[i + 1] > offsets[i] else grams[:0]
            for i in range(len(texts))]


def _positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.repeat(starts - offsets, counts) + np.arange(total)


def _batch_grams(texts: Sequence[str], cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat n-gram hashes of all texts, row offsets (N + 1), token counts); empty texts get no gram."""
    flat, lens, cjk = batch_tokens(texts)
    n_docs = len(texts)
    tok_starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
    want = np.where(cjk, cfg.ngram_zh, cfg.ngram_en)
    n_eff = np.minimum(want, lens)  # a text shorter than n is one gram of all its tokens
    counts = np.where(lens > 0, lens - n_eff + 1, 0)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    out = np.zeros(int(offsets[-1]), dtype=np.uint64)
    for n in np.unique(n_eff[lens > 0]):
        docs = np.flatnonzero((n_eff == n) & (lens > 0))
        grams = rolling_gram_hashes(flat, int(n))
        out[_positions(offsets[docs], counts[docs])] = grams[_positions(tok_starts[docs], counts[docs])]
    return out, offsets, lens


def sketch(texts: Sequence[str], cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (N, num_perm) uint32, n-gram counts (N,)) for a batch of texts.

    The fast path: tokens and n-grams of the whole batch are built in numpy (batch_tokens), and
    one rensa call sketches every text from the flat buffer. Equal to
    `signatures(shingle_sets(texts))` (MinHash ignores repeated grams); a test checks it.
    """
    from rensa import RMinHash

    n_docs = len(texts)
    if n_docs == 0:
        return np.zeros((0, cfg.num_perm), dtype=np.uint32), np.zeros(0, dtype=np.int64)
    grams, offsets, _ = _batch_grams(texts, cfg)
    counts = np.diff(offsets)
    empty = counts == 0
    if empty.any():  # rensa needs a non-empty row; these get an all-max signature below
        grams = np.insert(grams, offsets[:-1][empty], np.uint64(0))
        offsets = np.concatenate(([0], np.cumsum(np.where(empty, 1, counts))))
    mat = RMinHash.digest_matrix_from_flat_token_hashes(grams, offsets.astype(np.uint64), num_perm=cfg.num_perm,
                                                        seed=cfg.seed)
    sig = np.array(mat.to_rows(), dtype=np.uint32)
    sig[empty] = np.iinfo(np.uint32).max
    return sig, counts


def signatures(grams: Sequence[np.ndarray], cfg: MinHashConfig) -> np.ndarray:
    """(N, num_perm) uint32 MinHash signatures from n-gram hash sets (rensa R-MinHash)."""
    from rensa import RMinHash

    if not grams:
        return np.zeros((0, cfg.num_perm), dtype=np.uint32)
    # rensa rejects an empty set; an empty text gets an all-max signature and no candidates
    safe = [g if g.size else np.zeros(1, dtype=np.uint64) for g in grams]
    mat = RMinHash.digest_matrix_from_token_hash_sets(safe, num_perm=cfg.num_perm, seed=cfg.seed)
    sig = np.array(mat.to_rows(), dtype=np.uint32)
    for i, g in enumerate(grams):
        if g.size == 0:
            sig[i] = np.iinfo(np.uint32).max
    return sig


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def estimated_jaccard(sa: np.ndarray, sb: np.ndarray) -> float:
    return float(np.mean(sa == sb))


def candidate_pairs(sig: np.ndarray, cfg: MinHashConfig, active: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Index pairs (i < j) sharing at least one LSH band. `active`: boolean mask of rows to use."""
    n = sig.shape[0]
    idx = np.arange(n) if active is None else np.flatnonzero(active)
    if idx.size < 2:
        return set()
    s = sig[idx].astype(np.uint64)
    pairs: set[tuple[int, int]] = set()
    r = cfg.rows
    for b in range(cfg.bands):
        band = s[:, b * r : (b + 1) * r]
        key = band[:, 0].copy()
        with np.errstate(over="ignore"):
            for j in range(1, r):
                key = key * _P + band[:, j]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        # runs of equal keys = buckets
        starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
        ends = np.concatenate((starts[1:], [ks.size]))
        big = np.flatnonzero(ends - starts > 1)
        for k in big:
            members = idx[order[starts[k] : ends[k]]]
            members = np.sort(members)
            if members.size <= cfg.max_bucket_pairs:
                for x in range(members.size):
                    for y in range(x + 1, members.size):
                        pairs.add((int(members[x]), int(members[y])))
            else:
                first = int(members[0])
                pairs.update((first, int(m)) for m in members[1:])
    return pairs


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(g) for g in out.values() if len(g) > 1]


@dataclass
class Decision:
    """What happens to one duplicate-cluster member."""

    index: int
    cluster: int  # index of the cluster's kept member (a stable cluster id)
    keep: bool
    duplicate_of: int | None  # the kept member this one duplicates (None for the kept one)
    similarity: float  # best verified Jaccard to another cluster member
    stage: str  # "source" (within one source) or "merged" (across sources)


@dataclass
class DedupResult:
    decisions: dict[int, Decision] = field(default_factory=dict)  # only members of clusters
    pairs: dict[tuple[int, int], float] = field(default_factory=dict)  # verified pair -> Jaccard
    n_candidates: int = 0

    def clusters(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for d in self.decisions.values():
            out.setdefault(d.cluster, []).append(d.index)
        return {k: sorted(v) for k, v in out.items()}

    def dropped(self) -> set[int]:
        return {i for i, d in self.decisions.items() if not d.keep}


def choose_keeper(members: list[int], policy: str, lengths: Sequence[int] | None = None,
                  scores: dict[int, float] | None = None) -> int:
    """The member to keep. first: lowest index (input order = import order); longest: most
    n-grams, ties to the first; score: highest score (unscored members rank last), ties to first."""
    if policy == "first":
        return min(members)
    if policy == "longest":
        if lengths is None:
            raise ValueError("policy 'longest' needs lengths")
        return min(members, key=lambda i: (-lengths[i], i))
    if policy == "score":
        if scores is None:
            raise ValueError("policy 'score' needs scores from a scorer run (keep_scorer_run)")
        return min(members, key=lambda i: (-(scores.get(i) if scores.get(i) is not None else float("-inf")), i))
    raise ValueError(f"unknown keep policy {policy!r}; choose one of {', '.join(KEEP_POLICIES)}")


class NearDupFinder:
    """Holds signatures (and, for exact verification, a way to get n-gram sets) of N texts."""

    def __init__(self, cfg: MinHashConfig | None = None):
        self.cfg = cfg or MinHashConfig()

    def sketch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return sketch(texts, self.cfg)

    def verify(self, pairs: Iterable[tuple[int, int]], sig: np.ndarray, grams_of) -> dict[tuple[int, int], float]:
        """Verified pairs -> similarity. `grams_of(list_of_indices) -> {index: gram set}` is only
        called for exact verification, with the indices that occur in candidate pairs."""
        pairs = sorted(pairs)
        out: dict[tuple[int, int], float] = {}
        if self.cfg.verify == "estimate":
            for i, j in pairs:
                s = estimated_jaccard(sig[i], sig[j])
                if s >= self.cfg.threshold:
                    out[(i, j)] = s
            return out
        needed = sorted({x for p in pairs for x in p})
        grams: dict[int, np.ndarray] = {}
        for start in range(0, len(needed), 2048):  # bounded memory: fetch gram sets in chunks
            grams.update(grams_of(needed[start : start + 2048]))
        for i, j in pairs:
            s = exact_jaccard(grams[i], grams[j])
            if s >= self.cfg.threshold:
                out[(i, j)] = s
        return out

    def dedup(self, sig: np.ndarray, grams_of, *, sources: Sequence[str] | None = None, policy: str = "first",
              lengths: Sequence[int] | None = None, scores: dict[int, float] | None = None) -> DedupResult:
        """Cluster and choose keepers; with `sources`, first within each source, then across all
        survivors (SF-Med). Indices refer to rows of `sig`."""
        n = sig.shape[0]
        result = DedupResult()
        # empty texts (all-max signature) are nobody's duplicate; the rules filter handles them
        alive = ~np.all(sig == np.iinfo(np.uint32).max, axis=1) if n else np.ones(0, dtype=bool)
        stages: list[tuple[str, list[np.ndarray]]] = []
        if sources is not None:
            src = np.asarray(sources)
            stages.append(("source", [src == s for s in sorted(set(sources))]))
        stages.append(("merged", [np.ones(n, dtype=bool)]))
        if sources is not None and len(set(sources)) == 1:
            stages = stages[:1]
        uf = UnionFind()
        for stage, masks in stages:
            for mask in masks:
                cand = candidate_pairs(sig, self.cfg, active=mask & alive)
                result.n_candidates += len(cand)
                verified = self.verify(cand, sig, grams_of)
                result.pairs.update(verified)
                local = UnionFind()
                best: dict[int, float] = {}
                for (i, j), sim in verified.items():
                    local.union(i, j)
                    uf.union(i, j)
                    best[i] = max(best.get(i, 0.0), sim)
                    best[j] = max(best.get(j, 0.0), sim)
                for members in local.groups():
                    keeper = choose_keeper(members, policy, lengths, scores)
                    for m in members:
                        prev = result.decisions.get(m)
                        sim = max(best[m], prev.similarity if prev else 0.0)
                        if m != keeper:
                            alive[m] = False
                            result.decisions[m] = Decision(m, -1, False, keeper, sim, stage)
                        else:
                            result.decisions[m] = Decision(m, -1, True, None, sim, prev.stage if prev else stage)
        # one cluster id per connected component: its surviving member
        for members in uf.groups():
            kept = [m for m in members if alive[m]]
            cid = kept[0] if kept else members[0]
            for m in members:
                d = result.decisions.get(m)
                if d is None:  # linked only through a member dropped earlier
                    d = result.decisions[m] = Decision(m, cid, bool(alive[m]), None, 0.0, "merged")
                d.cluster = cid
        return result


SKETCH_BLOCK = 20_000


def find_near_duplicates(texts: Sequence[str], cfg: MinHashConfig | None = None, *, sources: Sequence[str] | None = None,
                         policy: str = "first", scores: dict[int, float] | None = None) -> DedupResult:
    """In-memory convenience: all texts at once (tests, benchmarks, small datasets)."""
    finder = NearDupFinder(cfg)
    # sketched in blocks: a block's n-gram buffer and rensa's rows (Python ints before numpy) are
    # temporary, and over the whole corpus at once they held ~20 KB a document
    parts = [finder.sketch(texts[i : i + SKETCH_BLOCK]) for i in range(0, len(texts), SKETCH_BLOCK)] or [finder.sketch([])]
    sig = np.concatenate([p[0] for p in parts])
    lengths = np.concatenate([p[1] for p in parts])
    del parts
    # exact verification only needs the gram sets of texts that have a candidate
    return finder.dedup(sig, lambda ids: dict(zip(ids, shingle_sets([texts[i] for i in ids], finder.cfg))),
                        sources=sources, policy=policy, lengths=lengths, scores=scores)
