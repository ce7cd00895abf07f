"""Score one shard with the existing per-record blocks and commit its score file atomically.

Score file (Parquet, one row per document): doc_id, shard, lang, source, n_chars, n_tokens (CJK-aware,
curation/pipeline/textutil.py), and per scorer S
`S_value` (float), `S_keep` (bool), `S_reason` (str); `keep` is every scorer's keep, `reason` the
first scorer's drop reason. It is written to a temporary name and renamed, so a score file that
exists is complete: a resumed job skips its shard. A shard that cannot be read gets a
`<key>.failed.json` marker (reason) instead, removed when a retry succeeds.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

from curation.pipeline.base import RecordView
from curation.pipeline.corpus.shards import Mapping, ShardError, iter_docs

# Scored per shard by the workers, except `minhash`: it compares documents across shards, so the run
# adds it afterwards (curation/pipeline/corpus/minhash_pass.py) from the staged dedup's decisions.
SCORERS = ("rules", "pii", "decontam", "domain", "datarater", "deita", "confilter", "minhash")
# Scorers whose params the MedStudio side resolves before the run (a benchmark index, a model
# directory); the worker receives them as `index_path` / `model_path`.
RESOLVED = {"decontam": "index_path", "domain": "model_path", "datarater": "model_path"}

_MODELS: dict[str, Any] = {}  # model directory -> loaded RaterModel: once per worker process


def load_index(path: str):
    """The pickled benchmark n-gram index the driver built (decontam)."""
    import pickle

    from curation.pipeline.corpus.shards import filesystem

    fs, p = filesystem(path)
    with fs.open_input_stream(p) as fh:
        return pickle.loads(fh.read())  # written by this app's own job (never user input)


def write_index(index, path: str) -> None:
    import pickle

    from curation.pipeline.corpus.shards import filesystem

    fs, p = filesystem(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    blob = pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL)

    def w(tmp):
        with fs.open_output_stream(tmp) as fh:
            fh.write(blob)

    _write_atomic(fs, p, w)


def _rater(path: str):
    from curation.pipeline.rater import RaterModel

    if path not in _MODELS:
        _MODELS[path] = RaterModel.load(path)
    return _MODELS[path]


def make_scorer(name: str, params: dict | None = None, shared: Any = None):
    """The block for one scorer. Model scorers need their resolved params (model_path / index_path);
    `shared` is an object the driver shipped once (decontam: its BenchmarkIndex, via ray.put)."""
    params = dict(params or {})
    if name == "rules":
        from curation.pipeline.rules import RuleConfig, RulesScorer

        return RulesScorer(RuleConfig.from_params(params))
    if name == "pii":
        from curation.pipeline.pii import PiiScorer

        return PiiScorer(**params)
    if name == "decontam":
        from curation.pipeline.decontam import DecontamScorer

        if shared is None and not params.get("index_path"):
            raise ValueError("decontam needs its benchmark index (index_path), built by the corpus job")
        return DecontamScorer(shared if shared is not None else load_index(params["index_path"]))
    if name in ("domain", "datarater"):
        from curation.pipeline.rater import FORMAT_VERSION, RaterScorer

        if not params.get("model_path"):
            raise ValueError(f"{name} needs a trained model (model_path), resolved by the corpus job")
        return RaterScorer(_rater(params["model_path"]), name=name,
                           version=f"{FORMAT_VERSION}.m{params.get('model_version', '')}",
                           target_label=str(params.get("target_label") or "medical"))
    if name in ("confilter", "deita"):
        # Dialogue corpora (a document is unscored: value None, kept). The model directories were
        # resolved at launch (MEDSTUDIO_SCORING_LM, MEDSTUDIO_DEITA_*_MODEL); load_causal_lm caches
        # each loaded model per worker process.
        from medstudio.inference.lm import load_causal_lm

        backend = str(params.get("backend") or "transformers")
        if name == "confilter":
            from curation.pipeline.confilter import ConFilter

            return ConFilter(load_causal_lm(params["model"], setting="MEDSTUDIO_SCORING_LM", backend=backend),
                             max_length=int(params.get("max_length") or 0) or None)
        from curation.pipeline import deita

        n = int(params.get("max_length") or 2048)
        return deita.Deita(
            deita.LMDigitScorer(load_causal_lm(params["complexity_model"], setting="MEDSTUDIO_DEITA_COMPLEXITY_MODEL",
                                               backend=backend), deita.COMPLEXITY_TEMPLATE, max_length=n),
            deita.LMDigitScorer(load_causal_lm(params["quality_model"], setting="MEDSTUDIO_DEITA_QUALITY_MODEL",
                                               backend=backend), deita.QUALITY_TEMPLATE, max_length=n))
    raise ValueError(f"unknown corpus scorer {name!r}; known: {', '.join(SCORERS)}")


def overall_reason(name: str, reason: str | None) -> str:
    """The score file's `reason` (the first scorer that drops a document): "scorer:reason"."""
    return f"{name}:{reason}" if reason and not reason.startswith(name) else (reason or name)


