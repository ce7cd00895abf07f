"""Reads for annotation: what a clinician may label, progress, agreement, consensus, exports.

`consensus_labels(queue)` is the interface the DataRater and domain-classifier trainers use:
    from medstudio.annotation.selectors import consensus_labels
    pairs = consensus_labels(queue)          # [(record_id, value), ...]
value is the mean rating (rating / per-turn rating queues), the agreed label (label queues) or
the agreed winner "chosen"/"rejected"/"tie" (preference queues); adjudicated items carry the
curator's value; disagreed and not-yet-complete items are left out.
"""
from __future__ import annotations

import json
from typing import Iterator

from django.db import connection
from django.db.models import Count, Q, QuerySet

from . import agreement as ag
from . import questions as qs
from .models import Adjudication, Assignment, Label, Queue, QueueItem, Status


def queues_for_annotator(user) -> QuerySet[Queue]:
    """Open queues this user may label: they are an assignee, or the queue has none."""
    return (Queue.objects.filter(is_open=True)
            .filter(Q(assignees=user) | Q(assignees__isnull=True))
            .select_related("question", "dataset").distinct())


def labelling_queue(pk: int, user) -> tuple[Queue | None, bool]:
    """(queue, may this user label it); the queue also carries this user's progress counts.

    This runs on every next-item, submit, skip and undo. The permission test and both counts are
    one plain SQL statement: building the same thing as ORM subqueries cost 1.5 ms more Python per
    request than running it (bench/bench_annotation_load.py), on the path with a 50 ms budget.
    Both counts are index-only scans (label_progress and the (queue, annotator) index).
    """
    queue = Queue.objects.select_related("question", "dataset").filter(pk=pk).order_by().first()
    if queue is None:
        return None, False
    assignees = connection.ops.quote_name(Queue.assignees.through._meta.db_table)
    labels = connection.ops.quote_name(Label._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT EXISTS(SELECT 1 FROM {assignees} WHERE queue_id = %s), "
            f"EXISTS(SELECT 1 FROM {assignees} WHERE queue_id = %s AND user_id = %s), "
            f"(SELECT COUNT(*) FROM {labels} WHERE queue_id = %s AND source = 'human'), "
            f"(SELECT COUNT(*) FROM {labels} WHERE queue_id = %s AND annotator = %s)",
            [pk, pk, user.pk, pk, pk, f"user:{user.pk}"])
        has_assignees, is_assignee, queue._done, queue._mine = cur.fetchone()
    queue._progress_user = user.pk
    return queue, queue.is_open and bool(is_assignee or not has_assignees)


def own_assignment(queue: Queue, user, assignment_id: int) -> Assignment | None:
    """This annotator's slot in this queue, with its record, for submitting or skipping it."""
    a = (Assignment.objects.select_related("item__record")
         .filter(pk=assignment_id, queue=queue, annotator=f"user:{user.pk}").first())
    if a is not None:
        a.queue = queue  # already loaded with its question and dataset: saves a join
    return a


def saved_values(assignment: Assignment) -> dict | None:
    """The answer already stored on a slot (one reopened by undo), else None. Only a slot that was
    submitted before can carry a label, so the others cost no query."""
    if not assignment.submitted_at:
        return None
    label = Label.objects.filter(assignment=assignment).only("values").first()
    return label.values if label is not None else None


def queue_progress(queue: Queue, user=None, *, new_labels: int = 0) -> dict:
    """Counts on indexed columns only. A queue loaded by `labelling_queue` for this user already
    carries them (no query); `new_labels` adds labels this request stored after that load."""
    total = queue.n_items * queue.annotators_per_item
    if user is not None and getattr(queue, "_progress_user", None) == user.pk:
        counts = {"done": queue._done + new_labels, "mine": queue._mine + new_labels}
    else:
        agg = {"done": Count("id", filter=Q(source="human"))}
        if user is not None:
            agg["mine"] = Count("id", filter=Q(annotator=f"user:{user.pk}"))
        counts = Label.objects.filter(queue=queue).aggregate(**agg)
    done = counts["done"]
    out = {"queue_done": done, "queue_total": total, "queue_pct": round(100 * done / total) if total else 0}
    if user is not None:
        out["mine_done"] = counts["mine"]
    return out


def annotator_names(keys) -> dict[str, str]:
    from django.contrib.auth import get_user_model

    ids = [int(k.split(":", 1)[1]) for k in keys if k.startswith("user:")]
    users = {u.pk: u.get_full_name() or u.username for u in get_user_model().objects.filter(pk__in=ids)}
    out = {}
    for k in keys:
        if k.startswith("user:"):
            out[k] = users.get(int(k.split(":", 1)[1]), k)
        elif k.startswith("model:"):
            out[k] = k[6:]
        else:
            out[k] = k
    return out


