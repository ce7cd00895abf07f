"""Job handlers for annotation: an LLM judge labelling a queue (one job per judge pass)."""
from __future__ import annotations

import random

from django.utils.translation import gettext_noop

from medstudio.jobs.registry import job_handler, register_job_kind

BATCH = 16


@job_handler("annotation.judge", queue="cpu", description="An LLM judge labels a queue through the chat backend.")
def judge_queue(ctx) -> dict:
    from medstudio.backends.resolve import BackendChoiceError, chat_client, concurrency
    from medstudio.jobs.context import JobFailed
    from medstudio.inference.chat import ChatError

    from . import judges
    from .models import Assignment, Queue, QueueItem, Status
    from .questions import AnswerError
    from .services import JudgeResult, judge_labels_store

    p = ctx.params
    queue = Queue.objects.select_related("question", "dataset").get(pk=p["queue_id"])
    annotator = f"model:{p['model']}#{p['pass']}"
    # Keys never go into job params (they are shown on job pages): the worker reads the variable.
    try:
        backend = chat_client(p, require_key=True)
    except BackendChoiceError as exc:
        raise JobFailed(str(exc)) from None
    question = queue.question
    total = queue.n_items
    after = (ctx.cursor or {}).get("after_id", 0)
    done = (ctx.cursor or {}).get("done", 0)
    ok_total = (ctx.cursor or {}).get("ok", 0)
    failed_total = (ctx.cursor or {}).get("failed", 0)
    ctx.progress(done=done, total=total)
    # Each pass draws its own A/B orders, so position bias does not repeat between the two passes.
    rng_seed = f"{queue.pk}:{p.get('seed', p['pass'])}"
    while True:
        batch = list(QueueItem.objects.filter(queue=queue, pk__gt=after).select_related("record").order_by("pk")[:BATCH])
        if not batch:
            break
        # A re-run of the same pass (or a resumed job) only asks about items not labelled yet.
        labelled = set(Assignment.objects.filter(item__in=batch, annotator=annotator, status=Status.DONE)
                       .values_list("item_id", flat=True))
        convs, meta = [], []
        for it in batch:
            if it.pk in labelled:
                continue
            swapped = question.kind == "preference" and random.Random(f"{rng_seed}:{it.pk}").random() < 0.5
            msgs = judges.build_messages(question.kind, question.schema, queue.dataset.kind, it.record.content,
                                         swapped=swapped)
            convs.append(msgs)
            meta.append((it, swapped, msgs))
        replies = (backend.complete_many(convs, max_workers=concurrency(p), temperature=float(p.get("temperature", 0.7)))
                   if convs else [])
        results = []
        for (it, swapped, msgs), reply in zip(meta, replies):
            if isinstance(reply, ChatError):
                results.append(JudgeResult(it.pk, swapped, None, reply.reason, msgs, ""))
                continue
            try:
                values = judges.parse_reply(question.kind, question.schema, reply.text, content=it.record.content,
                                            swapped=swapped)
                results.append(JudgeResult(it.pk, swapped, values, "", msgs, reply.text))
            except (ChatError, AnswerError) as exc:
                results.append(JudgeResult(it.pk, swapped, None, f"unusable reply: {exc}", msgs, reply.text))
        from django.db import transaction

        with transaction.atomic():
            ok, failed = judge_labels_store(queue=queue, annotator=annotator, results=results)
            after = batch[-1].pk
            done += len(batch)
            ok_total += ok
            failed_total += failed
            ctx.progress(done=done, cursor={"after_id": after, "done": done, "ok": ok_total, "failed": failed_total})
        if failed:
            ctx.log(f"{failed} item(s) in this batch could not be labelled; see the queue's judge summary.", "warning")
    return {"annotator": annotator, "labelled": ok_total, "failed": failed_total}


def _queue_links(job):
    from django.urls import reverse
    q = (job.params or {}).get("queue_id")
    return [(gettext_noop("Open the queue"), reverse("annotation:queue_detail", args=[q]))] if q else []


register_job_kind("annotation.judge", label=gettext_noop("LLM judge labelling"), result_links=_queue_links)
