import json

from django.core.management.base import BaseCommand, CommandError

from curation.pipeline.mixing import PRESETS
from curation.studio.services import StudioError, mixture_create
from medstudio.jobs.services import job_run_here


def _ratios(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        if part.strip():
            k, _, v = part.partition("=")
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise CommandError(f"write ratios as name=weight, got {part!r}") from None
    return out


def _selection_id(value: str) -> int:
    from medstudio.handoffs.models import Selection

    bare = value.lstrip("#")
    if bare.isdigit() and Selection.objects.filter(pk=int(bare)).exists():
        return int(bare)
    ids = list(Selection.objects.filter(name=value, status=Selection.Status.READY).values_list("pk", flat=True))
    if not ids:
        raise CommandError(f"no ready selection named {value!r}")
    if len(ids) > 1:
        raise CommandError(f"{len(ids)} selections are named {value!r}; give one as #ID ({', '.join(f'#{i}' for i in ids)})")
    return ids[0]


class Command(BaseCommand):
    help = ("Plan a CPT mixture over tagged selections (docs/METHODS.md 1.6: stable = medical:general 19:1, zh:en 1:9; "
            "boost = medical:sft 1:1, zh:en 4:6) and write it as shards; prints the plan and achieved ratios.")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--stage", default="stable", choices=[*PRESETS, "custom"])
        parser.add_argument("--budget", type=int, required=True, help="Token budget.")
        parser.add_argument("--source", action="append", required=True,
                            help="SELECTION=category (repeat); SELECTION is a ready selection's name, or #ID / ID.")
        parser.add_argument("--categories", help="Override the stage's category ratio, e.g. medical=19,general=1.")
        parser.add_argument("--langs", help="Override the stage's language ratio, e.g. zh=1,en=9.")
        parser.add_argument("--strategy", default="independent", choices=["independent", "min_epochs"])
        parser.add_argument("--shard-tokens", type=int, default=50_000_000)
        parser.add_argument("--plan-only", action="store_true", help="Print the plan; draw and write nothing.")

    def handle(self, *args, **opts):
        preset = PRESETS.get(opts["stage"])
        if preset is None and not (opts["categories"] and opts["langs"]):
            raise CommandError("--stage custom needs --categories and --langs.")
        targets = {"categories": _ratios(opts["categories"]) if opts["categories"] else preset.categories,
                   "langs": _ratios(opts["langs"]) if opts["langs"] else preset.langs}
        sources = []
        for item in opts["source"]:
            sel, _, cat = item.rpartition("=")
            if not sel.strip() or not cat.strip():
                raise CommandError(f"--source takes SELECTION=category, got {item!r}")
            sources.append({"selection": _selection_id(sel.strip()), "category": cat.strip()})
        try:
            mix = mixture_create(user=None, name=opts["name"], stage=opts["stage"], budget_tokens=opts["budget"],
                                 targets=targets, sources=sources, strategy=opts["strategy"],
                                 shard_tokens=opts["shard_tokens"], build=not opts["plan_only"], enqueue=False)
        except StudioError as exc:
            raise CommandError(str(exc)) from exc
        for cell in mix.plan["cells"]:
            self.stdout.write(f"  selection {cell['source']:>6} {cell['category']:>8} {cell['lang']:>3}: "
                              f"{cell['planned']:>14,.0f} of {cell['available']:>14,} tokens ({cell['epochs']:.2f} epochs)")
        for m in mix.plan.get("missing") or []:
            self.stdout.write(f"warning: no {m['lang']} tokens available: 0 of {m['tokens']:,} tokens planned "
                              f"(target share {m['share']:.1%}; the other languages' ratios are renormalised)")
        for note in mix.plan["notes"]:
            self.stdout.write(f"  note: {note}")
        if opts["plan_only"]:
            return
        job_run_here(job_id=mix.job_id)
        mix.refresh_from_db()
        if mix.status != "succeeded":
            mix.job.refresh_from_db()
            raise CommandError(f"Building the mixture failed: {mix.job.error}")
        self.stdout.write(json.dumps({k: mix.achieved[k] for k in ("categories", "langs", "max_rel_error", "total_tokens")},
                                     indent=1))
        self.stdout.write(f"Mixture #{mix.pk}: {len(mix.files) - 1} shard(s) in {mix.path}.")
