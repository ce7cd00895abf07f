from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medstudio.datasets.formats import FileError, detect_format
from medstudio.datasets.models import Dataset
from medstudio.datasets.services import ValidationReport, import_start, import_validate
from medstudio.jobs.services import job_run_here


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
        if opts["run_async"]:
            # Checked here before queueing, so the bad lines show now; the job checks again as it imports.
            report = import_validate(path=path, fmt=fmt, kind=kind)
            self._report(path, report, opts["skip_bad_lines"])
            job = import_start(user=None, path=path.resolve(), fmt=fmt, kind=kind, dataset=opts["dataset"],
                               skip_bad=opts["skip_bad_lines"], enqueue=True)
            self.stdout.write(f"Import queued as job {job.pk}.")
            return
        # One pass: the job validates while it imports, in one transaction (a bad line leaves the database as it was).
        job = import_start(user=None, path=path.resolve(), fmt=fmt, kind=kind, dataset=opts["dataset"],
                           skip_bad=opts["skip_bad_lines"], enqueue=False)
        job_run_here(job_id=job.pk)
        job.refresh_from_db()
        validation = (job.result or {}).get("validation") or {}
        if job.status != "succeeded" and validation:
            self._report(path, _report_of(validation), opts["skip_bad_lines"])
        if job.status != "succeeded":
            raise CommandError(f"Import failed: {job.error}")
        dataset = Dataset.objects.get(pk=job.result["dataset_id"])
        if opts["benchmark"] and not dataset.is_benchmark:
            from medstudio.datasets.services import dataset_update

            dataset_update(actor=None, dataset=dataset, is_benchmark=True)
        r = job.result
        report = _report_of(validation)
        for line, reason in report.errors:
            self.stderr.write(f"{path.name}:{line}: {reason}")
        skipped = f", {report.n_bad} bad line(s) skipped" if report.n_bad else ""
        self.stdout.write(f"{dataset.name}: {r['inserted']} new, {r['already_present']} already present{skipped}; "
                          f"dataset now holds {dataset.n_records} records, {dataset.n_tokens} tokens "
                          f"({', '.join(f'{k}: {v}' for k, v in sorted(dataset.langs.items()))}).")

    def _report(self, path: Path, report: ValidationReport, skip_bad: bool) -> None:
        """Print the bad lines; raise CommandError when they (or the file) stop the import."""
        if report.file_error:
            raise CommandError(report.file_error)
        for line, reason in report.errors:
            self.stderr.write(f"{path.name}:{line}: {reason}")
        if report.n_bad > len(report.errors):
            self.stderr.write(f"... and {report.n_bad - len(report.errors)} more bad line(s)")
        if report.n_bad and not skip_bad:
            raise CommandError(f"{report.n_bad} bad line(s) of {report.n_rows}; nothing imported "
                               "(fix them, or pass --skip-bad-lines to import the rest).")


def _report_of(validation: dict) -> ValidationReport:
    return ValidationReport(n_rows=validation.get("n_rows", 0), n_ok=validation.get("n_ok", 0),
                            n_bad=validation.get("n_bad", 0), file_error=validation.get("file_error", ""),
                            errors=[(e["line"], e["reason"]) for e in validation.get("errors", [])])
