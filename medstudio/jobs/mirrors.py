"""One source of truth for status: models that keep their own status next to a Job.

Run and build models (training runs, evaluation runs, scorer runs, selections, mixtures, preference
builds and votes...) show a status in their own words ("building", "ready", "done", "paused"...),
written by their handler. When the Job finishes in a way the handler did not write (a queued job
cancelled, a handler crash, a cancel between two progress calls, a worker lost for good), such a
copy would keep saying "running" for a job that failed. So every model with a `status` and a
foreign key to `Job` registers here, in its app's `ready()`:

    register_status_mirror(TrainingRun, words={"succeeded": "succeeded", "failed": "failed",
                                               "cancelled": "cancelled"},
                           terminal=("succeeded", "failed", "cancelled"))

and the job services (`_claim`, `_finish`, `job_cancel`, and recovery when it re-queues a lost
worker's job: `jobs_recover`, `_requeue_after_connection_loss`) call `mirror_job_status(job)` inside
the same transaction that writes the Job's status: every linked row whose status is not already one
of its model's terminal words takes the Job's status, mapped to the model's words. A terminal word
the handler wrote itself (say "paused" for a cancelled preference build, "ready" for a selection) is
kept.

The live statuses (queued, running) are mirrored too, through `live` ({"queued": word, "running":
word}; by default the model's own "queued" and "running" when its status choices have them): a row
showing one of those words follows the Job, so a run whose worker died and whose Job went back to
the queue shows "queued", not "running" from the dead attempt, and "running" again once a worker
claims it. A row showing any other word (a handler's own "training", "building", a terminal word)
is left alone. A model whose status field has no choices names its live words at registration. `tests/platform/test_status_source.py` finds every model with a status and a Job link
(introspection, so a new model cannot be forgotten) and checks it is registered and never shows
running or queued for a failed or cancelled job.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import FINISHED, Job, JobStatus

LIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class StatusMirror:
    model: type[models.Model]
    words: dict[str, str]                       # Job status -> the model's word (absent: leave it alone)
    terminal: frozenset[str]                    # the model's words a finished job never overrides
    status_field: str = "status"
    rows: Callable[[Job], models.QuerySet] | None = field(default=None)  # linked rows (default: job FK)
    live: dict[str, str] = field(default_factory=dict)  # "queued"/"running" -> the model's word

    def linked(self, job: Job) -> models.QuerySet:
        if self.rows is not None:
            return self.rows(job)
        links = [f.name for f in self.model._meta.get_fields()
                 if getattr(f, "related_model", None) is Job and (f.many_to_one or f.one_to_one) and f.concrete]
        q = models.Q()
        for name in links:
            q |= models.Q(**{f"{name}_id": job.pk})
        return self.model._default_manager.filter(q)


_MIRRORS: dict[type[models.Model], StatusMirror] = {}


def register_status_mirror(model: type[models.Model], *, words: dict[str, str], terminal: tuple[str, ...] | list[str],
                           status_field: str = "status", rows: Callable[[Job], models.QuerySet] | None = None,
                           live: dict[str, str] | None = None) -> None:
    """Make `model.<status_field>` follow its Job: see the module docstring. Idempotent."""
    bad = set(words) - {s for s in FINISHED}
    if bad:
        raise ValueError(f"only finished Job statuses can be mirrored in words, not {sorted(bad)}")
    if live is None:
        choices = {c[0] for c in (model._meta.get_field(status_field).choices or [])}
        live = {s: str(s) for s in LIVE if s in choices}
    bad = set(live) - set(LIVE)
    if bad:
        raise ValueError(f"live words are for queued and running only, not {sorted(bad)}")
    overlap = set(live.values()) & set(terminal)
    if overlap:
        raise ValueError(f"a live word cannot be terminal too: {sorted(overlap)}")
    _MIRRORS[model] = StatusMirror(model=model, words=dict(words), terminal=frozenset(terminal),
                                   status_field=status_field, rows=rows, live=dict(live))


def status_mirrors() -> dict[type[models.Model], StatusMirror]:
    return dict(_MIRRORS)


def mirror_job_status(job: Job, status: str | None = None) -> int:
    """Write `status` (default: job.status) onto every registered row linked to `job`. Call it inside
    the transaction that writes the Job's status. Returns how many rows changed."""
    status = status or job.status
    changed = 0
    for mirror in _MIRRORS.values():
        if status in LIVE:
            word = mirror.live.get(status)
            if word is None:
                continue
            # only a row showing a live word follows: a handler's own word ("training", "paused") stays
            qs = mirror.linked(job).filter(**{f"{mirror.status_field}__in": set(mirror.live.values()) - {word}})
            changed += qs.update(**{mirror.status_field: word})
            continue
        word = mirror.words.get(status)
        if word is None:
            continue
        qs = mirror.linked(job).exclude(**{f"{mirror.status_field}__in": mirror.terminal})
        fields = {mirror.status_field: word}
        if any(f.name == "finished_at" for f in mirror.model._meta.concrete_fields):
            fields["finished_at"] = Coalesce(F("finished_at"), Value(timezone.now()))
        changed += qs.update(**fields)
    return changed
