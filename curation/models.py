from django.db import models




class DuplicateCluster(models.Model):
    """A group of near-duplicate records found by one MinHash run; one member is kept.

    Members' Score rows (same run) carry keep/duplicate_of/similarity; this row lets the run page
    list clusters by size without reading Score.detail.
    """

    run = models.ForeignKey("handoffs.ScorerRun", related_name="clusters", on_delete=models.CASCADE)
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


from curation.corpus.models import Corpus, CorpusRun, CorpusShard  # noqa: E402,F401  (one app, one migrations folder)
