"""Queue.suggestion_run now points at the platform's ScorerRun (same table): state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0002_label_progress_index"),
        ("handoffs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="queue",
                    name="suggestion_run",
                    field=models.ForeignKey(blank=True, help_text="A scorer run whose value is shown per item, or compared with labels.",
                                            null=True, on_delete=django.db.models.deletion.SET_NULL, to="handoffs.scorerrun"),
                ),
            ],
        ),
    ]
