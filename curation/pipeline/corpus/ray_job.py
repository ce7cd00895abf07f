"""The Ray job a corpus run submits (entrypoint: `python -m curation.pipeline.corpus.ray_job SPEC_B64`).

It lists the corpus's shards, skips those whose score file already exists (committed atomically by an
earlier attempt), and scores the rest as Ray tasks, at most `workers` at a time, one CPU each. It
prints one `MEDSTUDIO-EVENT {json}` line per shard, which the MedStudio job mirrors as its log.
No Django: the cluster needs only this package and its ML-core dependencies.
"""
from __future__ import annotations

import base64
import json
import sys
import time


def encode_spec(spec: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(spec).encode()).decode()


def decode_spec(raw: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(raw.encode()).decode())


def emit(event: str, **data) -> None:
    print("MEDSTUDIO-EVENT " + json.dumps({"event": event, **data}), flush=True)


def plan(spec: dict) -> tuple[list[dict], list[str]]:
    """(shards still to score, keys already done)."""
    import pyarrow.fs as pafs

    from curation.pipeline.corpus.score import score_path, shard_key
    from curation.pipeline.corpus.shards import filesystem, list_shards

    fs, found = list_shards(spec["uri"])
    _, root = filesystem(spec["uri"])
    out_fs, out_dir = filesystem(spec["out_dir"])
    out_fs.create_dir(out_dir, recursive=True)
    only = set(spec.get("only") or [])
    todo, done = [], []
    for path, fmt, _size in found:
        key = shard_key(root, path)
        if only and key not in only:
            continue
        if out_fs.get_file_info(score_path(out_dir, key)).type != pafs.FileType.NotFound:
            done.append(key)
        else:
            todo.append({"path": path, "fmt": fmt, "key": key})
    return todo, done


def _score_one(spec: dict, shard: dict, *shared_objs) -> dict:
    from curation.pipeline.corpus.score import score_shard
    from curation.pipeline.corpus.shards import filesystem

    fs, _ = filesystem(spec["uri"])
    out_fs, out_dir = filesystem(spec["out_dir"])
    if type(out_fs) is not type(fs):  # score files on another store than the shards
        raise NotImplementedError("score files must live on the same filesystem as the shards")
    return score_shard(fs=fs, path=shard["path"], fmt=shard["fmt"], key=shard["key"], out_dir=out_dir,
                       mapping=spec.get("mapping") or {}, scorers=spec["scorers"], kind=spec.get("kind", "document"),
                       shared=dict(zip(spec.get("shared") or [], shared_objs)))


def run(spec: dict) -> dict:
    import ray

    from curation.pipeline.corpus.score import _write_json, failed_path
    from curation.pipeline.corpus.shards import filesystem

    if not ray.is_initialized():
        ray.init(address=spec.get("ray_address") or "auto", log_to_driver=True)
    todo, done = plan(spec)
    emit("plan", todo=len(todo), skipped=len(done), skipped_keys=done)
    task = ray.remote(num_cpus=1, max_retries=1)(_score_one)
    # What every task needs and is costly to build (decontam's benchmark n-gram index): loaded once
    # here and put in Ray's object store; each task gets it by reference (one copy per node).
    from curation.pipeline.corpus.score import load_index

    spec["shared"] = [n for n in ("decontam",) if n in spec["scorers"]]
    shared_refs = [ray.put(load_index(spec["scorers"][n]["index_path"])) for n in spec["shared"]]
    workers = max(1, int(spec.get("workers") or 1))
    pending: dict = {}
    queue = list(todo)
    results = []
    t0 = time.monotonic()
    while queue or pending:
        while queue and len(pending) < workers:
            shard = queue.pop(0)
            pending[task.remote(spec, shard, *shared_refs)] = shard
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            shard = pending.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as exc:  # a task that crashed outside the reader (worker died, OOM...)
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                out_fs, out_dir = filesystem(spec["out_dir"])
                _write_json(out_fs, failed_path(out_dir, shard["key"]), {"shard": shard["key"], "reason": reason})
                res = {"key": shard["key"], "status": "failed", "reason": reason, "docs": 0}
            results.append(res)
            emit("shard", **res, elapsed=time.monotonic() - t0)
    failed = [r for r in results if r["status"] == "failed"]
    emit("end", done=len(results) - len(failed), failed=len(failed), skipped=len(done))
    return {"results": results, "skipped": done}


def main(argv: list[str]) -> int:
    run(decode_spec(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
