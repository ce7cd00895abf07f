"""PreferenceSet moved to the platform (medstudio.handoffs) with its table; BuildRun's bare
selection id becomes a foreign key (ids of selections that no longer exist become null)."""
import django.db.models.deletion
from django.db import migrations, models


def copy_selection(apps, schema_editor):
    BuildRun = apps.get_model("preferences", "BuildRun")
    Selection = apps.get_model("handoffs", "Selection")
    known = set(Selection.objects.values_list("id", flat=True))
    for run in BuildRun.objects.exclude(legacy_selection_id=None).iterator():
        if run.legacy_selection_id in known:
            BuildRun.objects.filter(pk=run.pk).update(selection_id=run.legacy_selection_id)


def _fk(related_name):
    return models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to="handoffs.preferenceset")


class Migration(migrations.Migration):

    dependencies = [
        ("preferences", "0001_initial"),
        ("handoffs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(model_name="buildrun", name="pref_set", field=_fk("runs")),
                migrations.AlterField(model_name="voterun", name="pref_set", field=_fk("votes")),
                migrations.AlterField(model_name="preferencepair", name="pref_set", field=_fk("pairs")),
                migrations.AlterField(model_name="reviewround", name="pref_set", field=_fk("reviews")),
                migrations.AlterField(model_name="preferenceexport", name="pref_set", field=_fk("exports")),
                migrations.DeleteModel(name="PreferenceSet"),
            ],
        ),
        migrations.RenameField(model_name="buildrun", old_name="selection_id", new_name="legacy_selection_id"),
        migrations.AddField(
            model_name="buildrun",
            name="selection",
            field=models.ForeignKey(blank=True, help_text="A frozen selection used as source.", null=True,
                                    on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="handoffs.selection"),
        ),
        migrations.RunPython(copy_selection, migrations.RunPython.noop),
        migrations.RemoveField(model_name="buildrun", name="legacy_selection_id"),
    ]
