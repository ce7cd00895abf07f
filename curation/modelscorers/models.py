from django.conf import settings
from django.db import models


class RaterKind(models.TextChoices):
    DOMAIN = "domain", "Domain classifier"
    DATARATER = "datarater", "DataRater (0-5 quality)"


class Encoder(models.TextChoices):
    HASHED = "hashed", "Hashed character n-grams + linear head (fast, CPU)"
    EMBEDDING = "embedding", "Sentence embedding + trained head (paper: bge-m3)"


class TrainedModel(models.Model):
    """One trained version of a domain classifier or DataRater; scoring runs name the version they used."""

    kind = models.CharField(max_length=16, choices=RaterKind.choices)
    version = models.PositiveIntegerField(help_text="1, 2, 3... per kind, assigned when training starts.")
    encoder = models.CharField(max_length=16, choices=Encoder.choices, default=Encoder.HASHED)
    encoder_model = models.CharField(max_length=500, blank=True,
                                     help_text="Embedding encoder: local path / hub id (empty = MEDSTUDIO_EMBEDDING_MODEL).")
    params = models.JSONField(default=dict, blank=True,
                              help_text="Label source (annotation queue or dataset + label columns), split, seed, threshold.")
    status = models.CharField(max_length=16, default="queued", help_text="queued, training, ready, failed.")
    metrics = models.JSONField(default=dict, blank=True,
                               help_text="Validation metrics: accuracy + confusion matrix, or MSE + Spearman.")
    classes = models.JSONField(default=list, blank=True)
    n_labelled = models.PositiveIntegerField(default=0, help_text="Items with labels before the consensus rule.")
    n_agreed = models.PositiveIntegerField(default=0, help_text="Items kept by the consensus rule (trained on).")
    n_train = models.PositiveIntegerField(default=0)
    n_val = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, help_text="Directory of the saved head under MEDSTUDIO_MODEL_DIR.")
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [models.UniqueConstraint(fields=["kind", "version"], name="trainedmodel_unique_kind_version")]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version}"

    @property
    def ref(self) -> str:
        return f"{self.kind}:v{self.version}"
