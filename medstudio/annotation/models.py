"""Labelling: questions, queues of items, annotator slots (assignments) and labels.

Safety against lost or duplicated work lives in database constraints, not in view code:
- an annotator holds at most one slot per item            (assignment_unique_item_annotator)
- an annotator holds at most one open item per queue      (assignment_one_active_per_queue)
- a slot carries at most one label                        (Label.assignment is one-to-one)
- an annotator has at most one label per item             (label_unique_item_annotator)
Slots are created up front (N per item), so "N annotators per item" is the number of rows, and
claiming a slot is a compare-and-swap UPDATE on a free row (see services.assignment_next).
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from . import questions as q


class QuestionKind(models.TextChoices):
    RATING = q.RATING, _("Quality rating (0-5 + DataRater aspects)")
    LABEL = q.LABEL, _("Domain label")
    TURN_RATING = q.TURN_RATING, _("Per-turn dialogue rating")
    PREFERENCE = q.PREFERENCE, _("Preference between two answers")
    TEXT = q.TEXT, _("Free text")


class Question(models.Model):
    """What annotators answer about each item; `schema` refines the kind's defaults (questions.py)."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=QuestionKind.choices)
    schema = models.JSONField(default=dict, blank=True, help_text="Scale, labels, aspects (see annotation/questions.py).")
    instructions = models.TextField(blank=True, help_text="Shown to annotators above the item.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def full_schema(self) -> dict:
        return q.schema_for(self.kind, self.schema)


class Queue(models.Model):
    """Items of one dataset that N annotators each label with one question."""

    name = models.CharField(max_length=200)
    dataset = models.ForeignKey("datasets.Dataset", related_name="annotation_queues", on_delete=models.CASCADE)
    question = models.ForeignKey(Question, related_name="queues", on_delete=models.PROTECT)
    annotators_per_item = models.PositiveSmallIntegerField(default=2)
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="annotation_queues",
                                       help_text="Who may label; empty = every clinician.")
    suggestion_run = models.ForeignKey("handoffs.ScorerRun", null=True, blank=True, on_delete=models.SET_NULL,
                                       help_text="A scorer run whose value is shown per item, or compared with labels.")
    show_suggestion = models.BooleanField(default=False, help_text="Pre-fill the scorer's value (off avoids anchoring).")
    consensus_threshold = models.FloatField(default=2.0, help_text="Ratings this far apart (max - min) are set aside.")
    consensus_judges = models.BooleanField(
        default=False, help_text="Count LLM judges' labels in the consensus too (a judge-only queue, CareBot's "
                                 "GPT-4-twice protocol); off: clinicians only, judges shown beside them.")
    sample = models.JSONField(default=dict, blank=True, help_text="How the items were chosen (method, n, seed, ...).")
    n_items = models.PositiveIntegerField(default=0)
    is_open = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class QueueItem(models.Model):
    queue = models.ForeignKey(Queue, related_name="items", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="+", on_delete=models.CASCADE)
    position = models.PositiveIntegerField(help_text="Serving order (shuffled when the queue is built).")
    suggestion = models.JSONField(null=True, blank=True, help_text="The scorer's value and detail for this record.")

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["queue", "record"], name="queueitem_unique_record")]

    def __str__(self) -> str:
        return f"{self.queue_id}:{self.record_id}"


class Status(models.TextChoices):
    FREE = "free", "Free"
    ACTIVE = "active", "Being labelled"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed (judge)"


class Assignment(models.Model):
    """One annotator slot on one item. Free slots have no annotator."""

    queue = models.ForeignKey(Queue, related_name="assignments", on_delete=models.CASCADE)
    item = models.ForeignKey(QueueItem, related_name="assignments", on_delete=models.CASCADE)
    position = models.PositiveIntegerField(help_text="Copy of item.position, so the next free slot is one index scan.")
    annotator = models.CharField(max_length=200, null=True, blank=True,
                                 help_text='"user:<id>" or "model:<name>#<pass>"; null while the slot is free.')
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.FREE)
    swapped = models.BooleanField(default=False, help_text="Pairs: the rejected answer was shown as A.")
    revision = models.PositiveIntegerField(default=0, help_text="Bumped by each submit/undo; a stale form cannot overwrite.")
    started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why a judge could not label this item.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_unique_item_annotator"),
            models.UniqueConstraint(fields=["queue", "annotator"], condition=Q(status="active"),
                                    name="assignment_one_active_per_queue"),
        ]
        indexes = [
            models.Index(fields=["queue", "status", "position"], name="assignment_next_free"),
            models.Index(fields=["queue", "annotator", "status"], name="assignment_by_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id}/{self.annotator or 'free'}"


class Label(models.Model):
    """An annotator's answer on one item; judges' labels carry their prompt and raw reply."""

    assignment = models.OneToOneField(Assignment, related_name="label", on_delete=models.CASCADE)
    queue = models.ForeignKey(Queue, related_name="labels", on_delete=models.CASCADE)
    item = models.ForeignKey(QueueItem, related_name="labels", on_delete=models.CASCADE)
    record = models.ForeignKey("datasets.Record", related_name="+", on_delete=models.CASCADE)
    annotator = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=8, default="human", help_text='"human" or "model".')
    values = models.JSONField(help_text="Canonical answer (pairs in record order: chosen/rejected).")
    primary_value = models.FloatField(null=True, blank=True, help_text="Score / mean turn rating, for SQL aggregates.")
    primary_label = models.CharField(max_length=100, blank=True, help_text="Label / winner, for SQL aggregates.")
    shown_order = models.CharField(max_length=2, blank=True, help_text='Pairs: "AB" = chosen shown first, "BA" = swapped.')
    suggestion_shown = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt = models.JSONField(null=True, blank=True, help_text="Judges: the messages sent.")
    raw_reply = models.TextField(blank=True, help_text="Judges: the reply as received.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="label_unique_item_annotator")]
        indexes = [models.Index(fields=["queue", "annotator"]),
                   models.Index(fields=["queue", "source"], name="label_progress")]  # the progress count


class Adjudication(models.Model):
    """A curator's final value for an item the annotators disagreed on."""

    item = models.OneToOneField(QueueItem, related_name="adjudication", on_delete=models.CASCADE)
    value = models.JSONField(help_text="The primary value: a number for ratings, a string for labels/winners.")
    note = models.TextField(blank=True)
    curator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
