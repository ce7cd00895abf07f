"""The one write path for annotation: questions, queues, claiming/submitting/skipping/undoing
items, judges' labels and adjudications. Every function is keyword-only, atomic and audited.

How "nothing is lost" holds (see models.py for the constraints):
- claiming the next item is an UPDATE ... WHERE status='free' on one slot row (compare-and-swap),
  with SKIP LOCKED on Postgres so 50 clinicians do not queue on the same row;
- submitting is an UPDATE ... WHERE status='active' AND revision=<the form's revision>, so a
  double click, a retry after a network error or a second tab cannot write twice: the replay
  finds the label already there and is answered "already saved" when it carries the same answer,
  or "conflict" (nothing overwritten) when it carries another.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Iterable

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from medstudio.audit.services import audit_log

from . import questions as qs
from .models import Adjudication, Assignment, Label, Queue, QueueItem, Question, Status
from .sampling import near_threshold, random_sample, stratified_sample


def answer_error_text(exc: qs.AnswerError) -> str:
    """An AnswerError in the request's language: its message template and a word-valued parameter
    (an aspect or "score") go through the catalogue; numbers and the annotator's own input do not."""
    if not exc.params:
        return gettext(exc.message)
    params = {k: gettext(v) if k == "what" and isinstance(v, str) else v for k, v in exc.params.items()}
    return gettext(exc.message) % params


class AnnotationError(ValueError):
    """Bad input or an impossible request; the message is shown to the user as is."""


class SubmitConflict(AnnotationError):
    """The item was already submitted with another answer (another tab, or an undo elsewhere)."""


def annotator_key(user) -> str:
    return f"user:{user.pk}"


# ------------------------------------------------------------------------------------ questions

@transaction.atomic
def question_create(*, user, name: str, kind: str, schema: dict | None = None, instructions: str = "") -> Question:
    """Create a question after checking its schema (scale fits the digit keys, labels distinct...)."""
    name = (name or "").strip()
    if not name:
        raise AnnotationError(gettext("A question needs a name."))
    try:
        qs.validate_schema(kind, schema or {})
    except qs.AnswerError as exc:
        raise AnnotationError(answer_error_text(exc)) from None
    question = Question.objects.create(name=name, kind=kind, schema=schema or {}, instructions=instructions,
                                       created_by=user)
    audit_log(actor=user, action="annotation.question_create", target=question, data={"kind": kind, "schema": schema})
    return question


@transaction.atomic
def starter_questions_create(*, user) -> list[Question]:
    """Create the starter questions (questions.STARTER_QUESTIONS) that do not exist yet, by name."""
    made = []
    for spec in qs.STARTER_QUESTIONS:
        if Question.objects.filter(name=spec["name"], kind=spec["kind"]).exists():
            continue
        made.append(question_create(user=user, name=spec["name"], kind=spec["kind"], schema=spec["schema"],
                                    instructions=spec["instructions"]))
    return made


# --------------------------------------------------------------------------------------- queues

# Which record kinds each question can be asked about.
COMPATIBLE = {
    qs.TURN_RATING: {"dialogue"},
    qs.PREFERENCE: {"pair"},
}
SAMPLE_METHODS = ("all", "random", "stratified", "threshold")
STRATIFY_FIELDS = ("subset", "lang", "source")


def _pick_records(*, dataset, method: str, n: int | None, seed: int, field: str, threshold: float | None,
                  score_run, selection=None) -> list[int]:
    from medstudio.datasets.models import Record

    records = Record.objects.filter(dataset=dataset)
    if selection is not None:
        # Selections are frozen record sets (curation.studio); a queue takes the part of one that
        # lies in its dataset, then samples from it like from a whole dataset.
        from medstudio.handoffs.models import SelectionRecord

        records = records.filter(id__in=SelectionRecord.objects.filter(selection=selection).values("record_id"))
    if method == "all":
        ids = list(records.order_by("id").values_list("id", flat=True))
        return ids[:n] if n else ids
    if not n or n <= 0:
        raise AnnotationError(gettext("Give the number of items to sample."))
    if method == "random":
        return random_sample(list(records.values_list("id", flat=True)), n, seed=seed)
    if method == "stratified":
        if field in STRATIFY_FIELDS:
            rows = list(records.values_list("id", field))
        elif field.startswith("meta."):
            key = field[5:]
            rows = [(rid, (c.get("meta") or {}).get(key)) for rid, c in records.values_list("id", "content").iterator()]
        else:
            raise AnnotationError(gettext("Stratify by one of %(fields)s or meta.<field>, not %(field)s.")
                                  % {"fields": ", ".join(STRATIFY_FIELDS), "field": repr(field)})
        return stratified_sample(rows, n, seed=seed)
    if method == "threshold":
        if score_run is None or threshold is None:
            raise AnnotationError(gettext("Sampling near a threshold needs a scorer run and a threshold."))
        if score_run.dataset_id != dataset.pk:
            raise AnnotationError(gettext("The scorer run belongs to another dataset."))
        from medstudio.handoffs.models import Score

        rows = list(Score.objects.filter(run=score_run, value__isnull=False).values_list("record_id", "value"))
        if not rows:
            raise AnnotationError(gettext("That scorer run has no scored records."))
        return near_threshold(rows, n, float(threshold))
    raise AnnotationError(gettext("Unknown sampling method %(method)s; use one of %(methods)s.")
                          % {"method": repr(method), "methods": ", ".join(SAMPLE_METHODS)})


