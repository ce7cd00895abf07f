import json

from django.core.management.base import BaseCommand, CommandError

from curation.scoring import scorer_run_start
from medstudio.handoffs.scorers import get_scorer, scorers
from medstudio.datasets.models import Dataset
from medstudio.jobs.models import Job
from medstudio.jobs.services import job_run_here


def _parse_param(raw: str) -> tuple[str, object]:
    if "=" not in raw:
        raise CommandError(f"--param takes key=value, got {raw!r}")
    key, value = raw.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class Command(BaseCommand):
    help = "Run a registered scorer over a dataset (inline by default; --async hands it to the workers)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--scorer", required=True, help="Registry name (see --list).")
        parser.add_argument("--param", action="append", default=[], help="key=value (JSON values allowed); repeatable")
        parser.add_argument("--shards", type=int, default=1)
        parser.add_argument("--async", dest="run_async", action="store_true")

    def handle(self, *args, **opts):
        try:
            get_scorer(opts["scorer"])
        except LookupError as exc:
            raise CommandError(f"{exc} Known: {', '.join(scorers())}") from exc
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named {opts['dataset']!r}.")
        params = dict(_parse_param(p) for p in opts["param"])
        try:
            run = scorer_run_start(user=None, dataset=dataset, scorer=opts["scorer"], params=params,
                                   shards=opts["shards"], enqueue=opts["run_async"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        jobs = Job.objects.filter(kind="curation.score", params__run_id=run.pk).order_by("id")
        if opts["run_async"]:
            self.stdout.write(f"Scorer run {run.pk} queued as job(s) {', '.join(str(j.pk) for j in jobs)}.")
            return
        for job in jobs:
            job_run_here(job_id=job.pk)
        run.refresh_from_db()
        failed = [j for j in jobs.all() if j.status != "succeeded"]
        for job in failed:
            self.stderr.write(f"job {job.pk}: {job.status}: {job.error}")
        self.stdout.write(f"Scorer run {run.pk} ({run.scorer} v{run.version}) on {dataset.name}: {run.status}; "
                          f"{run.scores.count()} scores.")
        if failed:
            raise CommandError("Scoring failed.")
