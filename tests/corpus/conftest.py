"""One real local Ray (head + dashboard, 2 CPUs) for the whole test session; shut down at the end."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import SHARED_DATA


# Credentials for the S3 emulator (moto's server): any key works there, and none reaches AWS.
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "medstudio-test", "AWS_SECRET_ACCESS_KEY": "medstudio-test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 server on 127.0.0.1 (moto's, in a thread of this process) for the whole session,
    named by AWS_ENDPOINT_URL as a MinIO or Ceph site would name its own: pyarrow.fs reads that
    variable, so `s3://bucket/prefix` URIs go there in this process and in the Ray head's."""
    import logging
    import os

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**S3_TEST_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="session")
def ray_address(s3_endpoint):
    """A local Ray head (2 CPUs, with the dashboard that serves job submission) owned by this test
    session: `ray start --head --block` in its own process group, ended by that group's id at the
    end (never `ray stop`, which would also end another session's Ray)."""
    import os
    import subprocess
    import time

    from ray.job_submission import JobSubmissionClient

    from curation.corpus.ray_cluster import end_head, free_port, head_command

    # Ray >= 2.5x turns token auth on by itself once ~/.ray/auth_token exists (a `ray.init()` writes
    # it); this test cluster listens on 127.0.0.1 only and its clients are this process.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    dash, gcs = free_port(), free_port()
    # every other port free too (the agent's defaults to 52365 for every cluster: see head_command)
    cmd = head_command(num_cpus=2, gcs_port=gcs, dashboard_port=dash, block=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                JobSubmissionClient(address)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"local Ray did not start (exit {proc.poll()})")
                time.sleep(1)
        os.environ["RAY_ADDRESS"] = f"127.0.0.1:{gcs}"  # what ray.init("auto") in a test connects to
        yield address
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        end_head(proc)


@pytest.fixture
def on_ray(ray_address, settings, tmp_path):
    settings.RAY_ADDRESS = ray_address
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    return ray_address


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """(pyarrow S3FileSystem, a new empty bucket's name) on the session's S3 server."""
    import re

    import pyarrow.fs as pafs

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    # from_uri, as the product opens every URI: it is what reads AWS_ENDPOINT_URL (the
    # S3FileSystem constructor does not)
    fs, _ = pafs.FileSystem.from_uri(f"s3://{name}?allow_bucket_creation=true")
    fs.create_dir(name)
    return fs, name


def docs(n: int, offset: int = 0) -> list[dict]:
    """Real public documents: English then Chinese Wikipedia paragraphs from the shared data."""
    rows = []
    for name in ("general_en.jsonl", "general_zh.jsonl"):
        with open(SHARED_DATA / name, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh)
    rows = rows[offset:offset + n // 2] + rows[-(offset + n - n // 2):len(rows) - offset]
    return [{"id": r["id"], "text": r["text"], "lang": r["lang"], "source": r["source"]} for r in rows]


def write_parquet(path, rows, rename: dict | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {}
    for k in ("id", "text", "lang", "source"):
        cols[(rename or {}).get(k, k)] = [r[k] for r in rows]
    pq.write_table(pa.table(cols), path)


def write_jsonl(path, rows, compress: str = ""):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if compress == "gz":
        data = gzip.compress(data)
    elif compress == "zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