def _suggestions(run, record_ids: list[int]) -> dict[int, dict]:
    from medstudio.handoffs.models import Score

    out = {}
    for rid, value, keep, reason, detail in Score.objects.filter(run=run, record_id__in=record_ids).values_list(
            "record_id", "value", "keep", "reason", "detail"):
        # Per-turn values (ConFilter's detail["turns"][i]["cf"]) and short verdicts are worth
        # showing beside the item; large blobs are not copied into every queue item.
        detail = detail or {}
        small = {k: v for k, v in detail.items() if len(str(v)) <= 500}
        turns = detail.get("turns")
        if isinstance(turns, list) and turns and all(isinstance(t, dict) for t in turns):
            per_turn = []
            for t in turns:
                v = next((t[k] for k in ("cf", "value", "score") if k in t), None)
                per_turn.append(round(v, 3) if isinstance(v, float) else v)
            small["per_turn"] = per_turn
        out[rid] = {"scorer": run.scorer, "value": value, "keep": keep, "reason": reason, "detail": small}
    return out


@transaction.atomic
def queue_create(*, user, name: str, dataset, question: Question, annotators_per_item: int = 2,
                 assignees: Iterable = (), method: str = "all", n: int | None = None, seed: int = 0, field: str = "",
                 threshold: float | None = None, suggestion_run=None, show_suggestion: bool = False,
                 consensus_threshold: float = 2.0, selection=None) -> Queue:
    """Build a queue: pick records, shuffle them, and create N free slots per item."""
    name = (name or "").strip()
    if not name:
        raise AnnotationError(gettext("A queue needs a name."))
    if not 1 <= int(annotators_per_item) <= 20:
        raise AnnotationError(gettext("Annotators per item must be between 1 and 20."))
    allowed = COMPATIBLE.get(question.kind)
    if allowed and dataset.kind not in allowed:
        raise AnnotationError(gettext("A %(question_kind)s question needs a %(kinds)s dataset; %(name)s holds %(kind)s records.")
                              % {"question_kind": question.get_kind_display(), "kinds": " or ".join(sorted(allowed)),
                                 "name": dataset.name, "kind": dataset.kind})
    if suggestion_run is not None and suggestion_run.dataset_id != dataset.pk:
        raise AnnotationError(gettext("The scorer run belongs to another dataset."))
    ids = _pick_records(dataset=dataset, method=method, n=n, seed=seed, field=field, threshold=threshold,
                        score_run=suggestion_run, selection=selection)
    if not ids:
        where = f"selection {selection} within {dataset.name}" if selection is not None else dataset.name
        raise AnnotationError(gettext("No records to label in %(where)s.") % {"where": where})
    queue = Queue.objects.create(
        name=name, dataset=dataset, question=question, annotators_per_item=annotators_per_item,
        suggestion_run=suggestion_run, show_suggestion=bool(show_suggestion and suggestion_run),
        consensus_threshold=consensus_threshold, n_items=len(ids), created_by=user,
        sample={"method": method, "n": n, "seed": seed, "field": field, "threshold": threshold,
                "selection": selection.pk if selection is not None else None},
    )
    queue.assignees.set(list(assignees))
    rng = random.Random(seed)
    order = list(ids)
    rng.shuffle(order)
    sugg = _suggestions(suggestion_run, ids) if suggestion_run else {}
    items = QueueItem.objects.bulk_create(
        [QueueItem(queue=queue, record_id=rid, position=i, suggestion=sugg.get(rid)) for i, rid in enumerate(order)],
        batch_size=1000,
    )
    if connection.vendor != "postgresql" or any(it.pk is None for it in items):
        items = list(QueueItem.objects.filter(queue=queue).order_by("position"))
    pair = question.kind == qs.PREFERENCE
    Assignment.objects.bulk_create(
        [Assignment(queue=queue, item=it, position=it.position, swapped=pair and rng.random() < 0.5)
         for it in items for _ in range(int(annotators_per_item))],
        batch_size=2000,
    )
    audit_log(actor=user, action="annotation.queue_create", target=queue,
              data={"dataset": dataset.pk, "question": question.pk, "n_items": len(ids), **queue.sample})
    return queue


