"""Where corpus jobs run: `RAY_ADDRESS` (a Ray dashboard / job-submission address such as
http://ray-head:8265), or, when it is empty (the embedded default), a local Ray head this worker
starts once, with the dashboard so that job submission works."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
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


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head_command(*, num_cpus: int, gcs_port: int, dashboard_port: int, block: bool = False) -> list[str]:
    """`ray start --head` on 127.0.0.1 with the dashboard (job submission), every other port free.

    Ray's defaults give every head the same dashboard-agent (52365), runtime-env agent, metrics and
    Ray Client (10001) ports: a second Ray on this machine (the tests' beside the dev server's) then
    cannot bind them, and job submission answers "No available agent". The OS picks them instead.
    """
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--num-cpus={num_cpus}", f"--port={gcs_port}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
           "--disable-usage-stats"]
    cmd += [f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port",
                                                    "ray-client-server-port")]
    return cmd + (["--block"] if block else [])


_local_head: list[subprocess.Popen] = []  # the head this process started (stop_local_ray ends it alone)


def start_local_ray(*, num_cpus: int | None = None, dashboard_port: int | None = None, gcs_port: int | None = None,
                    timeout: float = 90.0) -> str:
    """Start (or find) a local Ray head with its dashboard; return its job-submission address.

    The dashboard and GCS ports are fixed (MEDSTUDIO_RAY_DASHBOARD_PORT, MEDSTUDIO_RAY_GCS_PORT) so
    that every worker process finds the one head; the head runs in its own process group
    (`ray start --block`), which outlives this process and is ended by stop_local_ray."""
    num_cpus = num_cpus or int(getattr(settings, "RAY_LOCAL_CPUS", 0) or os.environ.get("MEDSTUDIO_RAY_LOCAL_CPUS", 2))
    dashboard_port = dashboard_port or int(os.environ.get("MEDSTUDIO_RAY_DASHBOARD_PORT", 8265))
    gcs_port = gcs_port or int(os.environ.get("MEDSTUDIO_RAY_GCS_PORT", 6389))  # 6379 is Redis's
    address = f"http://127.0.0.1:{dashboard_port}"
    if _client_or_none(address) is not None:
        return address
    # The embedded head listens on 127.0.0.1 only. Ray turns token auth on by itself when
    # ~/.ray/auth_token exists; set RAY_AUTH_MODE=token (client and head) to keep it on.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # its output goes to a file, not a pipe: nobody reads a pipe once started, and a full one blocks the head
    log = tempfile.NamedTemporaryFile(prefix="medstudio-ray-head-", suffix=".log", delete=False)
    with log:
        proc = subprocess.Popen(head_command(num_cpus=num_cpus, gcs_port=gcs_port, dashboard_port=dashboard_port, block=True),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    _local_head.append(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _client_or_none(address) is not None:
            return address
        if proc.poll() is not None:
            _local_head.remove(proc)
            tail = Path(log.name).read_text(errors="replace")[-1000:]
            raise RuntimeError(f"local Ray did not start (exit {proc.returncode}, log {log.name}): {tail}")
        time.sleep(1)
    raise RuntimeError(f"local Ray started but its dashboard at {address} does not answer")


def stop_local_ray() -> None:
    """End the head start_local_ray started in this process, by its process group (never `ray stop`,
    which would end every Ray on the machine, another instance's too)."""
    while _local_head:
        end_head(_local_head.pop())


def end_head(proc: subprocess.Popen) -> None:
    """End a head started with start_new_session (head_command): its whole process group, politely
    first (Ray's own processes shut down on SIGTERM), then by force after a minute."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


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
    for _ in range(5):  # a busy head's dashboard can miss one check (seen on a loaded 2-core box): ask again
        if c is not None:
            break
        time.sleep(2)
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
