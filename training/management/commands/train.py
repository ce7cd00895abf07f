"""Run one training stage from the command line through the same job as the UI.

    python manage.py train --stage sft --base MODEL --data TYPE:NAME [--name RUN] [--merge-base MODEL] [--set key=value ...]

TYPE is dataset, selection, mixture or preference_set (any registered data source); NAME is the
object's name (or #ID). MODEL is a registry name or id, or a local path (registered on the fly).
--set overrides any spec field (dotted for nested: resources.gpus_per_node=8, merging.p=0.01).
Blocks until the run ends; the last line is `model: NAME`, the registered final model, so stages
chain: --base NAME.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from medstudio.handoffs import sources
from medstudio.jobs.services import job_run_here
from training import services
from training.models import ModelRef
from training.pipeline.specs import STAGES, SpecError, TrainingSpec, default_spec


def _model(value: str) -> ModelRef:
    ref = ModelRef.objects.filter(pk=int(value)).first() if value.isdigit() else ModelRef.objects.filter(name=value).first()
    if ref is None:
        ref = ModelRef.objects.filter(path=value).first()
    if ref is None:
        if not Path(value).is_dir():
            raise CommandError(f"no model named {value!r} in the registry, and no directory at that path "
                               "(register it with the Models page, or give the local directory)")
        ref = services.model_ref_create(actor=None, name=value, path=value)
    return ref


def _parse(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


class Command(BaseCommand):
    help = "Launch a CPT/SFT/DPO run (validated spec, supervised process) and wait for it."

    def add_arguments(self, parser):
        parser.add_argument("--stage", required=True, choices=STAGES)
        parser.add_argument("--base", required=True, help="registry name/id or local path")
        parser.add_argument("--data", default="", help="TYPE:NAME, TYPE one of dataset, selection, mixture, preference_set")
        parser.add_argument("--dataset", default="", help="shorthand for --data dataset:NAME")
        parser.add_argument("--merge-base", default="", help="theta_base for online merging (DPO)")
        parser.add_argument("--name", default="")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    def handle(self, *args, **opt):
        if bool(opt["data"]) == bool(opt["dataset"]):
            raise CommandError("give the training data once: --data TYPE:NAME (or --dataset NAME)")
        try:
            data_ref = sources.resolve(opt["data"] or f"dataset:{opt['dataset']}")
        except sources.DataSourceError as exc:
            raise CommandError(str(exc)) from None
        base = _model(opt["base"])
        spec = default_spec(opt["stage"], base.path)
        top, res, mer = {}, {}, {}
        for item in opt["set"]:
            key, _, value = item.partition("=")
            target = res if key.startswith("resources.") else mer if key.startswith("merging.") else top
            target[key.split(".", 1)[-1]] = _parse(value)
        try:
            spec = TrainingSpec.from_dict({**spec.to_dict(), **top,
                                           "resources": {**spec.resources.__dict__, **res},
                                           "merging": {**spec.merging.__dict__, **mer}})
        except SpecError as exc:
            raise CommandError(str(exc))
        merge_base = _model(opt["merge_base"]) if opt["merge_base"] else None
        try:
            run = services.training_run_start(actor=None, spec=spec, base_model=base, data_ref=data_ref,
                                              name=opt["name"], merge_base=merge_base, enqueue=False)
        except SpecError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run {run.pk}: {spec.stage} from {base.name} on {data_ref['type']} {run.data_ref.get('name')} "
                          f"(job {run.job_id}, dir {run.run_dir})")
        job_run_here(job_id=run.job_id)
        run.refresh_from_db()
        final = run.checkpoints.filter(is_final=True).first()
        if run.status != "succeeded":
            raise CommandError(f"run {run.pk} {run.status}: {run.error}\n{run.log_tail}")
        self.stdout.write(f"run {run.pk} succeeded; final model id {final.model_ref_id} ({final.path})")
        self.stdout.write(f"model: {final.model_ref.name}")
