"""PostgreSQL: the one trigram index over all records becomes one per large dataset.

Maintaining the table-wide GIN index row by row made every import slow; now each dataset with at
least SEARCH_INDEX_MIN_RECORDS records has a partial index built once after its import (see
medstudio/datasets/search_index.py). This migration builds those for the datasets already there.
"""
from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from medstudio.datasets.search_index import index_name, min_records

    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    Dataset = apps.get_model("datasets", "Dataset")
    for pk in Dataset.objects.filter(n_records__gte=min_records()).values_list("pk", flat=True):
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {index_name(pk)} ON datasets_record "
                              f"USING gin (UPPER(text) gin_trgm_ops) WHERE dataset_id = {int(pk)}")
    schema_editor.execute("DROP INDEX IF EXISTS record_text_trgm")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from medstudio.datasets.search_index import index_name

    Dataset = apps.get_model("datasets", "Dataset")
    for pk in Dataset.objects.values_list("pk", flat=True):
        schema_editor.execute(f"DROP INDEX IF EXISTS {index_name(pk)}")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS record_text_trgm ON datasets_record USING gin (UPPER(text) gin_trgm_ops)")


class Migration(migrations.Migration):
    dependencies = [("datasets", "0002_postgres_trigram")]
    operations = [migrations.RunPython(forwards, backwards)]
