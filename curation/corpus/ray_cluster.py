"""Where corpus jobs run: `RAY_ADDRESS` (a Ray dashboard / job-submission address such as
http://ray-head:8265), or, when it is empty (the embedded default), a local Ray head this worker
starts once, with the dashboard so that job submission works."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings


def ray_address() -> str:
    return getattr(settings, "RAY_ADDRESS", "") or os.environ.get("RAY_ADDRESS", "")


_last_error: list[str] = [""]


def _client_or_none(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError: nothing listens there (yet); AuthenticationError
        _last_error[0] = f"{type(exc).__name__}: {exc}"
        return None


def start_local_ray(*, num_cpus: int | None = None, dashboard_port: int | None = None, gcs_port: int | None = None,
                    timeout: float = 90.0) -> str:
    """Start (or find) a local Ray head with its dashboard; return its job-submission address."""
    num_cpus = num_cpus or int(getattr(settings, "RAY_LOCAL_CPUS", 0) or os.environ.get("MEDSTUDIO_RAY_LOCAL_CPUS", 2))
    dashboard_port = dashboard_port or int(os.environ.get("MEDSTUDIO_RAY_DASHBOARD_PORT", 8265))
    gcs_port = gcs_port or int(os.environ.get("MEDSTUDIO_RAY_GCS_PORT", 6389))  # 6379 is Redis's
    address = f"http://127.0.0.1:{dashboard_port}"
    if _client_or_none(address) is not None:
        return address
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [ray_bin, "start", "--head", f"--num-cpus={num_cpus}", f"--port={gcs_port}", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--disable-usage-stats"]
    # The embedded head listens on 127.0.0.1 only. Ray turns token auth on by itself when
    # ~/.ray/auth_token exists; set RAY_AUTH_MODE=token (client and head) to keep it on.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _client_or_none(address) is not None:
            return address
        time.sleep(1)
    raise RuntimeError(f"local Ray started but its dashboard at {address} does not answer")


def stop_local_ray() -> None:
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, timeout=120)


def client():
    """(JobSubmissionClient, address, local?): local when embedded or RAY_ADDRESS is on this machine,
    where the job can run this checkout with this interpreter."""
    from urllib.parse import urlparse

    address = ray_address()
    embedded = not address
    if embedded:
        address = start_local_ray()
    else:
        embedded = urlparse(address if "://" in address else f"http://{address}").hostname in ("127.0.0.1", "localhost")
    c = _client_or_none(address)
    if c is None:
        raise ConnectionError(f"no Ray job-submission server answers at RAY_ADDRESS={address} ({_last_error[0][:300]})")
    return c, address, embedded


def entrypoint_python(embedded: bool) -> str:
    return os.environ.get("MEDSTUDIO_RAY_PYTHON") or (sys.executable if embedded else "python")


def runtime_env(embedded: bool) -> dict:
    # Embedded: the job runs this checkout's code with this venv. On a cluster, the image has
    # MedStudio installed (docker/compose.yaml's ray-head / ray-worker use the MedStudio image).
    return {"env_vars": {"PYTHONPATH": str(settings.BASE_DIR)}} if embedded else {}
