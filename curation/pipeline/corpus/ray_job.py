"""The Ray job a corpus run submits (entrypoint: `python -m curation.pipeline.corpus.ray_job SPEC_B64`).

It lists the corpus's shards, skips those whose score file already exists (committed atomically by an
earlier attempt), and scores the rest on `workers` Ray actors, one CPU each. Each actor builds the
scorers' blocks once, loading their models (domain classifier, DataRater, the ConFilter / Deita
LMs) once per worker, and then scores one whole shard per call. It prints one
`MEDSTUDIO-EVENT {json}` line per shard, which the MedStudio job mirrors as its log.

Why Ray core actors and not Ray Data's `map_batches(..., compute=ActorPoolStrategy)`: the unit of
work, commit and resume is the shard (one score file per shard, written atomically; a failed shard
is marked with its reason and the others go on). Ray Data's blocks do not follow file boundaries,
so a per-shard commit would need a second pass to regroup rows; profiling showed no Ray overhead to
win back (the task time was 99% of the job's wall time; the scorers' own Python is the cost).
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


class ShardScorer:
    """One per worker: the scorers' blocks, built at its first shard and kept for the next ones."""

    def __init__(self, spec: dict, *shared_objs):
        self.spec, self.shared = spec, dict(zip(spec.get("shared") or [], shared_objs))
        self.blocks = None
        self.built = 0  # how many times the blocks (and their models) were built: 1 per worker

    def score(self, shard: dict) -> dict:
        import os
        import socket

        from curation.pipeline.corpus.score import build_blocks, score_shard
        from curation.pipeline.corpus.shards import filesystem

        spec = self.spec
        fs, _ = filesystem(spec["uri"])
        out_fs, out_dir = filesystem(spec["out_dir"])
        if self.blocks is None:  # built here, not in __init__: a model that fails to load fails the shard with its reason
            self.blocks = build_blocks(spec["scorers"], self.shared)
            self.built += 1
        res = score_shard(fs=fs, out_fs=out_fs, path=shard["path"], fmt=shard["fmt"], key=shard["key"], out_dir=out_dir,
                          mapping=spec.get("mapping") or {}, scorers=spec["scorers"], kind=spec.get("kind", "document"),
                          blocks=self.blocks)
        return {**res, "worker": f"{socket.gethostname()}:{os.getpid()}", "blocks_built": self.built}


def run(spec: dict) -> dict:
    import ray

    from curation.pipeline.corpus.score import _write_json, failed_path
    from curation.pipeline.corpus.shards import filesystem

    if not ray.is_initialized():
        ray.init(address=spec.get("ray_address") or "auto", log_to_driver=True)
    full = spec
    # minhash compares documents across shards: it runs after the per-shard scorers (minhash_pass.py)
    spec = {**spec, "scorers": {k: v for k, v in spec["scorers"].items() if k != "minhash"}}
    todo, done = plan(spec)
    emit("plan", todo=len(todo), skipped=len(done), skipped_keys=done)
    # What every worker needs and is costly to build (decontam's benchmark n-gram index): loaded once
    # here and put in Ray's object store; each actor gets it by reference (one copy per node).
    from curation.pipeline.corpus.score import load_index

    spec["shared"] = [n for n in ("decontam",) if n in spec["scorers"]]
    shared_refs = [ray.put(load_index(spec["scorers"][n]["index_path"])) for n in spec["shared"]]
    workers = max(1, int(spec.get("workers") or 1))
    # a worker that dies (OOM, segfault) is restarted once and its shard retried once, as a task was
    actor_cls = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(ShardScorer)
    idle = [actor_cls.remote(spec, *shared_refs) for _ in range(min(workers, len(todo)))]
    actors = list(idle)
    pending: dict = {}
    queue = list(todo)
    results = []
    t0 = time.monotonic()
    try:
        while queue or pending:
            while queue and idle:
                shard, actor = queue.pop(0), idle.pop()
                pending[actor.score.remote(shard)] = (shard, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                shard, actor = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as exc:  # a shard that crashed outside the reader (model load, worker died, OOM...)
                    if isinstance(exc, ray.exceptions.RayActorError):  # died past its restart: a fresh worker
                        ray.kill(actor, no_restart=True)
                        actor = actor_cls.remote(spec, *shared_refs)
                        actors.append(actor)
                    # a task's own exception, not Ray's wrapper (whose first line names only the actor)
                    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
                    cause = cause or exc
                    reason = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                    out_fs, out_dir = filesystem(spec["out_dir"])
                    _write_json(out_fs, failed_path(out_dir, shard["key"]), {"shard": shard["key"], "reason": reason})
                    res = {"key": shard["key"], "status": "failed", "reason": reason, "docs": 0}
                idle.append(actor)
                results.append(res)
                emit("shard", **res, elapsed=time.monotonic() - t0)
    finally:
        for actor in actors:  # their CPUs go back to the cluster now, not when the driver exits
            ray.kill(actor)
    failed = [r for r in results if r["status"] == "failed"]
    minhash = None
    if "minhash" in full["scorers"]:
        from curation.pipeline.corpus.minhash_pass import run_minhash, scored_keys

        # every shard with a score file, also those a retry of failed shards (`only`) did not redo
        minhash = run_minhash(full, scored_keys(full["out_dir"]), log=lambda line: emit("log", line=line))
        emit("minhash", **minhash)
    emit("end", done=len(results) - len(failed), failed=len(failed), skipped=len(done))
    return {"results": results, "skipped": done, "minhash": minhash}


def main(argv: list[str]) -> int:
    run(decode_spec(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
