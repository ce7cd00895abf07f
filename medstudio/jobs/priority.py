"""CPU priority of batch work: job workers run below the web server.

On one host the web server, the database and the workers share the cores, and a 1M-record import
keeps two of them busy (normalising rows while the COPY streams). Workers therefore lower their
own priority (`nice`, MEDSTUDIO_JOB_NICE, default 10): the kernel gives a request the core first
and the job every cycle nobody else wants, so a job on a host of its own runs as fast as before.
0 leaves the priority alone. On the quiet 2-core dev box it made no measurable difference to the
labelling soak (docs/BENCHMARKS.md); it is a guard for busier hosts, not a measured speed-up.
"""
from __future__ import annotations

import logging
import os

from django.conf import settings

log = logging.getLogger(__name__)


def lower_cpu_priority(target: int | None = None) -> int:
    """Set this process's niceness to at least `target` (MEDSTUDIO_JOB_NICE by default) and return
    the niceness it then has. Idempotent: an absolute level, not os.nice()'s increment, so a worker
    that calls it at start and again in each pool child ends at the level, not twice it. A process
    already below that priority keeps its own (raising priority back needs privileges)."""
    target = settings.JOB_NICE if target is None else target
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target > current:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(target, 19))
        except OSError as exc:  # a sandbox that forbids it: run at the priority we have
            log.warning("could not lower the worker's CPU priority to %s: %s", target, exc)
    return os.getpriority(os.PRIO_PROCESS, 0)