@transaction.atomic
def queue_update(*, queue: Queue, user, is_open: bool | None = None, show_suggestion: bool | None = None,
                 consensus_threshold: float | None = None, consensus_judges: bool | None = None) -> Queue:
    """Change a queue's settings (open/closed, suggestion shown or hidden, consensus threshold, whether
    the consensus counts LLM judges)."""
    changed = {}
    if is_open is not None:
        queue.is_open = is_open
        changed["is_open"] = is_open
    if show_suggestion is not None:
        queue.show_suggestion = bool(show_suggestion and queue.suggestion_run_id)
        changed["show_suggestion"] = queue.show_suggestion
    if consensus_threshold is not None:
        if consensus_threshold <= 0:
            raise AnnotationError(gettext("The consensus threshold must be positive."))
        queue.consensus_threshold = consensus_threshold
        changed["consensus_threshold"] = consensus_threshold
    if consensus_judges is not None:
        queue.consensus_judges = bool(consensus_judges)
        changed["consensus_judges"] = queue.consensus_judges
    queue.save()
    audit_log(actor=user, action="annotation.queue_update", target=queue, data=changed)
    return queue


# -------------------------------------------------------------------------------- labelling flow

def _claim_sql(table: str) -> str:
    # One statement, one round trip, in autocommit: pick the first free slot (serving order) on an
    # item this annotator holds no slot of, lock it while skipping rows other claims hold right now
    # (SKIP LOCKED: 50 clinicians do not queue on the same row), take it, return its id. The
    # unique constraints still decide every race (see models.py).
    return (
        f"UPDATE {table} SET annotator = %s, user_id = %s, status = 'active', started_at = %s, "
        f"revision = revision + 1 "
        f"WHERE id = (SELECT f.id FROM {table} f WHERE f.queue_id = %s AND f.status = 'free' "
        f"AND NOT EXISTS (SELECT 1 FROM {table} m WHERE m.item_id = f.item_id AND m.annotator = %s) "
        f"ORDER BY f.position LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'free' RETURNING id")


def _claim(queue: Queue, user, key: str, now) -> int | None:
    """Claim one free slot for this annotator; its id, or None when none was won this round."""
    if connection.vendor == "postgresql":
        sql = _claim_sql(connection.ops.quote_name(Assignment._meta.db_table))
        with connection.cursor() as cur:
            cur.execute(sql, [key, user.pk, now, queue.pk, key])
            row = cur.fetchone()
        return row[0] if row else None
    # SQLite (the embedded default) has one writer at a time, so a plain compare-and-swap on the
    # first free slot is enough; losing it to another writer just means another round.
    mine = Assignment.objects.filter(queue=queue, annotator=key).values("item_id")
    cand = (Assignment.objects.filter(queue=queue, status=Status.FREE).exclude(item_id__in=mine)
            .order_by("position").values_list("pk", flat=True).first())
    if cand is None:
        return None
    won = Assignment.objects.filter(pk=cand, status=Status.FREE).update(
        annotator=key, user=user, status=Status.ACTIVE, started_at=now, revision=F("revision") + 1)
    return cand if won else None


CLAIM_WAIT_S = 5.0


