"""DataRater scoring throughput vs a bare sentence-transformers `encode` of the same texts.

    .venv/bin/python bench/bench_datarater.py                       # a small local encoder (CPU)
    .venv/bin/python bench/bench_datarater.py --encoder /path/to/bge-m3 --n 2000

A DataRater head (embedding encoder + Ridge) is trained on a few labelled documents, then the
scorer (`RaterScorer.score_batch`, what the scoring job calls) runs over N documents from the shared
data; the reference is `SentenceTransformer.encode` of exactly the texts the scorer reads, with the
same batch size. Prints medians over --repeats and the throughput ratio (goal >= 0.9x), plus the
hashed char-n-gram path for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def documents(n: int):
    from curation.pipeline.base import RecordView

    rows = []
    for name, field in (("huatuo26m_test_qa.jsonl", "answer"), ("general_zh.jsonl", "text"), ("general_en.jsonl", "text")):
        with (DATA / name).open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= n // 3 + 1:
                    break
                r = json.loads(line)
                rows.append(RecordView(id=len(rows), kind="document", lang=r["lang"], text=r[field],
                                       content={"text": r[field], "title": r.get("title", "")}))
    return rows[:n]


def timed(fn):
    """(result, wall seconds, CPU seconds of this process): on a shared, overloaded machine the CPU
    time is the steadier figure, since waiting for a core does not count."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", help="sentence-transformers directory (default: build a small BERT here)")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from curation.pipeline.rater import REGRESS, EncoderSpec, RaterScorer, record_text, train_rater
    from medstudio.inference.embeddings import SentenceTransformerEmbedder

    path = args.encoder
    if not path:
        from tests.fakes.tiny_models import build_tiny_encoder

        path = build_tiny_encoder(Path(tempfile.mkdtemp()) / "enc", seed=0, vocab_size=2000, hidden_size=128)
    embedder = SentenceTransformerEmbedder(path, batch_size=args.batch_size)
    bare = embedder.model  # the very same SentenceTransformer object, called directly
    records = documents(args.n)
    texts = [record_text(r) for r in records]
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 64).tolist()
    model, _ = train_rater(texts[:64], labels, task=REGRESS, embedder=embedder,
                           encoder=EncoderSpec(kind="embedding", model_ref=path))
    scorer = RaterScorer(model, name="datarater", version="bench")
    hashed_model, _ = train_rater(texts[:64], labels, task=REGRESS)
    hashed = RaterScorer(hashed_model, name="datarater", version="bench")
    scorer.score_batch(records[:64])  # warm-up
    bare.encode(texts[:64], batch_size=args.batch_size)

    # Interleaved, rotated repeats, so a change in machine load hits every method alike.
    methods = {
        "bare encode": lambda: bare.encode(texts, batch_size=args.batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False),
        "datarater (embedding)": lambda: scorer.score_batch(records),
        "datarater (hashed)": lambda: hashed.score_batch(records),
    }
    results: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    outputs = {}
    names = list(methods)
    for r in range(args.repeats):
        # Rotate the order each repeat so no method always runs first (or right after another).
        for name in names[r % len(names):] + names[:r % len(names)]:
            outputs[name], wall, used = timed(methods[name])
            results[name].append(wall)
            cpu[name].append(used)
    out = outputs["datarater (embedding)"]
    assert all(r.value is not None for r in out)
    n_chars = sum(len(t) for t in texts)
    print(f"encoder: {path} ({sum(p.numel() for p in bare.parameters()) / 1e6:.1f}M params, "
          f"{bare.device}, {torch.get_num_threads()} threads, max_seq_length {bare.max_seq_length})")
    print(f"{len(texts)} documents, {n_chars:,} characters, batch size {args.batch_size}, {args.repeats} repeats")
    med = {k: statistics.median(v) for k, v in results.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    for k, v in results.items():
        print(f"{k:24s}: wall median {med[k]:.3f} s ({len(texts) / med[k]:,.0f} docs/s), CPU median {cmed[k]:.3f} s; "
              f"wall runs {[round(x, 3) for x in v]}")
    emb = "datarater (embedding)"
    print(f"throughput ratio datarater(embedding) / bare encode: wall {med['bare encode'] / med[emb]:.3f}x, "
          f"CPU {cmed['bare encode'] / cmed[emb]:.3f}x (goal >= 0.9x)")
    print(f"hashed path vs bare encode: wall {med['bare encode'] / med['datarater (hashed)']:.1f}x")


if __name__ == "__main__":
    main()
