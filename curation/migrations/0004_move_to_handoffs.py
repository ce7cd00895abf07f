"""ScorerRun and Score moved to the platform (medstudio.handoffs) with their tables: state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("curation", "0003_alter_duplicatecluster_stage"),
        ("handoffs", "0001_initial"),
        # every other state reference to curation.ScorerRun is moved first
        ("studio", "0002_move_to_handoffs"),
        ("annotation", "0003_move_to_handoffs"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="duplicatecluster",
                    name="run",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="clusters", to="handoffs.scorerrun"),
                ),
                migrations.DeleteModel(name="Score"),
                migrations.DeleteModel(name="ScorerRun"),
            ],
        ),
    ]
