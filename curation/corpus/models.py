from django.conf import settings
from django.db import models


class Corpus(models.Model):
    """A registered manifest of shard files (Parquet / JSONL, plain, .gz or .zst) under one URI."""

    name = models.CharField(max_length=200, unique=True)
    uri = models.CharField(max_length=1000, help_text="Local folder or file, or a pyarrow.fs URI (s3://, gs://).")
    text_field = models.CharField(max_length=100, default="text")
    id_field = models.CharField(max_length=100, default="id")
    lang_field = models.CharField(max_length=100, default="lang")
    source_field = models.CharField(max_length=100, default="source")
    turns_field = models.CharField(max_length=100, blank=True, default="",
                                   help_text="Dialogue corpora: the field holding the turns ([{role, content}]); "
                                             "empty for documents.")
    output_uri = models.CharField(max_length=1000, blank=True,
                                  help_text="Where score files go; empty: MEDSTUDIO_CORPUS_OUTPUT/<name>.")
    n_shards = models.IntegerField(default=0)
    n_docs = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def mapping(self) -> dict:
        return {"text": self.text_field, "id": self.id_field, "lang": self.lang_field, "source": self.source_field,
                "turns": self.turns_field}


class CorpusShard(models.Model):
    corpus = models.ForeignKey(Corpus, related_name="shards", on_delete=models.CASCADE)
    key = models.CharField(max_length=500, help_text="Path relative to the corpus URI, '/' as '__'.")
    path = models.CharField(max_length=1000)
    fmt = models.CharField(max_length=16)
    n_docs = models.BigIntegerField(null=True, blank=True, help_text="From the Parquet footer, or JSONL lines counted once.")
    size_bytes = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why it could not be counted at registration.")

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["corpus", "key"], name="corpus_shard_unique_key")]


class CorpusRun(models.Model):
    """One scoring pass of a corpus on Ray. Its status is its Job's (no copy kept here)."""

    corpus = models.ForeignKey(Corpus, related_name="runs", on_delete=models.CASCADE)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, related_name="+", on_delete=models.SET_NULL)
    scorers = models.JSONField(default=dict, help_text="{scorer: params}")
    workers = models.IntegerField(default=1)
    out_dir = models.CharField(max_length=1000)
    ray_job_id = models.CharField(max_length=200, blank=True)
    aggregates = models.JSONField(default=dict, blank=True,
                                  help_text="Per-scorer counts, reasons and histograms; counts per source and lang.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