def shard_key(root: str, path: str) -> str:
    rel = path[len(root):].lstrip("/") if path.startswith(root) else ""
    return (rel or path.rsplit("/", 1)[-1]).replace("/", "__")


def score_path(out_dir: str, key: str) -> str:
    return f"{out_dir.rstrip('/')}/{key}.scores.parquet"


def failed_path(out_dir: str, key: str) -> str:
    return f"{out_dir.rstrip('/')}/{key}.failed.json"


def _write_atomic(fs, final: str, write) -> None:
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    try:
        write(tmp)
        fs.move(tmp, final)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except Exception:
            pass
        raise


def _write_json(fs, final: str, data: dict) -> None:
    def w(tmp):
        with fs.open_output_stream(tmp) as fh:
            fh.write(json.dumps(data).encode())

    _write_atomic(fs, final, w)


def _delete_if_exists(fs, path: str) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def build_blocks(scorers: dict[str, dict], shared: dict | None = None) -> dict[str, Any]:
    """Every scorer's block, built once (a Ray actor keeps them for all the shards it scores)."""
    return {name: make_scorer(name, p, (shared or {}).get(name)) for name, p in scorers.items()}


def _pii_from_rules(blocks: dict[str, Any]) -> bool:
    """True when the `pii` scorer's verdict can be read off the `rules` scorer's own PII rule.

    The rules scorer runs pii.detect on every text (its `pii` rule); the pii scorer would run the
    same detection again, which was ~10% of a rules + pii shard's time. With the same PII types and
    the phone region the rule uses (CN), both see the same spans, so the counts the rule leaves in
    its measures give the pii scorer's value, keep and reason exactly.
    """
    if "rules" not in blocks or "pii" not in blocks:
        return False
    cfg, pii = blocks["rules"].filter.cfg, blocks["pii"]
    return ("pii" not in cfg.disabled and tuple(cfg.pii_types) == tuple(pii.types) and pii.phone_region == "CN")


def _pii_result(counts: dict[str, int], scorer):
    """PiiScorer.score_batch's verdict from the span counts per type (see curation/pipeline/pii.py)."""
    from curation.pipeline.base import ScoreResult

    n = sum(counts.values())
    keep = n <= scorer.max_hits
    return ScoreResult(value=float(n), keep=keep, reason="" if keep else "pii:" + max(counts, key=counts.get),
                       detail={"counts": counts})


