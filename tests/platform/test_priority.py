"""Batch work's CPU priority (medstudio/jobs/priority.py), in child processes: the niceness of a
process can only go up, so the test process itself is left as it is."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import django; django.setup(); import os; from medstudio.jobs.priority import lower_cpu_priority; "
         "a = lower_cpu_priority(); b = lower_cpu_priority(); print(a, b, os.getpriority(os.PRIO_PROCESS, 0))")


def _probe(nice_env: str, start_nice: int = 0) -> list[int]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "medstudio.settings", "MEDSTUDIO_JOB_NICE": nice_env}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                         preexec_fn=(lambda: os.nice(start_nice)) if start_nice else None)
    return [int(x) for x in out.stdout.split()[-3:]]


def test_sets_the_configured_level_once_not_cumulatively():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    target = min(base + 4, 19)
    assert _probe(str(target)) == [target, target, target]  # os.nice(4) twice would give base + 8


def test_keeps_a_lower_priority_and_zero_leaves_it_alone():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base > 12:
        return  # started niced beyond what this test can check
    assert _probe(str(base + 2), start_nice=5) == [base + 5] * 3  # already nicer than asked: kept
    assert _probe("0") == [base] * 3
