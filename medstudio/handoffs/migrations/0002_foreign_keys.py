"""Foreign keys for what was kept as bare ids in JSON: a selection's scorer runs, a mixture's selections."""
import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    Selection = apps.get_model("handoffs", "Selection")
    ScorerRun = apps.get_model("handoffs", "ScorerRun")
    Mixture = apps.get_model("handoffs", "Mixture")
    MixtureSource = apps.get_model("handoffs", "MixtureSource")
    known_runs = set(ScorerRun.objects.values_list("id", flat=True))
    for sel in Selection.objects.all().iterator():
        ids = {int(r["run"]) for r in (sel.runs or []) if isinstance(r, dict) and str(r.get("run", "")).isdigit()}
        sel.scorer_runs.set(sorted(ids & known_runs))
    known_sels = set(Selection.objects.values_list("id", flat=True))
    for mix in Mixture.objects.all().iterator():
        seen = set()
        for pos, src in enumerate(mix.sources or []):
            try:
                sid = int(src["selection"])
            except (KeyError, TypeError, ValueError):
                continue
            if sid in known_sels and sid not in seen:
                seen.add(sid)
                MixtureSource.objects.create(mixture=mix, selection_id=sid, category=str(src.get("category", ""))[:64], position=pos)


class Migration(migrations.Migration):

    dependencies = [
        ("handoffs", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="selection",
            name="scorer_runs",
            field=models.ManyToManyField(blank=True, help_text="The scorer runs whose scores decided what was kept.",
                                         related_name="selections", to="handoffs.scorerrun"),
        ),
        migrations.CreateModel(
            name="MixtureSource",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("category", models.CharField(help_text="Mixture category tag (medical, general, sft...).", max_length=64)),
                ("position", models.PositiveSmallIntegerField(default=0)),
                ("mixture", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="parts", to="handoffs.mixture")),
                ("selection", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="mixture_parts", to="handoffs.selection")),
            ],
            options={"ordering": ["mixture_id", "position"]},
        ),
        migrations.AddConstraint(
            model_name="mixturesource",
            constraint=models.UniqueConstraint(fields=("mixture", "selection"), name="handoffs_mixture_source_unique"),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
