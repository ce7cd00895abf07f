from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Kind(models.TextChoices):
    DOCUMENT = "document", _("Document")
    QA = "qa", _("QA (single turn)")
    DIALOGUE = "dialogue", _("Dialogue (multi-turn)")
    MCQ = "mcq", _("Multiple-choice question")
    PAIR = "pair", _("Preference pair")


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.TextField(blank=True)
    licence = models.CharField(max_length=200, blank=True)
    is_benchmark = models.BooleanField(default=False, help_text="Evaluation set: training data is decontaminated against it.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                               help_text="The dataset this one was derived from (e.g. a redacted copy).")
    helper_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="helpers",
                                  help_text="A helper dataset (a review round, a clinician check) is listed under this one.")
    helper_role = models.CharField(max_length=32, blank=True, default="",
                                   help_text='Empty: a top-level dataset. Else what the helper is for: "preference_review", '
                                             '"judge_review"... (hidden from the main list).')
    n_records = models.BigIntegerField(default=0, help_text="Cached; refreshed after each import.")
    n_tokens = models.BigIntegerField(default=0, help_text="Cached CJK-aware token total.")
    langs = models.JSONField(default=dict, blank=True, help_text="Cached record count per language.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Record(models.Model):
    dataset = models.ForeignKey(Dataset, related_name="records", on_delete=models.CASCADE)
    external_id = models.CharField(max_length=255, help_text="The id in the source file (or a content hash).")
    lang = models.CharField(max_length=16, db_index=True)
    source = models.CharField(max_length=200, blank=True, db_index=True)
    subset = models.CharField(max_length=200, blank=True, help_text="Department or subject, when the data has one.")
    content = models.JSONField(help_text="Normalised content; schema by the dataset's kind.")
    text = models.TextField(help_text="All readable text, flattened (search, token counts, text scorers).")
    text_hash = models.CharField(max_length=64, db_index=True)
    n_tokens = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "external_id"], name="record_unique_external_id")]
        indexes = [
            models.Index(fields=["dataset", "lang", "id"]),
            models.Index(fields=["dataset", "subset"]),
        ]
        # On Postgres a trigram GIN index per large dataset (medstudio/datasets/search_index.py) serves icontains search.

    def __str__(self) -> str:
        return f"{self.dataset_id}/{self.external_id}"


class Export(models.Model):
    """A file written by an export job, with its content hash."""

    dataset = models.ForeignKey(Dataset, null=True, blank=True, related_name="exports", on_delete=models.CASCADE)
    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL)
    format = models.CharField(max_length=32)
    filters = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, blank=True)
    n_records = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
