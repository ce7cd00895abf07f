"""Model registry, training runs, their metrics and checkpoints (issue 8).

Writes go through training/services.py; the training itself runs in a separate process started
by the `training.run` job (training/handlers.py) through training/pipeline/launcher.py.
"""
from django.conf import settings
from django.db import models


class ModelRef(models.Model):
    """A model registry entry: a local path or hub id, with where it came from."""

    class Kind(models.TextChoices):
        BASE = "base", "Base (registered)"
        CHECKPOINT = "checkpoint", "Checkpoint"
        FINAL = "final", "Final model of a run"

    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=500, help_text="Local directory (or hub id in production) the weights load from.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BASE)
    stage = models.CharField(max_length=16, blank=True, help_text="Training stage that produced it (empty for a registered base).")
    parent = models.ForeignKey("self", null=True, blank=True, related_name="children", on_delete=models.SET_NULL,
                               help_text="The model the producing run started from.")
    run = models.ForeignKey("training.TrainingRun", null=True, blank=True, related_name="models", on_delete=models.SET_NULL)
    step = models.IntegerField(null=True, blank=True)
    spec_hash = models.CharField(max_length=32, blank=True)
    data_ref = models.JSONField(default=dict, blank=True, help_text="The data the run used: type, id, name, version, sha256.")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def lineage(self) -> list["ModelRef"]:
        """This model and its ancestors, newest first (bounded against accidental cycles)."""
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen and len(chain) < 50:
            chain.append(node)
            seen.add(node.pk)
            node = node.parent
        return chain


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TrainingRun(models.Model):
    """One CPT/SFT/DPO run: its spec, base model, data, job and outcome."""

    name = models.CharField(max_length=200)
    stage = models.CharField(max_length=16, db_index=True)
    spec = models.JSONField(help_text="training/pipeline/specs.py TrainingSpec as a dict (validated before launch).")
    spec_hash = models.CharField(max_length=32, blank=True)
    base_model = models.ForeignKey(ModelRef, related_name="runs", on_delete=models.PROTECT)
    merge_base = models.ForeignKey(ModelRef, null=True, blank=True, related_name="merge_runs", on_delete=models.PROTECT,
                                   help_text="theta_base of the online-merging task vector (DPO only).")
    data_ref = models.JSONField(default=dict, help_text="The data source: {type, id, name, ...}; filled with sha256 and counts once exported.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    job = models.OneToOneField("jobs.Job", null=True, blank=True, related_name="training_run", on_delete=models.SET_NULL)
    run_dir = models.CharField(max_length=500, blank=True)
    step = models.IntegerField(default=0)
    max_steps = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True, help_text="Last lines of the training log when the run failed.")
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.stage})"

    @property
    def is_finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)

    @property
    def percent(self) -> int:
        if not self.max_steps:
            return 100 if self.status == RunStatus.SUCCEEDED else 0
        return min(100, int(100 * self.step / self.max_steps))


class RunMetric(models.Model):
    """One logged value (loss, learning_rate, grad_norm, tokens_per_second, eval_loss, rewards_*...)."""

    run = models.ForeignKey(TrainingRun, related_name="metrics", on_delete=models.CASCADE)
    step = models.IntegerField()
    name = models.CharField(max_length=64)
    value = models.FloatField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "name", "step"], name="runmetric_unique_step")]
        indexes = [models.Index(fields=["run", "name", "step"])]


class Checkpoint(models.Model):
    """A saved checkpoint (or the final model) of a run; each is also a ModelRef."""

    run = models.ForeignKey(TrainingRun, related_name="checkpoints", on_delete=models.CASCADE)
    step = models.IntegerField()
    path = models.CharField(max_length=500)
    is_final = models.BooleanField(default=False)
    model_ref = models.OneToOneField(ModelRef, null=True, blank=True, related_name="checkpoint", on_delete=models.SET_NULL)
    info = models.JSONField(default=dict, blank=True, help_text="best metric, train loss, tokens... at save time")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["step", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="checkpoint_unique_path")]
