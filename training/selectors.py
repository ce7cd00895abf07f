"""Reads for the training pages (querysets and plain dicts; no writes)."""
from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet
from django.utils.translation import gettext_noop

from training.models import Checkpoint, ModelRef, RunMetric, TrainingRun

# Which metrics go on which chart of the live view (titles are catalogue msgids; the view translates them).
CHARTS = (
    (gettext_noop("Loss"), ("loss", "eval_loss")),
    (gettext_noop("Learning rate"), ("learning_rate",)),
    (gettext_noop("Grad norm"), ("grad_norm",)),
    (gettext_noop("Tokens / s"), ("tokens_per_second",)),
    (gettext_noop("DPO rewards"), ("rewards_chosen", "rewards_rejected", "rewards_margins")),
    (gettext_noop("DPO accuracy"), ("rewards_accuracy",)),
)


def runs_list() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("base_model", "job", "created_by")


def models_list() -> QuerySet[ModelRef]:
    return ModelRef.objects.select_related("parent", "run")


def usable_models() -> QuerySet[ModelRef]:
    """Models a run can start from: registered bases, final models and checkpoints."""
    return ModelRef.objects.order_by("-created_at")


def run_series(run: TrainingRun, max_points: int = 400) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value in RunMetric.objects.filter(run=run).order_by("name", "step").values_list("name", "step", "value"):
        series[name].append((step, value))
    # Thin long runs so the SVG stays small (keep first and last points).
    for name, pts in series.items():
        if len(pts) > max_points:
            stride = len(pts) / max_points
            series[name] = [pts[int(i * stride)] for i in range(max_points)] + [pts[-1]]
    return dict(series)


def run_latest(run: TrainingRun) -> dict[str, float]:
    return {name: pts[-1][1] for name, pts in run_series(run, max_points=2).items() if pts}


def run_checkpoints(run: TrainingRun) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run=run).select_related("model_ref").order_by("is_final", "step")
