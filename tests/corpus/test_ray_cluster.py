"""The embedded local Ray (curation/corpus/ray_cluster.py) starts beside another Ray on the same
machine: its agent ports are picked free, not Ray's fixed defaults."""
from __future__ import annotations

import socket
import sys
import time

from curation.corpus.ray_cluster import _client_or_none, free_port, start_local_ray, stop_local_ray


def test_local_ray_starts_beside_another_ray(ray_address, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    # Ray's clients take RAY_ADDRESS over the address they are given: unset, as in the embedded default
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    # The session's Ray runs; another Ray's dashboard agent holds Ray's default agent port 52365
    # (held here when nobody does yet).
    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", 52365))
        holder.listen()
    except OSError:
        pass  # already held by some other Ray on this machine: the same situation
    try:
        address = start_local_ray(num_cpus=1, dashboard_port=free_port(), gcs_port=free_port())
        try:
            client = JobSubmissionClient(address)
            deadline = time.monotonic() + 90
            while True:  # a head that just started answers before its agent is up
                try:
                    sub = client.submit_job(entrypoint=f"{sys.executable} -c \"print('ok from the second Ray')\"")
                    break
                except RuntimeError as exc:
                    if "No available agent" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(2)
            while client.get_job_status(sub) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                assert time.monotonic() < deadline + 60, "the job on the second Ray did not end"
                time.sleep(1)
            assert client.get_job_status(sub) == JobStatus.SUCCEEDED
            assert "ok from the second Ray" in client.get_job_logs(sub)
        finally:
            stop_local_ray()
    finally:
        holder.close()
    gone = time.monotonic() + 60  # that head is gone (its processes exit a few seconds after the group's SIGTERM) ...
    while _client_or_none(address) is not None:
        assert time.monotonic() < gone, "the second Ray still answers after stop_local_ray"
        time.sleep(1)
    assert _client_or_none(ray_address) is not None  # ... and the session's Ray still answers
