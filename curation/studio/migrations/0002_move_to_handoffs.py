"""Recipes, selections and mixtures moved to the platform (medstudio.handoffs) with their tables: state only."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("studio", "0001_initial"),
        ("handoffs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="matrixslot",
                    name="run",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="handoffs.scorerrun"),
                ),
                migrations.AlterField(
                    model_name="selectionexport",
                    name="selection",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="exports", to="handoffs.selection"),
                ),
                migrations.DeleteModel(name="SelectionRecord"),
                migrations.DeleteModel(name="Mixture"),
                migrations.DeleteModel(name="Selection"),
                migrations.DeleteModel(name="RecipeVersion"),
                migrations.DeleteModel(name="Recipe"),
            ],
        ),
    ]
