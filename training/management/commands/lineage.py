"""Print a model's lineage graph: every run, data object, recipe, scorer run, rater, queue and dataset behind it.

    python manage.py lineage MODEL [--format json|text]

MODEL is a registry name or id. JSON: {"nodes": [{"id", "type", "name", ...}], "edges": [[from, to], ...]},
an edge meaning `to` was made from `from`.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from medstudio.handoffs import lineage
from training.models import ModelRef


class Command(BaseCommand):
    help = "Print the lineage graph of a registered model."

    def add_arguments(self, parser):
        parser.add_argument("model", help="registry name or id")
        parser.add_argument("--format", choices=("json", "text"), default="text")

    def handle(self, *args, **opt):
        value = opt["model"]
        ref = ModelRef.objects.filter(name=value).first() or (ModelRef.objects.filter(pk=int(value)).first() if value.isdigit() else None)
        if ref is None:
            raise CommandError(f"no model named {value!r} in the registry")
        g = lineage.graph(lineage.node_id("model", ref.pk))
        if opt["format"] == "json":
            self.stdout.write(json.dumps(g, ensure_ascii=False, default=str))
            return
        for col in lineage.layered(g):
            self.stdout.write("  ".join(f"[{n['type']}] {n['name']}" for n in col))
        self.stdout.write(f"{len(g['nodes'])} nodes, {len(g['edges'])} edges")