def _label_rows(queue: Queue, sources=("human", "model")):
    return (Label.objects.filter(queue=queue, source__in=sources)
            .values_list("item_id", "annotator", "values").order_by("item_id", "annotator"))


def ratings_by_measure(queue: Queue, *, sources=("human", "model"), with_scorer: bool = True,
                       scorer_runs=()) -> dict[str, dict]:
    """{field: {unit: {annotator: value}}} for every measure of the queue's question.

    With a suggestion scorer run, the scorer joins as annotator "scorer:<name>" on the primary
    field, so clinicians-vs-scorer agreement comes out of the same report. Other scorer runs on
    the queue's dataset join the same way as "scorer:<name>#<run id>".
    """
    kind = queue.question.kind
    out: dict[str, dict] = {m.field: {} for m in qs.measures(kind, queue.question.schema)}
    for item_id, annotator, values in _label_rows(queue, sources).iterator():
        for (fname, sub), v in qs.units(kind, values).items():
            if fname in out:
                out[fname].setdefault((item_id, sub) if sub else item_id, {})[annotator] = v
    primary = qs.primary_measure(kind)
    if with_scorer and queue.suggestion_run_id and primary and primary.level == "ordinal":
        key = f"scorer:{queue.suggestion_run.scorer}"
        for item_id, sugg in QueueItem.objects.filter(queue=queue, suggestion__isnull=False).values_list("id", "suggestion"):
            v = (sugg or {}).get("value")
            if v is not None and item_id in out[primary.field]:
                out[primary.field][item_id][key] = v
    if scorer_runs and primary and primary.level == "ordinal":
        from medstudio.handoffs.models import Score

        item_of = dict(QueueItem.objects.filter(queue=queue).values_list("record_id", "id"))
        for run in scorer_runs:
            key = f"scorer:{run.scorer}#{run.pk}"
            rows = Score.objects.filter(run=run, record_id__in=list(item_of), value__isnull=False)
            for record_id, v in rows.values_list("record_id", "value"):
                unit = out[primary.field].get(item_of[record_id])
                if unit is not None:
                    unit[key] = v
    return out


def comparable_runs(queue: Queue):
    """Scorer runs on the queue's dataset that can be compared with the labels (ordinal questions)."""
    from medstudio.handoffs.models import ScorerRun

    primary = qs.primary_measure(queue.question.kind)
    if primary is None or primary.level != "ordinal":
        return ScorerRun.objects.none()
    return ScorerRun.objects.filter(dataset_id=queue.dataset_id).exclude(pk=queue.suggestion_run_id)


def queue_agreement(queue: Queue, *, scorer_runs=()) -> list[tuple[qs.Measure, ag.AgreementReport]]:
    data = ratings_by_measure(queue, scorer_runs=scorer_runs)
    reports = []
    for m in qs.measures(queue.question.kind, queue.question.schema):
        ratings = data.get(m.field) or {}
        if ratings:
            reports.append((m, ag.agreement_report(ratings, level=m.level)))
    return reports


def is_human(annotator: str) -> bool:
    """Clinicians (and any person) label as "user:<id>"; LLM judges are "model:...", scorers "scorer:..."."""
    return annotator.startswith("user:")


def _central(values: list, level: str):
    """The humans' answer on one unit: the median rating (ordinal) or the most common label (nominal)."""
    if level == "ordinal":
        nums = sorted(x for x in (ag._to_number(v) for v in values) if x is not None)
        if not nums:
            return None
        mid = len(nums) // 2
        return nums[mid] if len(nums) % 2 else (nums[mid - 1] + nums[mid]) / 2
    try:
        counts: dict = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
    except TypeError:  # an unhashable answer (a list of tags): no single consensus value
        return None
    return max(sorted(counts, key=str), key=lambda v: counts[v])


def agreement_split(queue: Queue, *, scorer_runs=()) -> list[dict]:
    """Per measure: the humans-only report (the headline), and each judge or scorer against the humans.

    Returns [{"measure", "all": report over everyone, "human": report over humans only,
    "judges": [{"key", "pairs": [PairAgreement with each human], "consensus": PairAgreement vs the
    humans' median / majority on the same units (as annotator "humans")}]}].
    """
    data = ratings_by_measure(queue, scorer_runs=scorer_runs)
    out = []
    for m in qs.measures(queue.question.kind, queue.question.schema):
        ratings = data.get(m.field) or {}
        if not ratings:
            continue
        humans = {u: {a: v for a, v in per.items() if is_human(a)} for u, per in ratings.items()}
        full = ag.agreement_report(ratings, level=m.level)
        judges = []
        for key in [a for a in full.annotators if not is_human(a)]:
            against = {}
            for u, per in ratings.items():
                hv = [v for v in humans[u].values() if v is not None]
                c = _central(hv, m.level) if hv else None
                if c is not None and per.get(key) is not None:
                    against[u] = {"humans": c, key: per[key]}
            consensus = ag.agreement_report(against, level=m.level).pair("humans", key) if against else None
            judges.append({"key": key, "pairs": [p for p in full.pairs if key in (p.a, p.b) and (is_human(p.a) or is_human(p.b))],
                           "consensus": consensus})
        out.append({"measure": m, "all": full, "judges": judges,
                    "human": ag.agreement_report({u: per for u, per in humans.items() if per}, level=m.level)})
    return out


