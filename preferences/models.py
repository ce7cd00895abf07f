"""Preference sets: DPO pairs with their provenance, the runs that built and voted on them, and reviews.

Writes go through preferences/services.py (audited); reads through preferences/selectors.py.
"""
from django.conf import settings
from django.db import models


class Origin(models.TextChoices):
    SUBJECTIVE = "subjective", "Subjective (LLM answer vs existing, judged)"
    OBJECTIVE = "objective", "Objective (MCQ truth vs wrong option)"
    SAMPLED = "sampled", "Sampled (N answers, K judges vote)"
    FROM_SCORES = "from_scores", "From existing scores"


class PairStatus(models.TextChoices):
    OK = "ok", "Ordered"
    TIE = "tie", "Tie (kept apart)"


class Action(models.TextChoices):
    NONE = "", "Not voted"
    KEEP = "keep", "Kept"
    FLIP = "flip", "Flipped (lowest strength)"
    DROP = "drop", "Dropped (highest strength)"
    UNSCORED = "unscored", "No vote"


class Verdict(models.TextChoices):
    NONE = "", "Not reviewed"
    CHOSEN = "chosen", "Clinician agrees"
    REJECTED = "rejected", "Clinician prefers the rejected answer"
    TIE = "tie", "Clinician: tie"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Stopped (backend unavailable); resumable"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"



class BuildRun(models.Model):
    """One pair builder over a dataset, a selection or a file; resumable from `after`."""

    pref_set = models.ForeignKey("handoffs.PreferenceSet", related_name="runs", on_delete=models.CASCADE)
    builder = models.CharField(max_length=16, choices=Origin.choices)
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    selection = models.ForeignKey("handoffs.Selection", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  help_text="A frozen selection used as source.")
    path = models.CharField(max_length=500, blank=True, help_text="A JSONL file used as source (scored answers).")
    params = models.JSONField(default=dict, blank=True, help_text="Builder params: models, prompts, seed, gaps...")
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    after = models.BigIntegerField(default=0, help_text="Resume point: last record id (or file line) fully stored.")
    n_done = models.IntegerField(default=0)
    n_pairs = models.IntegerField(default=0)
    n_ties = models.IntegerField(default=0)
    n_failed = models.IntegerField(default=0)
    usage = models.JSONField(default=dict, blank=True, help_text="Calls and tokens, per model.")
    cost_usd = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.builder} run #{self.pk} -> {self.pref_set_id}"


class BuildFailure(models.Model):
    """An item a builder could not turn into a pair, and why (shown to the curator)."""

    run = models.ForeignKey(BuildRun, related_name="failures", on_delete=models.CASCADE)
    item_key = models.BigIntegerField(help_text="Record id, or file line.")
    record = models.ForeignKey("datasets.Record", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField()
    raw = models.TextField(blank=True, help_text="The model reply that could not be used.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "item_key"], name="pref_failure_unique_item")]


class VoteRun(models.Model):
    """Reward-model (or judge) voting over a set: strengths, then flip / drop fractions."""

    METHODS = [("reward_models", "K trained reward models"), ("judges", "K judges' scores")]

    pref_set = models.ForeignKey("handoffs.PreferenceSet", related_name="votes", on_delete=models.CASCADE)
    method = models.CharField(max_length=16, choices=METHODS)
    params = models.JSONField(default=dict, blank=True, help_text="k, base model, judges, training settings.")
    flip_frac = models.FloatField(default=0.1, help_text="SF-Med: lowest 10% flipped.")
    drop_frac = models.FloatField(default=0.1, help_text="SF-Med: highest 10% dropped.")
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    state = models.JSONField(default=dict, blank=True, help_text="Resume state: trained model paths.")
    summary = models.JSONField(default=dict, blank=True, help_text="Counts per action, histogram.")
    usage = models.JSONField(default=dict, blank=True)
    cost_usd = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class PreferencePair(models.Model):
    """One DPO pair: prompt, chosen, rejected, where it came from, and what voting/review did to it."""

    pref_set = models.ForeignKey("handoffs.PreferenceSet", related_name="pairs", on_delete=models.CASCADE)
    run = models.ForeignKey(BuildRun, null=True, blank=True, related_name="pairs", on_delete=models.SET_NULL)
    item_key = models.BigIntegerField(default=0, help_text="Record id (or file line) it was built from.")
    n = models.PositiveSmallIntegerField(default=0, help_text="Index among the pairs of one item.")
    record = models.ForeignKey("datasets.Record", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    origin = models.CharField(max_length=16, choices=Origin.choices)
    prompt_turns = models.JSONField(help_text="[{role, content}], system first when present.")
    chosen = models.TextField()
    rejected = models.TextField()
    status = models.CharField(max_length=4, choices=PairStatus.choices, default=PairStatus.OK)
    chosen_score = models.FloatField(null=True, blank=True)
    rejected_score = models.FloatField(null=True, blank=True)
    provenance = models.JSONField(default=dict, help_text="Builder, models, prompts, raw judge replies, seed.")
    strength = models.FloatField(null=True, blank=True, help_text="Mean over voters of r(chosen) - r(rejected).")
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.NONE, blank=True)
    vote = models.ForeignKey(VoteRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    vote_detail = models.JSONField(default=dict, blank=True, help_text="Per-voter rewards or scores.")
    verdict = models.CharField(max_length=8, choices=Verdict.choices, default=Verdict.NONE, blank=True)
    verdict_detail = models.JSONField(default=dict, blank=True, help_text="Clinician labels behind the verdict.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "item_key", "n"], name="pref_pair_unique_run_item")]
        indexes = [
            models.Index(fields=["pref_set", "origin"]),
            models.Index(fields=["pref_set", "strength"]),
            models.Index(fields=["pref_set", "action"]),
        ]

    def __str__(self) -> str:
        return f"pair #{self.pk} ({self.origin})"


class ReviewRound(models.Model):
    """Pairs sent to a clinician queue (annotation engine) as a pair dataset."""

    pref_set = models.ForeignKey("handoffs.PreferenceSet", related_name="reviews", on_delete=models.CASCADE)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="+",
                                help_text="The pair records the queue serves (external id = pair id).")
    queue = models.ForeignKey("annotation.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    n_pairs = models.IntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class DiversifyRun(models.Model):
    """Instruction diversification (docs/METHODS.md 2.4); its instructions become system prompts of a new SFT dataset."""

    seeds = models.JSONField(help_text="Seed system instructions.")
    params = models.JSONField(default=dict, blank=True, help_text="rounds, m, n, k, model, seed.")
    source = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="SFT records (qa or dialogue) that receive the instructions.")
    output = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    output_name = models.CharField(max_length=200)
    state = models.JSONField(default=dict, blank=True, help_text="Banks, round, accepted instructions, per-round log.")
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    usage = models.JSONField(default=dict, blank=True)
    cost_usd = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class PreferenceExport(models.Model):
    """Files written from a set: TRL conversational JSONL + LLaMA-Factory JSON (+ dataset_info.json)."""

    pref_set = models.ForeignKey("handoffs.PreferenceSet", related_name="exports", on_delete=models.CASCADE)
    directory = models.CharField(max_length=500)
    files = models.JSONField(default=dict, help_text="format -> path")
    counts = models.JSONField(default=dict, help_text="n_pairs, by_origin, left_out")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the TRL file.")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
