import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medstudio.datasets.convert import EXPORT_FORMATS as FORMATS
from medstudio.handoffs.models import Selection
from curation.studio.services import StudioError, selection_export_start
from medstudio.jobs.services import job_run_here


class Command(BaseCommand):
    help = "Export a frozen selection (jsonl, parquet, messages, preference, llamafactory, text) with its provenance."

    def add_arguments(self, parser):
        parser.add_argument("--selection", type=int, required=True, help="Selection id.")
        parser.add_argument("--format", default="jsonl", choices=sorted(FORMATS))
        parser.add_argument("--out", help="Folder to copy the files into (default: leave them under MEDIA_ROOT).")

    def handle(self, *args, **opts):
        sel = Selection.objects.filter(pk=opts["selection"]).first()
        if sel is None:
            raise CommandError(f"No selection #{opts['selection']}.")
        try:
            export = selection_export_start(user=None, selection=sel, fmt=opts["format"], enqueue=False)
        except StudioError as exc:
            raise CommandError(str(exc)) from exc
        job_run_here(job_id=export.job_id)
        export.refresh_from_db()
        if export.status != "succeeded":
            export.job.refresh_from_db()
            raise CommandError(f"Export failed: {export.job.error}")
        where = Path(export.path)
        if opts["out"]:
            where = Path(opts["out"])
            where.mkdir(parents=True, exist_ok=True)
            for name in export.files:
                shutil.copyfile(Path(export.path) / name, where / name)
        skipped = f", skipped {export.skipped}" if export.skipped else ""
        self.stdout.write(f"Wrote {export.n_written} records as {export.format} to {where} ({', '.join(export.files)}){skipped}.")