def consensus_sources(queue: Queue) -> tuple[str, ...]:
    """Whose labels the consensus rule counts: clinicians only, unless the queue counts its judges too."""
    return ("human", "model") if queue.consensus_judges else ("human",)


def consensus_outcomes(queue: Queue, *, sources: tuple[str, ...] | None = None,
                       threshold: float | None = None) -> dict[int, ag.ConsensusItem]:
    """The consensus rule over the primary field of every item that has labels or an adjudication.

    By default only humans count (`is_human`, the same notion as the agreement headline): LLM
    judges and scorers are compared with the clinicians, not averaged in with them. A queue whose
    `consensus_judges` is on (or an explicit `sources`) counts the judges' labels too.
    """
    primary = qs.primary_measure(queue.question.kind)
    if primary is None:
        return {}
    sources = consensus_sources(queue) if sources is None else tuple(sources)
    humans_only = "model" not in sources
    ratings: dict[int, dict] = {}
    for item_id, annotator, values in _label_rows(queue, sources).iterator():
        if humans_only and not is_human(annotator):
            continue
        v = qs.primary_value(queue.question.kind, values)
        if v is not None:
            ratings.setdefault(item_id, {})[annotator] = v
    adjudicated = dict(Adjudication.objects.filter(item__queue=queue).values_list("item_id", "value"))
    for item_id in adjudicated:
        ratings.setdefault(item_id, {})
    return ag.consensus(ratings, level=primary.level,
                        threshold=queue.consensus_threshold if threshold is None else threshold,
                        min_labels=min(2, queue.annotators_per_item), adjudicated=adjudicated)


def consensus_labels(queue: Queue, *, sources: tuple[str, ...] | None = None) -> list[tuple[int, object]]:
    """[(record_id, value)] for agreed and adjudicated items, in record id order (see module doc)."""
    outcomes = consensus_outcomes(queue, sources=sources)
    keep = {i: o.value for i, o in outcomes.items() if o.status in (ag.AGREED, ag.ADJUDICATED)}
    rec = dict(QueueItem.objects.filter(pk__in=keep).values_list("id", "record_id"))
    return sorted((rec[i], v) for i, v in keep.items())


def consensus_counts(outcomes: dict[int, ag.ConsensusItem]) -> dict[str, int]:
    counts = {ag.AGREED: 0, ag.DISAGREED: 0, ag.PENDING: 0, ag.ADJUDICATED: 0}
    for o in outcomes.values():
        counts[o.status] += 1
    return counts


def annotator_summary(queue: Queue) -> list[dict]:
    rows = (Label.objects.filter(queue=queue).values("annotator", "source")
            .annotate(n=Count("id")).order_by("annotator"))
    names = annotator_names([r["annotator"] for r in rows])
    failed = dict(Assignment.objects.filter(queue=queue, status=Status.FAILED).values("annotator")
                  .annotate(n=Count("id")).values_list("annotator", "n"))
    return [{**r, "name": names[r["annotator"]], "failed": failed.get(r["annotator"], 0)} for r in rows]


def labels_export_lines(queue: Queue) -> Iterator[str]:
    """One JSON line per label: who, when, how long, what they saw (pair order, suggestion)."""
    names = annotator_names(list(Label.objects.filter(queue=queue).values_list("annotator", flat=True).distinct()))
    qs_ = (Label.objects.filter(queue=queue).select_related("record", "assignment", "item")
           .order_by("item__position", "annotator"))
    for lab in qs_.iterator(chunk_size=500):
        row = {
            "queue": queue.pk, "question": queue.question.name, "kind": queue.question.kind,
            "record_id": lab.record_id, "external_id": lab.record.external_id,
            "annotator": lab.annotator, "annotator_name": names.get(lab.annotator, lab.annotator),
            "source": lab.source, "values": lab.values,
            "started_at": lab.assignment.started_at.isoformat() if lab.assignment.started_at else None,
            "submitted_at": (lab.assignment.submitted_at or lab.updated_at).isoformat(),
            "duration_ms": lab.duration_ms,
        }
        if lab.shown_order:
            row["shown_order"] = lab.shown_order
        if lab.suggestion_shown:
            row["suggestion_shown"] = lab.item.suggestion
        if lab.source == "model":
            row["prompt"] = lab.prompt
            row["raw_reply"] = lab.raw_reply
        yield json.dumps(row, ensure_ascii=False) + "\n"