def assignment_next(*, queue: Queue, user, known_none_active: bool = False) -> Assignment | None:
    """The item this annotator should label now: their open one, else a newly claimed free slot.

    `known_none_active` skips the first lookup when the caller has just closed this annotator's
    open item (submit, skip). Claims are reservations kept on the slot itself (annotator,
    started_at); they are not audited, since nothing is decided until a label is submitted (which
    is). A claim lost in a crash only leaves a slot active for its annotator, who gets it back.
    """
    key = annotator_key(user)
    base = Assignment.objects.select_related("item__record")
    if not known_none_active or not queue.is_open:
        active = base.filter(queue=queue, annotator=key, status=Status.ACTIVE).first()
        if active is not None or not queue.is_open:
            return active
    free = Assignment.objects.filter(queue=queue, status=Status.FREE)
    # Free slots locked by claims in flight are looked at again until those claims commit. The wait
    # is bounded in time, not in tries: on a loaded machine a claim took longer than 20 quick tries
    # (0.4 s), and a second tab then got nothing while the first tab's claim was landing.
    deadline = time.monotonic() + CLAIM_WAIT_S
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            if connection.in_atomic_block:
                with transaction.atomic():  # a savepoint, so a lost race leaves the caller's transaction usable
                    won = _claim(queue, user, key, timezone.now())
            else:
                won = _claim(queue, user, key, timezone.now())
        except IntegrityError:
            # Another tab of the same annotator claimed an item a moment ago (one open item per
            # queue): return that one.
            return base.filter(queue=queue, annotator=key, status=Status.ACTIVE).first()
        if won:
            return base.get(pk=won)
        if not free.exclude(item_id__in=Assignment.objects.filter(queue=queue, annotator=key).values("item_id")).exists():
            # Nothing free (committed) is left for us; a claim of our own other tab may just have landed.
            return base.filter(queue=queue, annotator=key, status=Status.ACTIVE).first()
        # Every free slot for us is locked by claims in flight (or we lost a race): look again shortly.
        time.sleep(min(0.002 * attempt, 0.05))
    return base.filter(queue=queue, annotator=key, status=Status.ACTIVE).first()


@dataclass
class SubmitOutcome:
    label: Label
    status: str  # "saved" | "already_saved"
    created: bool = False  # a new label (not a change to one reopened by undo)


def _duration_ms(assignment: Assignment, client_ms: Any, now) -> int | None:
    try:
        v = int(client_ms)
        # The browser measures time on screen best; trust it unless it is absurd.
        if 0 < v < 24 * 3600 * 1000:
            return v
    except (TypeError, ValueError):
        pass
    if assignment.started_at:
        return max(0, int((now - assignment.started_at).total_seconds() * 1000))
    return None


def label_submit(*, assignment_id: int, user, answer: dict, revision: int, duration_ms: Any = None,
                 assignment: Assignment | None = None) -> SubmitOutcome:
    """Store this annotator's answer on their open item, exactly once.

    `assignment` may be passed already loaded (with item__record and queue__question) to save a
    query; it is only used for reading, every decision is taken by the conditional UPDATE below.
    """
    key = annotator_key(user)
    a = assignment
    if a is None or a.pk != assignment_id or a.annotator != key:
        try:
            a = Assignment.objects.select_related("item__record", "queue__question").get(pk=assignment_id, annotator=key)
        except Assignment.DoesNotExist:
            raise AnnotationError(gettext("This item is not assigned to you (it may have been released by an undo).")) from None
    question = a.queue.question
    try:
        values = qs.clean_answer(question.kind, question.schema, answer, content=a.item.record.content,
                                 swapped=a.swapped)
    except qs.AnswerError as exc:
        raise AnnotationError(answer_error_text(exc)) from None
    now = timezone.now()
    with transaction.atomic():
        won = Assignment.objects.filter(pk=a.pk, status=Status.ACTIVE, revision=revision).update(
            status=Status.DONE, submitted_at=now, revision=F("revision") + 1)
        if not won:
            existing = Label.objects.filter(assignment=a).first()
            if existing is not None and existing.values == values:
                return SubmitOutcome(existing, "already_saved")
            raise SubmitConflict(gettext("This item was already submitted (in another tab?) with a different answer; "
                                         "nothing was overwritten. Press U to reopen and change it."))
        primary = qs.primary_value(question.kind, values)
        fields = dict(
            queue_id=a.queue_id, item_id=a.item_id, record_id=a.item.record_id, annotator=key, user=user,
            source="human", values=values,
            primary_value=primary if isinstance(primary, (int, float)) else None,
            primary_label=primary if isinstance(primary, str) else "",
            shown_order=("BA" if a.swapped else "AB") if question.kind == qs.PREFERENCE else "",
            suggestion_shown=bool(a.queue.show_suggestion and a.item.suggestion),
            duration_ms=_duration_ms(a, duration_ms, now),
        )
        # The conditional UPDATE above made this request the only writer of this slot, so a plain
        # insert (or, after an undo, an update) is safe without update_or_create's extra locking.
        created = a.submitted_at is None or not Label.objects.filter(assignment=a).update(updated_at=now, **fields)
        if created:
            label = Label.objects.create(assignment=a, **fields)
        else:
            label = Label.objects.get(assignment=a)
        audit_log(actor=user, action="annotation.label_submit" if created else "annotation.label_change",
                  target=label, data={"item": a.item_id, "values": values})
    return SubmitOutcome(label, "saved", created)


