"""CI (CPU): the GPU bench's dry run, `bash bench/gpu/run.sh --dry-run --out DIR`.

The dry run drives the same code as the GPU run (bench/gpu/bench_gpu.py) on the tiny test model
with CPU stand-ins; it must exit 0 (no Python error in the bench's own logic) and every part must
come back with at least one figure or an explicit "skipped: <reason>".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("a_confilter", "b_vllm_serve_judge", "c_sft_zero3", "d_dpo_ondare_fsdp", "e_memorisation_generation")


def _shared_data() -> Path | None:
    for c in (os.environ.get("MEDSTUDIO_SHARED_DATA", ""), ROOT / "bench" / "gpu" / "data", "/work/shared/data",
              ROOT.parent / "shared" / "data"):
        if c and (Path(c) / "cmtmedqa_multiturn.jsonl").is_file():
            return Path(c)
    return None


@pytest.mark.slow
def test_gpu_bench_dry_run_reports_every_part(tmp_path):
    data = _shared_data()
    if data is None:
        pytest.fail("shared data not found; set MEDSTUDIO_SHARED_DATA")
    out = tmp_path / "out"
    env = dict(os.environ, BENCH_PYTHON=sys.executable, MEDSTUDIO_SHARED_DATA=str(data))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu" / "run.sh"), "--dry-run", "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=420)
    log = (proc.stdout or "")[-6000:] + (proc.stderr or "")[-3000:]
    assert proc.returncode == 0, log

    report = json.loads((out / "gpu_bench.json").read_text(encoding="utf-8"))
    assert report["dry_run"] is True and report["errors"] == []
    assert set(report["parts"]) == set(PARTS)
    for name in PARTS:
        part = report["parts"][name]
        assert part["status"] in ("ok", "partial", "skipped"), (name, part.get("error"), part.get("traceback"))
        figures = [v for v in part.get("figures", {}).values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        assert figures or part.get("skipped", "").startswith("skipped: "), (name, part)
        if part["status"] == "partial":
            assert part["skipped"].startswith("skipped: "), (name, part)
    # The CPU stand-in compares transformers with itself: the 1e-3 check must pass and compare something.
    a = report["parts"]["a_confilter"]
    assert a["checks"]["cf_equal_within_1e-3"] is True and a["figures"]["turns_compared"] > 0
    b = report["parts"]["b_vllm_serve_judge"]
    assert b["figures"]["items_ok"] == b["figures"]["items"] > 0  # the fake judge always answers a valid label

    md = (out / "gpu_bench.md").read_text(encoding="utf-8")
    assert "| part | status | figure | value |" in md
    assert "CF equality within 1e-3: PASS" in md
    for name in PARTS:
        assert f"| {name} |" in md
