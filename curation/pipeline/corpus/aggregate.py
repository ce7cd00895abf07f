"""Aggregates of a corpus run, read back from its score files (what the database keeps: a few KB)."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

HIST_BINS = 20


def _hist(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"edges": [], "counts": [], "n": 0}
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return {"edges": [lo, hi], "counts": [len(vals)], "n": len(vals)}
    width = (hi - lo) / HIST_BINS
    counts = [0] * HIST_BINS
    for v in vals:
        counts[min(HIST_BINS - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + i * width for i in range(HIST_BINS + 1)], "counts": counts, "n": len(vals)}


def aggregate(out_dir: str, scorers: list[str]) -> dict:
    """{"shards", "documents", "kept", "scorers": {S: {documents, kept, dropped, reasons, histogram}},
    "by_source": {src: {documents, kept}}, "by_lang": {...}, "reasons": {...}, "failed": [...]}"""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from curation.pipeline.corpus.shards import filesystem

    fs, root = filesystem(out_dir)
    files = []
    failed = []
    if fs.get_file_info(root).type != pafs.FileType.NotFound:
        for i in fs.get_file_info(pafs.FileSelector(root)):
            if i.path.endswith(".scores.parquet"):
                files.append(i.path)
            elif i.path.endswith(".failed.json"):
                with fs.open_input_stream(i.path) as fh:
                    failed.append(json.loads(fh.read().decode()))
    per = {s: {"documents": 0, "kept": 0, "dropped": 0, "reasons": Counter(), "_values": []} for s in scorers}
    by_source: dict = defaultdict(lambda: {"documents": 0, "kept": 0})
    by_lang: dict = defaultdict(lambda: {"documents": 0, "kept": 0})
    reasons: Counter = Counter()
    total = kept = 0
    for path in sorted(files):
        with fs.open_input_file(path) as fh:
            t = pq.read_table(fh)
        cols = t.to_pydict()
        n = t.num_rows
        total += n
        for i in range(n):
            k = cols["keep"][i]
            kept += k
            by_source[cols["source"][i]]["documents"] += 1
            by_source[cols["source"][i]]["kept"] += k
            by_lang[cols["lang"][i]]["documents"] += 1
            by_lang[cols["lang"][i]]["kept"] += k
            if not k:
                reasons[cols["reason"][i]] += 1
        for s in scorers:
            if f"{s}_keep" not in cols:
                continue
            p = per[s]
            p["documents"] += n
            ks = cols[f"{s}_keep"]
            nk = sum(ks)
            p["kept"] += nk
            p["dropped"] += n - nk
            p["reasons"].update(r for r, kk in zip(cols[f"{s}_reason"], ks) if not kk)
            p["_values"].extend(cols[f"{s}_value"])
    out_scorers = {}
    for s, p in per.items():
        out_scorers[s] = {"documents": p["documents"], "kept": p["kept"], "dropped": p["dropped"],
                          "reasons": dict(p["reasons"].most_common()), "histogram": _hist(p["_values"])}
    return {"shards": len(files), "documents": total, "kept": kept, "dropped": total - kept,
            "scorers": out_scorers, "by_source": dict(by_source), "by_lang": dict(by_lang),
            "reasons": dict(reasons.most_common()), "failed": sorted(failed, key=lambda f: f["shard"])}