@transaction.atomic
def assignment_skip(*, assignment_id: int, user, revision: int) -> bool:
    """Pass on an item: it goes to someone else (a fresh slot replaces this one), never back to you."""
    key = annotator_key(user)
    a = Assignment.objects.filter(pk=assignment_id, annotator=key).first()
    if a is None:
        raise AnnotationError(gettext("This item is not assigned to you."))
    won = Assignment.objects.filter(pk=a.pk, status=Status.ACTIVE, revision=revision).update(
        status=Status.SKIPPED, submitted_at=timezone.now(), revision=F("revision") + 1)
    if won:
        if not Label.objects.filter(assignment=a).exists():
            Assignment.objects.create(queue_id=a.queue_id, item_id=a.item_id, position=a.position, swapped=a.swapped)
        audit_log(actor=user, action="annotation.skip", target=a, data={"item": a.item_id})
    return bool(won)


def _take_back_skipped(a: Assignment) -> bool:
    """Undoing a skip: remove the spare slot the skip put in the pool, if nobody has claimed it.

    The DELETE is conditional (status still free), so a clinician who claimed the spare a moment
    ago keeps it; the skipped item then stays with them, since reopening it here too would give
    the item one annotator more than the queue asks for."""
    if Label.objects.filter(assignment=a).exists():
        return True  # a labelled slot (reopened earlier, then skipped) still counts among the N
    for spare in Assignment.objects.filter(item_id=a.item_id, status=Status.FREE).order_by("-id").values_list("pk", flat=True):
        deleted, _ = Assignment.objects.filter(pk=spare, status=Status.FREE).delete()
        if deleted:
            return True
    return False


@transaction.atomic
def assignment_undo(*, queue: Queue, user) -> Assignment | None:
    """Reopen this annotator's last submitted or skipped item (its label stays until resubmitted).

    A skipped item that another clinician has taken in the meantime cannot come back; the undo then
    reopens the item before it."""
    key = annotator_key(user)
    candidates = (Assignment.objects.select_for_update()
                  .filter(queue=queue, annotator=key, status__in=[Status.DONE, Status.SKIPPED])
                  .order_by("-submitted_at", "-id"))[:50]
    last = None
    for cand in candidates:
        if cand.status == Status.DONE or _take_back_skipped(cand):
            last = cand
            break
    if last is None:
        return None
    # Put back the item on screen first (one open item per queue): a slot that already carries a
    # label (reopened by an earlier undo) goes back to done, never to the free pool with a label.
    for cur in Assignment.objects.select_for_update().filter(queue=queue, annotator=key, status=Status.ACTIVE):
        if Label.objects.filter(assignment=cur).exists():
            Assignment.objects.filter(pk=cur.pk).update(status=Status.DONE, revision=F("revision") + 1)
        else:
            Assignment.objects.filter(pk=cur.pk).update(status=Status.FREE, annotator=None, user=None,
                                                        started_at=None, revision=F("revision") + 1)
    Assignment.objects.filter(pk=last.pk).update(status=Status.ACTIVE, started_at=timezone.now(),
                                                 revision=F("revision") + 1)
    audit_log(actor=user, action="annotation.undo", target=last, data={"item": last.item_id})
    return Assignment.objects.select_related("item__record").get(pk=last.pk)


# ---------------------------------------------------------------------------------------- judges

@dataclass
class JudgeResult:
    item_id: int
    swapped: bool
    values: dict | None
    error: str
    prompt: list | None
    raw: str


