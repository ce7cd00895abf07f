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


class DuplicateCluster(models.Model):
    """A group of near-duplicate records found by one MinHash run; one member is kept.

    Members' Score rows (same run) carry keep/duplicate_of/similarity; this row lets the run page
    list clusters by size without reading Score.detail.
    """

    run = models.ForeignKey(ScorerRun, related_name="clusters", on_delete=models.CASCADE)
    keeper = models.ForeignKey("datasets.Record", related_name="+", on_delete=models.CASCADE,
                               help_text="The member kept by the run's keep policy.")
    size = models.IntegerField(help_text="Number of members, keeper included.")
    member_ids = models.JSONField(default=list, help_text="Record ids of all members, keeper first.")
    stage = models.CharField(max_length=16, default="merged",
                             help_text="'source' when all members share a source, 'merged' when found after "
                                       "merging sources (SF-Med order), 'dataset' when the run had one source.")
    max_similarity = models.FloatField(default=0.0, help_text="Highest verified Jaccard inside the cluster.")

    class Meta:
        indexes = [models.Index(fields=["run", "size"])]
        ordering = ["-size", "id"]
