#!/usr/bin/env python
"""Bounded, deterministic schemathesis run against a live server (issue 14, point 3).

Starts `manage.py runserver` on a free port with a fresh SQLite database and var dir, creates an
admin with an API token and a small dataset, saves /api/schema/ and runs schemathesis (v4 CLI)
over it with the token, a fixed seed and deterministic generation, for at most
MEDSTUDIO_FUZZ_SECONDS (default 120). It fails on any server error (5xx), undocumented status
code, response-schema violation or accepted schema-violating request. Run by .ci/run after the
SQLite `make test`:

    .venv/bin/python tests/fuzz/run_schemathesis.py
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SECONDS = int(os.environ.get("MEDSTUDIO_FUZZ_SECONDS", "120"))
SEED = os.environ.get("MEDSTUDIO_FUZZ_SEED", "14")
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
])
# Not fuzzed: the token endpoint (it would revoke the token in use) and the schema itself.
EXCLUDE = ["--exclude-path-regex", r"^/api/(token|schema)/"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _schemathesis() -> str:
    exe = Path(PY).with_name("schemathesis")
    return str(exe) if exe.exists() else shutil.which("schemathesis") or "schemathesis"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="medstudio-fuzz-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDSTUDIO_CACHE_URL")}
    env.update(MEDSTUDIO_VAR_DIR=str(tmp / "var"), DJANGO_SETTINGS_MODULE="medstudio.settings", PYTHONUNBUFFERED="1",
               DJANGO_DEBUG="0")

    def manage(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True, text=True,
                              capture_output=True, **kw)

    manage("migrate", "--noinput")
    token = manage("shell", "-c", (
        "from medstudio.accounts.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "u = User.objects.create_user(username='fuzz', password='fuzz-pw-14', role='admin')\n"
        "print(Token.objects.create(user=u).key)\n")).stdout.strip().splitlines()[-1]
    sample = tmp / "sample.jsonl"
    sample.write_text("".join(json.dumps({"id": f"r{i}", "question": f"Question {i}?", "answer": f"Answer {i}."}) + "\n"
                              for i in range(5)))
    manage("import_records", str(sample), "--dataset", "fuzz-qa", "--kind", "qa")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen([PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"{base}/api/schema/?format=json", headers={"Authorization": f"Token {token}"})
                schema = urllib.request.urlopen(req, timeout=10).read()
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    print((tmp / "server.log").read_text(), file=sys.stderr)
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
        schema_path = tmp / "schema.json"
        schema_path.write_bytes(schema)
        cmd = [_schemathesis(), "run", str(schema_path), "--url", base,
               "-H", f"Authorization: Token {token}",
               "--checks", CHECKS, "--seed", SEED, "--generation-deterministic",
               "--max-time", str(SECONDS), "--workers", "1", "--max-examples", os.environ.get("MEDSTUDIO_FUZZ_EXAMPLES", "30"),
               "--phases", "examples,coverage,fuzzing",
               "--request-timeout", "30", "--no-color", "--continue-on-failure", *EXCLUDE]
        print("+", " ".join(c if "Token" not in c else "Authorization: Token ***" for c in cmd), flush=True)
        rc = subprocess.run(cmd, cwd=tmp, env=env).returncode
        if rc:
            print("\n--- server log (tail) ---\n" + (tmp / "server.log").read_text()[-6000:], file=sys.stderr)
        return rc
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
        if not os.environ.get("MEDSTUDIO_FUZZ_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    sys.exit(main())
