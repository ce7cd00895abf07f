"""Run an evaluation from the shell, in this process (scripts, CI, a GPU box without the web app).

    manage.py evaluate --kind mcq --dataset cmmlu_med --backend transformers --path /models/sft-v1 --name sft-v1
    manage.py evaluate --kind consultation --dataset cmtmedqa --backend openai --base-url http://gpu1:8000/v1 \
        --model qwen --param judge='{"base_url": "http://judge:8000/v1", "model": "judge"}'
    manage.py evaluate --reextract 42   # re-score run 42's stored MCQ replies with the current extractor
    manage.py evaluate --kind harness --tasks cmmlu_anatomy,pubmedqa --backend transformers --path /models/sft-v1
        # lm-evaluation-harness on local task copies (MEDSTUDIO_EVAL_DATASETS_DIR/<task>/, save_to_disk)
    manage.py evaluate --harness-tasks  # which curated lm-eval tasks have a local copy
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from medstudio.audit.services import audit_log
from medstudio.datasets.models import Dataset
from medstudio.jobs.services import job_run_here
from training.evaluation import selectors, services
from training.evaluation.models import EvalItem, EvalKind, EvalRun, EvalStatus
from training.pipeline import evaluation as ev


class Command(BaseCommand):
    help = ("Run an MCQ, consultation or memorisation evaluation in this process and print its summary; or, with "
            "--reextract RUN, re-score an MCQ run's stored raw outputs with the current answer extractor.")

    def add_arguments(self, parser):
        parser.add_argument("--reextract", type=int, metavar="RUN",
                            help="Re-score the stored outputs of MCQ run RUN (no generation) and update its summary.")
        parser.add_argument("--kind", choices=[k for k, _ in EvalKind.choices])
        parser.add_argument("--tasks", default="", help="Harness runs: comma-separated curated lm-eval task names.")
        parser.add_argument("--harness-tasks", action="store_true", help="List curated lm-eval tasks and local copies.")
        parser.add_argument("--dataset", help="Dataset name.")
        parser.add_argument("--backend", default="transformers", choices=list(services.BACKENDS))
        parser.add_argument("--path", help="Local model directory (transformers / vllm).")
        parser.add_argument("--base-url", help="OpenAI-compatible endpoint (key: MEDSTUDIO_CHAT_API_KEY).")
        parser.add_argument("--model", help="Endpoint model name.")
        parser.add_argument("--name", default="", help="Leaderboard label.")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                            help="Run parameter; VALUE is parsed as JSON when it can be (seeds=[0,1,2], limit=100).")

    def handle(self, *args, **o):
        if o["reextract"] is not None:
            return self._reextract(o["reextract"])
        if o["harness_tasks"]:
            from training.pipeline import harness

            for t in harness.local_tasks(services.eval_datasets_dir()):
                self.stdout.write(f"{'local  ' if t['available'] else 'missing'}  {t['name']:<40} {t['path']}")
            return
        if o["kind"] == EvalKind.HARNESS:
            return self._harness(o)
        if not o["kind"] or not o["dataset"]:
            raise CommandError("--kind and --dataset are required (or --reextract RUN)")
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {o['dataset']!r}")
        params = self._params(o)
        spec = {"backend": o["backend"], "path": o["path"], "base_url": o["base_url"], "model": o["model"]}
        try:
            run = services.eval_run_start(user=None, kind=o["kind"], dataset=dataset, model_name=o["name"],
                                          model_spec=spec, params=params, enqueue=False)
        except services.EvalConfigError as exc:
            raise CommandError(str(exc)) from None
        self._execute(run)

    def _harness(self, o) -> None:
        spec = {"backend": o["backend"], "path": o["path"], "base_url": o["base_url"], "model": o["model"]}
        try:
            run = services.harness_run_start(user=None, tasks=[t.strip() for t in o["tasks"].split(",")],
                                             model_name=o["name"], model_spec=spec, params=self._params(o), enqueue=False)
        except services.EvalConfigError as exc:
            raise CommandError(str(exc)) from None
        self._execute(run)

    def _params(self, o) -> dict:
        params = {}
        for item in o["param"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param needs KEY=VALUE, got {item!r}")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        return params

    def _execute(self, run) -> None:
        job_run_here(job_id=run.job_id)
        run = EvalRun.objects.get(pk=run.pk)
        self.stdout.write(json.dumps({"run": run.pk, "status": run.status, "error": run.error, "summary": run.summary},
                                     ensure_ascii=False, indent=1, default=str))
        if run.status != "succeeded":
            raise CommandError(f"evaluation {run.pk} {run.status}: {run.error}")

    def _reextract(self, run_id: int) -> None:
        """Grade the stored raw outputs again with the current extraction rules: no generation. Items
        whose letters, method or grade change are updated, then the run's summary is recomputed."""
        run = EvalRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no evaluation run {run_id}")
        if run.kind != EvalKind.MCQ:
            raise CommandError(f"run {run_id} is a {run.get_kind_display()} run: only MCQ runs are re-extracted")
        if run.status in (EvalStatus.QUEUED, EvalStatus.RUNNING):
            raise CommandError(f"run {run_id} is {run.status}: re-extract it once it has finished")

        def invalid_count() -> int:
            return run.items.filter(extracted__isnull=True, output__isnull=False).count()

        before = selectors.mcq_summary(run)
        before_invalid = invalid_count()
        changed: list[EvalItem] = []
        newly_correct = newly_wrong = 0
        items = run.items.filter(output__isnull=False).select_related("record").order_by("id")
        for item in items.iterator(chunk_size=500):
            content = item.record.content or {}
            answer = item.reference or str(content.get("answer") or "")
            mcq = ev.McqItem(item.record_id, item.subset, content.get("options") or {}, answer)
            v = ev.mcq_verdicts([mcq], [item.output])[0]
            new = (v.extraction.letters, v.extraction.method, v.correct)
            if new != (item.extracted, item.extraction_method, item.correct):
                newly_correct += int(v.correct and not item.correct)
                newly_wrong += int(bool(item.correct) and not v.correct)
                item.extracted, item.extraction_method, item.correct = new
                changed.append(item)
        with transaction.atomic():
            EvalItem.objects.bulk_update(changed, ["extracted", "extraction_method", "correct"], batch_size=500)
            after = selectors.mcq_summary(run)
            after_invalid = invalid_count()
            note = {"at": timezone.now().isoformat(), "changed": len(changed), "invalid_before": before_invalid,
                    "invalid_after": after_invalid, "accuracy_before": before["overall"]["mean"]}
            summary = {**(run.summary or {}), **after, "reextracted": note}
            EvalRun.objects.filter(pk=run.pk).update(summary=summary)
            audit_log(actor=None, action="evaluation.reextract", target=run,
                      data={**note, "accuracy_after": after["overall"]["mean"]})

        def fmt(x):
            return "-" if x is None else f"{x:.4f}"

        n = run.items.count()
        self.stdout.write(f"run {run.pk} ({run.model_name}): re-extracted {n} item(s) with the current rules, {len(changed)} changed "
                          f"({newly_correct} now correct, {newly_wrong} no longer correct)")
        self.stdout.write(f"accuracy {fmt(before['overall']['mean'])} → {fmt(after['overall']['mean'])} "
                          f"(mean over {after['n_runs']} seed(s))")
        self.stdout.write(f"invalid {before_invalid} → {after_invalid} "
                          f"(rate {fmt(before['invalid_rate']['mean'])} → {fmt(after['invalid_rate']['mean'])})")
