import os
import signal
import socket
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


def _port_free(addrport: str) -> bool:
    host, _, port = addrport.rpartition(":")
    host = (host or "127.0.0.1").strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver binds: TIME_WAIT is fine
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Serve the app and run a local Celery worker (all queues, with the recovery beat) beside it."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args, **opts):
        addrport = opts["addrport"] if ":" in opts["addrport"] else f"127.0.0.1:{opts['addrport']}"
        # runserver leaves with os._exit() when its port is taken, which would skip the `finally`
        # below and orphan the worker: find out first.
        if not _port_free(addrport):
            raise CommandError(f"{addrport} is already in use: stop the other server, or choose another "
                               f"address (make run ADDR=127.0.0.1:8001).")
        worker = None
        if not opts["no_worker"]:
            cmd = [sys.executable, "-m", "celery", "-A", "medstudio", "worker", "-B", "-l", "INFO",
                   "-Q", ",".join(settings.JOB_QUEUES), "--concurrency", str(opts["concurrency"]),
                   "-s", str(settings.VAR_DIR / "celerybeat-schedule")]
            # Its own session, so stopping the server stops the worker and its children.
            worker = subprocess.Popen(cmd, start_new_session=True, env=os.environ.copy())
            self.stdout.write(f"Worker started (pid {worker.pid}) on queues {', '.join(settings.JOB_QUEUES)}.")
        # SIGTERM (e.g. `kill`) unwinds like Ctrl-C, so the worker below is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if worker and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
