import json

from django.core.management.base import BaseCommand, CommandError

from medstudio.handoffs.models import RecipeVersion
from curation.studio.services import StudioError, recipe_version_create, selection_apply_start
from medstudio.datasets.models import Dataset
from medstudio.jobs.services import job_run_here


class Command(BaseCommand):
    help = ("Apply a recipe version: freeze the records it keeps as a selection (prints ids, counts, hash). "
            "With --conditions and --dataset, first save those conditions as the recipe's next version.")

    def add_arguments(self, parser):
        parser.add_argument("--recipe", required=True)
        parser.add_argument("--recipe-version", dest="number", type=int, help="Version number (default: the latest).")
        parser.add_argument("--name", default="", help="Selection name.")
        parser.add_argument("--dataset", action="append", default=[], help="Dataset name (repeat); with --conditions.")
        parser.add_argument("--conditions", help='JSON, e.g. {"bounds": [{"scorer": "rater", "min": 3}], "flags": ["rules"]}')

    def handle(self, *args, **opts):
        if opts["conditions"]:
            datasets = list(Dataset.objects.filter(name__in=opts["dataset"]))
            if len(datasets) != len(set(opts["dataset"])) or not datasets:
                raise CommandError(f"Unknown dataset among {opts['dataset']} (give --dataset NAME for each).")
            try:
                version = recipe_version_create(user=None, name=opts["recipe"], datasets=datasets,
                                                conditions=json.loads(opts["conditions"]))
            except (json.JSONDecodeError, StudioError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Saved {version}.")
        qs = RecipeVersion.objects.filter(recipe__name=opts["recipe"]).order_by("-number")
        if opts["number"]:
            qs = qs.filter(number=opts["number"])
        version = qs.first()
        if version is None:
            raise CommandError(f"No recipe {opts['recipe']!r}" + (f" version {opts['number']}" if opts["number"] else "") + ".")
        sel = selection_apply_start(user=None, version=version, name=opts["name"], enqueue=False)
        job_run_here(job_id=sel.job_id)
        sel.refresh_from_db()
        if sel.status != "ready":
            sel.job.refresh_from_db()
            raise CommandError(f"Applying {version} failed: {sel.job.error}")
        self.stdout.write(f"Selection #{sel.pk} {sel.name}: {sel.n_records} records, {sel.n_tokens} tokens, "
                          f"sha256 {sel.content_hash}.")
