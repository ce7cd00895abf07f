"""Existing review rounds' datasets become helper datasets of the dataset their pairs' prompts came from."""
from collections import Counter

from django.db import migrations


def forwards(apps, schema_editor):
    ReviewRound = apps.get_model("preferences", "ReviewRound")
    PreferencePair = apps.get_model("preferences", "PreferencePair")
    Dataset = apps.get_model("datasets", "Dataset")
    for review in ReviewRound.objects.all().iterator():
        ids = [int(x[5:]) for x in review.dataset.records.values_list("external_id", flat=True) if x.startswith("pair-") and x[5:].isdigit()]
        owners = Counter(PreferencePair.objects.filter(pk__in=ids, record__isnull=False).values_list("record__dataset_id", flat=True))
        owner = owners.most_common(1)[0][0] if owners else None
        Dataset.objects.filter(pk=review.dataset_id, helper_role="").update(helper_role="preference_review", helper_of_id=owner)


class Migration(migrations.Migration):
    dependencies = [
        ("preferences", "0002_move_to_handoffs"),
        ("datasets", "0004_dataset_helpers"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
