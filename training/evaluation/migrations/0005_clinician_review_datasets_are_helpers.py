"""Existing clinician checks' datasets become helper datasets of the benchmark their run evaluated."""
from django.db import migrations


def forwards(apps, schema_editor):
    ClinicianReview = apps.get_model("evaluation", "ClinicianReview")
    Dataset = apps.get_model("datasets", "Dataset")
    for review in ClinicianReview.objects.select_related("run").iterator():
        Dataset.objects.filter(pk=review.dataset_id, helper_role="").update(helper_role="judge_review",
                                                                            helper_of_id=review.run.dataset_id)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0004_clinician_review"),
        ("datasets", "0004_dataset_helpers"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