def score_shard(*, fs, path: str, fmt: str, key: str, out_dir: str, mapping: dict, scorers: dict[str, dict],
                kind: str = "document", batch_size: int = 500, shared: dict | None = None,
                blocks: dict[str, Any] | None = None, out_fs=None) -> dict[str, Any]:
    """Score every document of one shard; returns {"key", "status": done|failed, "docs", "seconds", ...}.

    `fs` reads the shard; `out_fs` (default: `fs`) holds `out_dir`, where the score file goes (a
    corpus in a bucket may keep its scores on local disk, or the other way round).
    `blocks`: the scorers' blocks already built (build_blocks), else they are built here."""
    out_fs = out_fs or fs
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.monotonic()
    m = Mapping.from_dict(mapping)
    if blocks is None:
        blocks = build_blocks(scorers, shared)
    from curation.pipeline.textutil import count_tokens

    pii_shared = _pii_from_rules(blocks)
    # rules first: the pii scorer may read its verdict off the rules' measures
    order = sorted(blocks, key=lambda n: n != "rules")
    cols: dict[str, list] = {"doc_id": [], "shard": [], "lang": [], "source": [], "n_chars": [], "n_tokens": []}
    for name in blocks:
        cols.update({f"{name}_value": [], f"{name}_keep": [], f"{name}_reason": []})
    keep_all, reason_all = [], []
    try:
        for batch in iter_docs(fs, path, fmt, m, batch_size=batch_size):
            views = [RecordView(id=i, kind="dialogue", lang=d["lang"], text=d["text"], content={"turns": d["turns"]},
                                source=d["source"]) if "turns" in d else
                     RecordView(id=i, kind=kind, lang=d["lang"], text=d["text"], content={"text": d["text"]},
                                source=d["source"]) for i, d in enumerate(batch)]
            results = {}
            for name in order:
                if name == "pii" and pii_shared:
                    results[name] = [_pii_result(r.detail["measures"]["pii"], blocks[name]) for r in results["rules"]]
                else:
                    results[name] = blocks[name].score_batch(views)
            # the rules count tokens with the same CJK-aware pattern as count_tokens: not twice
            n_tokens = ([r.detail["measures"]["n_tokens"] for r in results["rules"]] if "rules" in results
                        else [count_tokens(d["text"]) for d in batch])
            for i, d in enumerate(batch):
                cols["doc_id"].append(d["id"])
                cols["shard"].append(key)
                cols["lang"].append(d["lang"])
                cols["source"].append(d["source"])
                cols["n_chars"].append(len(d["text"]))
                cols["n_tokens"].append(n_tokens[i])
                keep, reason = True, ""
                for name in blocks:
                    r = results[name][i]
                    k = r.keep if r.keep is not None else True
                    cols[f"{name}_value"].append(r.value)
                    cols[f"{name}_keep"].append(k)
                    cols[f"{name}_reason"].append(r.reason or "")
                    if not k and keep:
                        keep, reason = False, overall_reason(name, r.reason)
                keep_all.append(keep)
                reason_all.append(reason)
    except ShardError as exc:
        _write_json(out_fs, failed_path(out_dir, key), {"shard": key, "path": path, "reason": str(exc)})
        return {"key": key, "status": "failed", "reason": str(exc), "docs": 0, "seconds": time.monotonic() - t0}
    cols["keep"], cols["reason"] = keep_all, reason_all
    types = {"doc_id": pa.string(), "shard": pa.string(), "lang": pa.string(), "source": pa.string(),
             "n_chars": pa.int64(), "n_tokens": pa.int64(), "keep": pa.bool_(), "reason": pa.string()}
    for name in blocks:
        types.update({f"{name}_value": pa.float64(), f"{name}_keep": pa.bool_(), f"{name}_reason": pa.string()})
    table = pa.table({c: pa.array(v, type=types[c]) for c, v in cols.items()},
                     metadata={"medstudio.scorers": json.dumps({n: {k: v for k, v in p.items() if k not in ("index_path", "model_path")}
                                                                for n, p in scorers.items()}), "medstudio.source_path": path})

    def w(tmp):
        with out_fs.open_output_stream(tmp) as fh:
            pq.write_table(table, fh)

    _write_atomic(out_fs, score_path(out_dir, key), w)
    _delete_if_exists(out_fs, failed_path(out_dir, key))
    return {"key": key, "status": "done", "docs": table.num_rows, "kept": sum(keep_all),
            "seconds": time.monotonic() - t0}
