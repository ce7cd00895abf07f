"""One real local Ray (head + dashboard, 2 CPUs) for the whole test session; stopped at the end."""
from __future__ import annotations

import gzip
import json
import socket

import pytest

from tests.conftest import SHARED_DATA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_address():
    from curation.corpus.ray_cluster import start_local_ray, stop_local_ray

    address = start_local_ray(num_cpus=2, dashboard_port=_free_port(), gcs_port=_free_port())
    try:
        yield address
    finally:
        stop_local_ray()


@pytest.fixture
def on_ray(ray_address, settings, tmp_path):
    settings.RAY_ADDRESS = ray_address
    settings.CORPUS_OUTPUT = str(tmp_path / "scores")
    return ray_address


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
