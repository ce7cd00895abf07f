"""Run an evaluation from the shell, in this process (scripts, CI, a GPU box without the web app).

    manage.py evaluate --kind mcq --dataset cmmlu_med --backend transformers --path /models/sft-v1 --name sft-v1
    manage.py evaluate --kind consultation --dataset cmtmedqa --backend openai --base-url http://gpu1:8000/v1 \
        --model qwen --param judge='{"base_url": "http://judge:8000/v1", "model": "judge"}'
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from medstudio.datasets.models import Dataset
from medstudio.jobs.services import job_execute
from training.evaluation import services
from training.evaluation.models import EvalKind, EvalRun


class Command(BaseCommand):
    help = "Run an MCQ, consultation or memorisation evaluation in this process and print its summary."

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=[k for k, _ in EvalKind.choices])
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--backend", default="transformers", choices=list(services.BACKENDS))
        parser.add_argument("--path", help="Local model directory (transformers / vllm).")
        parser.add_argument("--base-url", help="OpenAI-compatible endpoint (key: MEDSTUDIO_CHAT_API_KEY).")
        parser.add_argument("--model", help="Endpoint model name.")
        parser.add_argument("--name", default="", help="Leaderboard label.")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help="Run parameter; VALUE is parsed as JSON when it can be (seeds=[0,1,2], limit=100).")

    def handle(self, *args, **o):
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {o['dataset']!r}")
        params = {}
        for item in o["param"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param needs KEY=VALUE, got {item!r}")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        spec = {"backend": o["backend"], "path": o["path"], "base_url": o["base_url"], "model": o["model"]}
        try:
            run = services.eval_run_start(user=None, kind=o["kind"], dataset=dataset, model_name=o["name"],
                                          model_spec=spec, params=params, enqueue=False)
        except services.EvalConfigError as exc:
            raise CommandError(str(exc)) from None
        job_execute(job_id=run.job_id)
        run = EvalRun.objects.get(pk=run.pk)
        self.stdout.write(json.dumps({"run": run.pk, "status": run.status, "error": run.error, "summary": run.summary},
                                     ensure_ascii=False, indent=1, default=str))
        if run.status != "succeeded":
            raise CommandError(f"evaluation {run.pk} {run.status}: {run.error}")
