"""`manage.py serve` (what `make run` starts): a taken port is refused before the worker starts."""
import socket
import subprocess

import pytest
from django.core.management import CommandError, call_command


def test_a_taken_port_is_refused_before_any_worker_starts(monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"127.0.0.1:{port} is already in use"):
            call_command("serve", f"127.0.0.1:{port}")
    assert started == []  # runserver would have left with os._exit and orphaned a worker
