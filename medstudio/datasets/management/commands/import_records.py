from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medstudio.datasets.formats import FileError, detect_format
from medstudio.datasets.models import Dataset
from medstudio.datasets.services import import_start, import_validate
from medstudio.jobs.services import job_execute


class Command(BaseCommand):
    help = ("Import records from a JSONL, CSV or Parquet file. Every bad line is reported with its number; "
            "nothing is imported when any line is bad unless --skip-bad-lines.")

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--dataset", required=True, help="Dataset name (created when missing).")
        parser.add_argument("--kind", default="auto", help="document | qa | dialogue | mcq | pair | auto")
        parser.add_argument("--format", default="", help="jsonl | csv | parquet (default: from the file name)")
        parser.add_argument("--skip-bad-lines", action="store_true", help="Import the good lines and list the bad ones.")
        parser.add_argument("--benchmark", action="store_true", help="Flag the dataset as an evaluation benchmark.")
        parser.add_argument("--async", dest="run_async", action="store_true", help="Hand the import to the workers.")

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        try:
            fmt = opts["format"] or detect_format(path.name)
        except FileError as exc:
            raise CommandError(str(exc)) from exc
        existing = Dataset.objects.filter(name=opts["dataset"]).first()
        kind = opts["kind"]
        if existing is None and kind == "auto":
            raise CommandError("A new dataset needs --kind (document, qa, dialogue, mcq or pair).")
        if existing is not None and kind not in ("auto", existing.kind):
            raise CommandError(f"Dataset {existing.name!r} holds {existing.kind} records, not {kind}.")
        # Validate before touching the database: a file with bad lines leaves it as it was.
        report = import_validate(path=path, fmt=fmt, kind=kind)
        if report.file_error:
            raise CommandError(report.file_error)
        for line, reason in report.errors:
            self.stderr.write(f"{path.name}:{line}: {reason}")
        if report.n_bad > len(report.errors):
            self.stderr.write(f"... and {report.n_bad - len(report.errors)} more bad line(s)")
        if report.n_bad and not opts["skip_bad_lines"]:
            raise CommandError(f"{report.n_bad} bad line(s) of {report.n_rows}; nothing imported "
                               "(fix them, or pass --skip-bad-lines to import the rest).")
        job = import_start(user=None, path=path.resolve(), fmt=fmt, kind=kind, dataset=opts["dataset"],
                           skip_bad=opts["skip_bad_lines"], enqueue=opts["run_async"])
        if opts["run_async"]:
            self.stdout.write(f"Import queued as job {job.pk}.")
            return
        job_execute(job_id=job.pk)
        job.refresh_from_db()
        if job.status != "succeeded":
            raise CommandError(f"Import failed: {job.error}")
        dataset = Dataset.objects.get(pk=job.result["dataset_id"])
        if opts["benchmark"] and not dataset.is_benchmark:
            from medstudio.datasets.services import dataset_update

            dataset_update(actor=None, dataset=dataset, is_benchmark=True)
        r = job.result
        skipped = f", {report.n_bad} bad line(s) skipped" if report.n_bad else ""
        self.stdout.write(f"{dataset.name}: {r['inserted']} new, {r['already_present']} already present{skipped}; "
                          f"dataset now holds {dataset.n_records} records, {dataset.n_tokens} tokens "
                          f"({', '.join(f'{k}: {v}' for k, v in sorted(dataset.langs.items()))}).")