@transaction.atomic
def judge_labels_store(*, queue: Queue, annotator: str, results: list[JudgeResult], actor=None) -> tuple[int, int]:
    """Store a batch of a judge's answers as labels (or per-item failures). Idempotent per item."""
    question = queue.question
    items = {it.pk: it for it in QueueItem.objects.filter(pk__in=[r.item_id for r in results])}
    now = timezone.now()
    ok = failed = 0
    for r in results:
        it = items[r.item_id]
        a, _ = Assignment.objects.get_or_create(
            item=it, annotator=annotator,
            defaults=dict(queue=queue, position=it.position, swapped=r.swapped, started_at=now))
        if a.status == Status.DONE:
            continue  # labelled on an earlier attempt of a resumed job
        if r.values is None:
            Assignment.objects.filter(pk=a.pk).update(status=Status.FAILED, error=r.error[:2000], swapped=r.swapped)
            failed += 1
            continue
        Assignment.objects.filter(pk=a.pk).update(status=Status.DONE, error="", submitted_at=now, swapped=r.swapped,
                                                  revision=F("revision") + 1)
        primary = qs.primary_value(question.kind, r.values)
        Label.objects.update_or_create(assignment=a, defaults=dict(
            queue=queue, item=it, record_id=it.record_id, annotator=annotator, user=None, source="model",
            values=r.values, primary_value=primary if isinstance(primary, (int, float)) else None,
            primary_label=primary if isinstance(primary, str) else "",
            shown_order=("BA" if r.swapped else "AB") if question.kind == qs.PREFERENCE else "",
            prompt=r.prompt, raw_reply=r.raw[:100000]))
        ok += 1
    audit_log(actor=actor, action="annotation.judge_labels", target=queue,
              data={"annotator": annotator, "labelled": ok, "failed": failed})
    return ok, failed


def judge_start(*, queue: Queue, user, backend: str = "", base_url: str = "", model: str = "", passes: int = 1,
                temperature: float = 0.7, api_key_env: str = "") -> list:
    """Launch judge jobs; passes=2 is CareBot's protocol: the same judge twice, independently.

    The judge is a registered model backend (by name), an explicit endpoint, or the defaults
    (see medstudio.backends.resolve.chat_params); its resolved URL and model go into the job.
    """
    from medstudio.backends.resolve import BackendChoiceError, chat_params
    from medstudio.jobs.services import job_create

    if queue.question.kind == qs.TEXT:
        raise AnnotationError(gettext("A judge cannot answer free-text questions."))
    if not 1 <= passes <= 5:
        raise AnnotationError(gettext("Between 1 and 5 passes."))
    try:
        chat = chat_params(backend=backend, base_url=base_url, model=model)
    except BackendChoiceError as exc:
        raise AnnotationError(str(exc)) from None
    if api_key_env and not chat["backend"]:
        chat["api_key_env"] = api_key_env  # a one-off endpoint names its key's variable here
    start = 1 + max([_pass_no(a) for a in queue_judge_annotators(queue, chat["model"])] or [0])
    jobs = []
    for i in range(start, start + passes):
        jobs.append(job_create(kind="annotation.judge", user=user, total=queue.n_items, params={
            "queue_id": queue.pk, **chat, "pass": i, "temperature": temperature, "seed": i}))
    return jobs


def queue_judge_annotators(queue: Queue, model: str) -> list[str]:
    prefix = f"model:{model}#"
    return list(Assignment.objects.filter(queue=queue, annotator__startswith=prefix)
                .values_list("annotator", flat=True).distinct())


def _pass_no(annotator: str) -> int:
    try:
        return int(annotator.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0


# -------------------------------------------------------------------------------- adjudication

@transaction.atomic
def adjudication_set(*, item: QueueItem, user, value: Any, note: str = "") -> Adjudication:
    """A curator settles an item the annotators disagreed on (value in the primary field's terms)."""
    kind = item.queue.question.kind
    schema = item.queue.question.full_schema
    if kind in (qs.RATING, qs.TURN_RATING):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise AnnotationError(gettext("Give a number, not %(value)s.") % {"value": repr(value)}) from None
        lo, hi = schema["scale"]
        if not lo <= value <= hi:
            raise AnnotationError(gettext("The value must lie within %(lo)s-%(hi)s.") % {"lo": lo, "hi": hi})
    elif kind == qs.LABEL:
        if value not in schema["labels"]:
            raise AnnotationError(gettext("Choose one of %(labels)s.") % {"labels": ", ".join(schema["labels"])})
    elif kind == qs.PREFERENCE:
        if value not in qs.PREF_CANONICAL:
            raise AnnotationError(gettext("Choose chosen, rejected or tie."))
    else:
        raise AnnotationError(gettext("Free-text items are not adjudicated."))
    adj, _ = Adjudication.objects.update_or_create(item=item, defaults={"value": value, "note": note, "curator": user})
    audit_log(actor=user, action="annotation.adjudicate", target=item, data={"value": value, "note": note})
    return adj


@transaction.atomic
def adjudication_clear(*, item: QueueItem, user) -> None:
    Adjudication.objects.filter(item=item).delete()
    audit_log(actor=user, action="annotation.adjudication_clear", target=item)
