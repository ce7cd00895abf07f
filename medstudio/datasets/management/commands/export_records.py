import shutil

from django.core.management.base import BaseCommand, CommandError

from medstudio.datasets.models import Dataset, Export
from medstudio.datasets.services import export_start
from medstudio.jobs.services import job_run_here


class Command(BaseCommand):
    help = "Export a dataset (optionally filtered) to JSONL or Parquet; prints the content hash."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
        parser.add_argument("--out", required=True)
        parser.add_argument("--lang", default="")
        parser.add_argument("--q", default="", help="Text search filter.")

    def handle(self, *args, **opts):
        dataset = Dataset.objects.filter(name=opts["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named {opts['dataset']!r}.")
        filters = {k: opts[k] for k in ("lang", "q") if opts[k]}
        job = export_start(user=None, dataset=dataset, fmt=opts["format"], filters=filters, enqueue=False)
        job_run_here(job_id=job.pk)
        job.refresh_from_db()
        if job.status != "succeeded":
            raise CommandError(f"Export failed: {job.error}")
        export = Export.objects.get(pk=job.result["export_id"])
        shutil.copyfile(export.path, opts["out"])
        self.stdout.write(f"Wrote {export.n_records} records to {opts['out']} (sha256 {export.sha256}).")
