"""Evaluation runs and everything they produce: per-item prompts and raw outputs, memorisation hits,
high-risk stores. Computation lives in training/pipeline/{evaluation,memorization,extraction,rouge}.py."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class EvalKind(models.TextChoices):
    MCQ = "mcq", "MCQ benchmark"
    CONSULTATION = "consultation", "Consultation (judged)"
    MEMORIZATION = "memorization", "Memorisation audit"
    HARNESS = "harness", "lm-evaluation-harness tasks"


class EvalSource(models.TextChoices):
    MEDSTUDIO = "medstudio", "MedStudio scorer"
    LM_EVAL = "lm-eval", "lm-evaluation-harness"


class EvalStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EvalRun(models.Model):
    kind = models.CharField(max_length=16, choices=EvalKind.choices)
    dataset = models.ForeignKey("datasets.Dataset", related_name="eval_runs", on_delete=models.CASCADE, null=True, blank=True,
                                help_text="The MedStudio dataset evaluated; empty for lm-eval runs (their tasks are in params).")
    source = models.CharField(max_length=16, choices=EvalSource.choices, default=EvalSource.MEDSTUDIO,
                              help_text="Who scored the run: MedStudio's own scorer or lm-evaluation-harness.")
    model_name = models.CharField(max_length=200, help_text="Label of the evaluated model on the leaderboard.")
    model_spec = models.JSONField(
        help_text='Generation backend: {"backend": "transformers"|"vllm", "path"} or {"backend": "openai", "base_url", '
                  '"model"}. API keys are never stored: they come from settings (MEDSTUDIO_CHAT_API_KEY). '
                  "A run made from a registry ModelRef copies its path here, so the run stays repeatable.")
    model_ref = models.ForeignKey("training.ModelRef", null=True, blank=True, on_delete=models.SET_NULL, related_name="eval_runs",
                                  help_text="The registry entry evaluated, when the model came from the registry.")
    params = models.JSONField(default=dict, blank=True, help_text="Seeds, generation settings, thresholds, judge.")
    status = models.CharField(max_length=16, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    job = models.OneToOneField("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="eval_run")
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                  help_text="The run whose settings this one repeats.")
    summary = models.JSONField(default=dict, blank=True, help_text="Accuracy/means/rates computed at the end.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "dataset", "status"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}: {self.model_name} on {self.dataset_id}"


class EvalItem(models.Model):
    """One generation: what was sent, what came back, and how it was graded."""

    run = models.ForeignKey(EvalRun, related_name="items", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="eval_items", on_delete=models.CASCADE)
    seed = models.IntegerField(default=0)
    turn = models.IntegerField(default=1, help_text="Assistant turn (1-based) for dialogues; 1 otherwise.")
    subset = models.CharField(max_length=200, blank=True, help_text="Subject / department, copied for grouping.")
    prompt = models.JSONField(help_text="Chat messages or raw prefix, as given to the backend.")
    prompt_text = models.TextField(blank=True, help_text="The rendered prompt, when the backend renders it.")
    output = models.TextField(null=True, blank=True, help_text="Raw model output; null when generation failed.")
    error = models.TextField(blank=True, help_text="Why generation or judging failed for this item.")
    reference = models.TextField(blank=True)
    extracted = models.CharField(max_length=16, null=True, blank=True, help_text="MCQ: chosen letter(s); null = invalid.")
    extraction_method = models.CharField(max_length=32, blank=True)
    correct = models.BooleanField(null=True)
    judge_scores = models.JSONField(null=True, blank=True, help_text="Consultation: 1-5 per aspect.")
    judge_output = models.TextField(blank=True)
    rouge_l = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "record", "seed", "turn"], name="evalitem_unique_slot")]
        indexes = [models.Index(fields=["run", "seed", "correct"]), models.Index(fields=["run", "subset"])]
        ordering = ["id"]


class HitStatus(models.TextChoices):
    OPEN = "open", "Open"
    EXCLUDE = "exclude", "Exclude from training"
    ACCEPTED = "accepted", "Accepted (public / harmless)"


class MemorizationHit(models.Model):
    """A training record the model reproduced (ROUGE-L(output, suffix) above the threshold)."""

    run = models.ForeignKey(EvalRun, related_name="hits", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="memorization_hits", on_delete=models.CASCADE)
    item = models.OneToOneField(EvalItem, on_delete=models.CASCADE, related_name="hit")
    rouge_l = models.FloatField()
    status = models.CharField(max_length=16, choices=HitStatus.choices, default=HitStatus.OPEN)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-rouge_l"]
        indexes = [models.Index(fields=["run", "status"])]


class HighRiskStore(models.Model):
    """Embeddings of memorised prefixes, written as files beside the model (see memorization.py)."""

    run = models.OneToOneField(EvalRun, related_name="high_risk_store", on_delete=models.CASCADE)
    path = models.CharField(max_length=500, help_text="Directory holding high_risk_embeddings.npy + high_risk_store.json.")
    embedding_model = models.CharField(max_length=300)
    threshold = models.FloatField(default=0.8, help_text="Cosine above which a prompt is high-risk (SF-Med: 0.8).")
    n_entries = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)


class ClinicianReview(models.Model):
    """A sample of judge-scored consultation replies sent to a clinician annotation queue, so the
    judge can be checked against clinicians (agreement per aspect on the run page)."""

    run = models.ForeignKey(EvalRun, related_name="clinician_reviews", on_delete=models.CASCADE)
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The replies as dialogue records (external id evalitem-<id>).")
    queue = models.ForeignKey("annotation.Queue", null=True, on_delete=models.SET_NULL, related_name="+")
    n_items = models.IntegerField(default=0)
    seed = models.IntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
