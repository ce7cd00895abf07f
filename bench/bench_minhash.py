"""MinHash-LSH near-duplicate search: the shipped path (curation.pipeline.minhash: rensa
signatures + numpy banding + exact verification) against datasketch doing the same work on the
same corpus in the same run.

Same work = same normalised CJK-aware tokens, same 5-gram shingles, 128 permutations, 32 bands x
4 rows, exact-Jaccard verification of candidates at 0.8, union-find clusters. Both paths are timed
end to end from raw text (shingling included) and also sketch+LSH only (shingles prebuilt), on one
thread (RAYON_NUM_THREADS=1, so "per core" is honest), median of --repeat runs. Recall is measured
against exact Jaccard on planted near-duplicates.

    .venv/bin/python bench/bench_minhash.py [--docs 6000] [--repeat 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before rensa is imported: one core

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.pipeline.minhash import (  # noqa: E402
    MinHashConfig, UnionFind, _norm_tokens, find_near_duplicates, shingle_sets, signatures,
    candidate_pairs,
)
from curation.pipeline.textutil import is_cjk_text, ngrams  # noqa: E402

DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))
SOURCES = [("general_zh.jsonl", ["text"]), ("general_en.jsonl", ["text"]), ("huatuo26m_test_qa.jsonl", ["question", "answer"]),
           ("zh_med_qa_toyhom.jsonl", ["question", "answer"]), ("pubmedqa.jsonl", ["question", "explanation"])]


def corpus(n_docs: int, seed: int = 1):
    """Real shared-data texts plus planted near-duplicates at several mutation rates."""
    texts = []
    for name, fields in SOURCES:
        with open(DATA / name, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                texts.append("\n".join(str(r.get(f) or "") for f in fields))
    rng = random.Random(seed)
    rng.shuffle(texts)
    base = texts[: int(n_docs * 0.8)]
    planted = []
    while len(base) + len(planted) < n_docs:
        i = rng.randrange(len(base))
        rate = rng.choice([0.0, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3])
        planted.append((i, mutate(base[i], rate, rng)))
    texts = base + [t for _, t in planted]
    pairs = [(i, len(base) + k) for k, (i, _) in enumerate(planted)]
    return texts, pairs


def mutate(text: str, rate: float, rng: random.Random) -> str:
    cjk = is_cjk_text(text)
    units = list(text) if cjk else text.split()
    pool = list("的一是在不了有和人这中大为上个国") if cjk else "the of and to in a is was for on".split()
    out = []
    for u in units:
        r = rng.random()
        if r < rate / 2:
            out.append(rng.choice(pool))
        elif r >= rate:
            out.append(u)
    return ("" if cjk else " ").join(out)


def string_shingles(texts, cfg):
    """The same shingles as the shipped path, as Python string sets (datasketch's input)."""
    out = []
    for t in texts:
        n = cfg.ngram_zh if is_cjk_text(t) else cfg.ngram_en
        out.append(set(ngrams(_norm_tokens(t), n)))
    return out


def datasketch_run(texts, cfg, shingles=None):
    from datasketch import MinHash, MinHashLSH

    sh = shingles if shingles is not None else string_shingles(texts, cfg)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
    mhs = []
    for i, s in enumerate(sh):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([g.encode("utf-8") for g in s])
        mhs.append(m)
        if s:
            lsh.insert(i, m)
    cand = set()
    for i, m in enumerate(mhs):
        if sh[i]:
            for j in lsh.query(m):
                if j != i:
                    cand.add((min(i, j), max(i, j)))
    return sh, cand


def datasketch_full(texts, cfg):
    sh, cand = datasketch_run(texts, cfg)
    pairs = {}
    for i, j in cand:
        inter = len(sh[i] & sh[j])
        jac = inter / (len(sh[i]) + len(sh[j]) - inter)
        if jac >= cfg.threshold:
            pairs[(i, j)] = jac
    uf = UnionFind()
    for i, j in pairs:
        uf.union(i, j)
    return pairs, uf.groups()


def ours_sketch_lsh(grams, cfg):
    sig = signatures(grams, cfg)
    return candidate_pairs(sig, cfg)


def timed(fn, repeat):
    """Median CPU seconds of this process (one thread, so = one core's time; unlike wall time it
    does not grow when other jobs share the machine), and the median wall seconds, printed too."""
    cpu, wall, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    WALL.append(statistics.median(wall))
    return statistics.median(cpu), out


WALL: list[float] = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = MinHashConfig()
    texts, planted = corpus(args.docs)
    print(f"corpus: {len(texts)} docs ({sum(map(len, texts)) / 1e6:.1f} M chars), {len(planted)} planted near-duplicates; "
          f"num_perm={cfg.num_perm} bands={cfg.bands} rows={cfg.rows} threshold={cfg.threshold}; "
          f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}")

    t_ours, res = timed(lambda: find_near_duplicates(texts, cfg), args.repeat)
    t_ds, (ds_pairs, ds_groups) = timed(lambda: datasketch_full(texts, cfg), args.repeat)

    # sketch + LSH only, shingles prebuilt (the library part of the work)
    grams = shingle_sets(texts, cfg)
    str_sh = string_shingles(texts, cfg)
    t_ours_core, cand_ours = timed(lambda: ours_sketch_lsh(grams, cfg), args.repeat)
    t_ds_core, (_, cand_ds) = timed(lambda: datasketch_run(texts, cfg, str_sh), max(1, args.repeat - 1))

    # recall against exact Jaccard on the planted pairs
    def exact(i, j):
        a, b = str_sh[i], str_sh[j]
        return len(a & b) / len(a | b) if a | b else 1.0

    truth = {p: exact(*p) for p in planted}
    high = [p for p, jv in truth.items() if jv >= 0.8]
    recall_ours = sum(p in res.pairs for p in high) / max(len(high), 1)
    recall_ds = sum(p in ds_pairs for p in high) / max(len(high), 1)
    fp_ours = sum(exact(i, j) < 0.5 for i, j in res.pairs)
    fp_ds = sum(exact(i, j) < 0.5 for i, j in ds_pairs)

    n = len(texts)
    print(f"\nCPU seconds (one thread), median of {args.repeat}; wall seconds in brackets")
    print("end to end (shingle + sketch + LSH + verify + cluster):")
    print(f"  shipped (rensa + numpy bands): {t_ours:7.2f} s [{WALL[0]:6.2f}]  {n / t_ours:9.0f} docs/s per core")
    print(f"  datasketch                   : {t_ds:7.2f} s [{WALL[1]:6.2f}]  {n / t_ds:9.0f} docs/s per core")
    print(f"  ratio shipped / datasketch   : {t_ds / t_ours:7.1f}x faster")
    print("sketch + LSH candidates only (shingles prebuilt):")
    print(f"  shipped   : {t_ours_core:7.3f} s [{WALL[2]:6.2f}]  {n / t_ours_core:9.0f} docs/s   candidates {len(cand_ours)}")
    print(f"  datasketch: {t_ds_core:7.3f} s [{WALL[3]:6.2f}]  {n / t_ds_core:9.0f} docs/s   candidates {len(cand_ds)}")
    print(f"  ratio     : {t_ds_core / t_ours_core:7.1f}x faster")
    print(f"\nplanted pairs with exact J >= 0.8: {len(high)} (of {len(planted)}; below 0.5: "
          f"{sum(jv < 0.5 for jv in truth.values())})")
    print(f"  recall   shipped {recall_ours:.3f}   datasketch {recall_ds:.3f}")
    print(f"  reported pairs   shipped {len(res.pairs)}   datasketch {len(ds_pairs)}; "
          f"with exact J < 0.5: shipped {fp_ours}   datasketch {fp_ds}")
    print(f"  clusters shipped {len(res.clusters())}   datasketch {len(ds_groups)}")


if __name__ == "__main__":
    main()
