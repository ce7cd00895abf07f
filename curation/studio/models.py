"""Threshold studio: the score matrix, recipes and their versions, frozen selections, exports, mixtures."""
from django.conf import settings
from django.db import models

# Value columns of the score matrix: one per scorer run placed in a slot. Twelve covers the
# curation scorers of docs/METHODS.md (rater, domain, deita, confilter, perplexity...) with room to spare;
# filters (rules, PII, dedup, decontamination) use bits of `drop_mask` instead of a column.
N_VALUE_SLOTS = 12
N_FLAG_SLOTS = 62
VALUE_COLUMNS = [f"v{i}" for i in range(N_VALUE_SLOTS)]


class ScoreMatrix(models.Model):
    """One row per record: its scores as plain columns, so threshold counts are one scan or index range.

    Score rows are (run, record, value): counting records that pass five conditions would take
    five joins. Copying each finished run's values into a column of this table (`matrix_sync`)
    turns the count into a single-table conditional aggregate over indexed real columns.
    """

    record = models.OneToOneField("datasets.Record", primary_key=True, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+", db_index=False)  # see Meta
    lang = models.CharField(max_length=16)
    source = models.CharField(max_length=200, blank=True)
    n_tokens = models.IntegerField(default=0)
    drop_mask = models.BigIntegerField(default=0, help_text="Bit i set = the filter run in flag slot i dropped this record.")
    v0 = models.FloatField(null=True)
    v1 = models.FloatField(null=True)
    v2 = models.FloatField(null=True)
    v3 = models.FloatField(null=True)
    v4 = models.FloatField(null=True)
    v5 = models.FloatField(null=True)
    v6 = models.FloatField(null=True)
    v7 = models.FloatField(null=True)
    v8 = models.FloatField(null=True)
    v9 = models.FloatField(null=True)
    v10 = models.FloatField(null=True)
    v11 = models.FloatField(null=True)

    class Meta:
        # Deliberately no index per value column: each one multiplies the cost of filling a column
        # (measured 13 indexes -> ~18x slower UPDATEs). Band reads for incremental counts use the
        # Score table's (run, value) index instead; full counts are one sequential scan.
        indexes = [models.Index(fields=["dataset"], name="studio_mx_dataset")]


class MatrixSlot(models.Model):
    """Which scorer run fills which matrix column (value slot) or drop_mask bit (flag slot) of a dataset."""

    class Kind(models.TextChoices):
        VALUE = "value", "Value column"
        FLAG = "flag", "Filter bit"

    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey("handoffs.ScorerRun", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    slot = models.PositiveSmallIntegerField()
    scorer = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    n_values = models.BigIntegerField(default=0, help_text="Records with a value (value slot) or dropped (flag slot).")
    lo = models.FloatField(null=True)
    hi = models.FloatField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "kind", "slot"], name="studio_slot_unique"),
            models.UniqueConstraint(fields=["dataset", "run", "kind"], name="studio_slot_run_unique"),
        ]
        ordering = ["dataset_id", "kind", "slot"]

    @property
    def column(self) -> str:
        return f"v{self.slot}"

    @property
    def bit(self) -> int:
        return 1 << self.slot






class SelectionExport(models.Model):
    """A file (or folder) written from a selection, with where it came from."""

    selection = models.ForeignKey("handoffs.Selection", related_name="exports", on_delete=models.CASCADE)
    format = models.CharField(max_length=20)
    status = models.CharField(max_length=12, default="queued")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    path = models.CharField(max_length=500, blank=True)
    files = models.JSONField(default=list, blank=True)
    n_written = models.BigIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True, help_text="Records left out, by reason.")
    provenance = models.JSONField(default=dict, blank=True, help_text="Selection, hash, recipe version, scorer runs and versions.")
    sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

