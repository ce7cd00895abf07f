from django.db import models


class ScorerRun(models.Model):
    """One run of one scorer (with its version and params) over one dataset."""

    dataset = models.ForeignKey("datasets.Dataset", related_name="scorer_runs", on_delete=models.CASCADE)
    scorer = models.CharField(max_length=64, db_index=True, help_text="Registry name: rules, pii, minhash, datarater...")
    version = models.CharField(max_length=32, default="1")
    params = models.JSONField(default=dict, blank=True)
    model_ref = models.CharField(max_length=500, blank=True, help_text="Model path / hub id / trained-model version used.")
    status = models.CharField(max_length=16, default="queued")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL)
    summary = models.JSONField(default=dict, blank=True, help_text="Aggregates written when the run finishes.")
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.scorer} v{self.version} on {self.dataset_id} (#{self.pk})"


class Score(models.Model):
    """A scorer's value (and keep/drop verdict) for one record in one run."""

    run = models.ForeignKey(ScorerRun, related_name="scores", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="scores", on_delete=models.CASCADE)
    value = models.FloatField(null=True, blank=True, help_text="Null = unscored (never a silent default).")
    keep = models.BooleanField(null=True, blank=True)
    reason = models.CharField(max_length=100, blank=True, help_text="Why a filter dropped the record.")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "record"], name="score_unique_run_record")]
        indexes = [
            models.Index(fields=["run", "value"]),
            models.Index(fields=["run", "keep", "reason"]),
        ]
