from django.core.management.base import BaseCommand, CommandError

from curation.modelscorers.services import trained_model_create
from medstudio.datasets.models import Dataset
from medstudio.jobs.services import job_run_here


class Command(BaseCommand):
    help = ("Train a domain classifier or DataRater version from a dataset's label columns or an annotation "
            "queue (inline by default; --async hands it to the workers).")

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=["domain", "datarater"])
        parser.add_argument("--dataset", help="Dataset whose records carry the label columns.")
        parser.add_argument("--fields", default="", help="Label columns, comma-separated (two raters: two columns).")
        parser.add_argument("--queue", type=int, help="Annotation queue id (instead of --dataset/--fields).")
        parser.add_argument("--encoder", default="hashed", choices=["hashed", "embedding"])
        parser.add_argument("--encoder-model", default="")
        parser.add_argument("--threshold", type=float, default=2.0)
        parser.add_argument("--val-fraction", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--async", dest="run_async", action="store_true")

    def handle(self, *args, **opts):
        if opts["queue"]:
            source = {"queue_id": opts["queue"]}
        else:
            ds = Dataset.objects.filter(name=opts["dataset"] or "").first()
            if ds is None:
                raise CommandError(f"No dataset named {opts['dataset']!r}.")
            source = {"dataset_id": ds.pk, "fields": opts["fields"].split(",")}
        try:
            model = trained_model_create(user=None, kind=opts["kind"], source=source, encoder=opts["encoder"],
                                         encoder_model=opts["encoder_model"], val_fraction=opts["val_fraction"],
                                         seed=opts["seed"], threshold=opts["threshold"], enqueue=opts["run_async"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["run_async"]:
            self.stdout.write(f"Training {model.ref} queued as job {model.job_id}.")
            return
        job_run_here(job_id=model.job_id)
        model.refresh_from_db()
        if model.status != "ready":
            raise CommandError(f"Training {model.ref} failed: {model.error}")
        self.stdout.write(f"Trained {model.ref}: {model.n_agreed} agreed of {model.n_labelled} labelled; "
                          f"metrics {model.metrics}")
