"""Register and check model backends from the shell (deploy scripts, docker compose), like /backends/."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from medstudio.backends import services
from medstudio.backends.models import ModelBackend


class Command(BaseCommand):
    help = ("Manage model backends. `backends add NAME --base-url URL --model M [--key-env VAR] [--default]` "
            "creates or updates one; `backends list`; `backends check NAME`; `backends remove NAME`.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create a backend, or update the one with this name.")
        add.add_argument("name")
        add.add_argument("--base-url", required=True, help="e.g. http://vllm:8000/v1")
        add.add_argument("--model", required=True)
        add.add_argument("--key-env", default="", help="Environment variable holding the API key (never the key).")
        add.add_argument("--timeout", type=float, default=None)
        add.add_argument("--max-retries", type=int, default=None)
        add.add_argument("--concurrency", type=int, default=None)
        add.add_argument("--default", action="store_true", help="Use it when a form names no backend.")
        add.add_argument("--disabled", action="store_true")
        sub.add_parser("list")
        check = sub.add_parser("check", help="Send a one-token request; exit code 1 when it does not answer.")
        check.add_argument("name")
        rm = sub.add_parser("remove")
        rm.add_argument("name")

    def _get(self, name: str) -> ModelBackend:
        backend = ModelBackend.objects.filter(name=name).first()
        if backend is None:
            raise CommandError(f"No model backend named {name!r} (see `manage.py backends list`).")
        return backend

    def handle(self, *args, **o):
        action = o["action"]
        if action == "add":
            existing = ModelBackend.objects.filter(name=o["name"]).first()
            values = {"name": o["name"], "base_url": o["base_url"], "model": o["model"], "api_key_env": o["key_env"],
                      "enabled": not o["disabled"]}
            values.update({k: o[k] for k in ("timeout", "max_retries", "concurrency") if o[k] is not None})
            if o["default"]:
                values["is_default"] = True
            try:
                b = services.backend_save(actor=None, backend=existing, **values)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
            self.stdout.write(f"{'Updated' if existing else 'Added'} backend {b.name}: {b.base_url} {b.model}"
                              f"{' (default)' if b.is_default else ''}.")
        elif action == "list":
            for b in ModelBackend.objects.all():
                state = "never checked" if b.last_check_ok is None else ("answers" if b.last_check_ok else "failed")
                self.stdout.write(f"{b.name}\t{b.base_url}\t{b.model}\tkey:{b.api_key_env or 'MEDSTUDIO_CHAT_API_KEY'}"
                                  f"\t{'default' if b.is_default else ''}\t{'' if b.enabled else 'disabled'}\t{state}")
        elif action == "check":
            b = services.backend_check(actor=None, backend=self._get(o["name"]))
            self.stdout.write(f"{b.name}: {'answers' if b.last_check_ok else 'FAILED'} in {b.last_check_ms} ms: {b.last_check_detail}")
            if not b.last_check_ok:
                raise CommandError(f"{b.name} did not answer.")
        elif action == "remove":
            services.backend_delete(actor=None, backend=self._get(o["name"]))
            self.stdout.write(f"Removed {o['name']}.")
