"""Many clinicians, double submits and second tabs at once, on PostgreSQL (real row locks,
SKIP LOCKED, concurrent transactions). Nothing may be duplicated or lost.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/medstudio_annot \
     .venv/bin/python -m pytest tests/annotation/test_concurrency_postgres.py -q
"""
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from medstudio.annotation import services
from medstudio.annotation.models import Assignment, Label, Status

from .helpers import rating_queue, user

N_CLINICIANS = 8
N_DOCS = 24
PER_ITEM = 2


def closing(fn):
    """Run fn in a pool thread and close that thread's DB connection afterwards (no leaked sessions)."""
    def wrapped(arg):
        try:
            return fn(arg)
        finally:
            connection.close()
    return wrapped


def _clinician_loop(queue_id, user_id, seed, stats, lock):
    from django.contrib.auth import get_user_model

    from medstudio.annotation.models import Queue

    rng = random.Random(seed)
    try:
        u = get_user_model().objects.get(pk=user_id)
        queue = Queue.objects.get(pk=queue_id)
        with ThreadPoolExecutor(max_workers=2) as tabs:
            while True:
                # two tabs ask for the next item at the same moment
                a, b = tabs.map(closing(lambda _: services.assignment_next(queue=queue, user=u)), range(2))
                if a is None and b is None:
                    break
                assert a is not None and b is not None and a.pk == b.pk, "two tabs got different items"
                if rng.random() < 0.1:
                    services.assignment_skip(assignment_id=a.pk, user=u, revision=a.revision)
                    with lock:
                        stats["skipped"] += 1
                    continue
                score = rng.randint(0, 5)
                barrier = threading.Barrier(2)

                def submit(_):
                    barrier.wait()
                    return services.label_submit(assignment_id=a.pk, user=u, answer={"score": score},
                                                 revision=a.revision).status

                outcomes = list(tabs.map(closing(submit), range(2)))  # a double click racing itself
                with lock:
                    stats.update(outcomes)
                    stats["expected"] += 1
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_clinicians_tabs_and_double_submits_lose_and_duplicate_nothing(make_dataset, curator, django_user_model):
    queue = rating_queue(make_dataset, curator, n_docs=N_DOCS, per_item=PER_ITEM)
    users = [user(django_user_model, f"pg_doc{i}") for i in range(N_CLINICIANS)]
    stats: Counter = Counter()
    lock = threading.Lock()
    threads = [threading.Thread(target=_clinician_loop, args=(queue.pk, u.pk, i, stats, lock)) for i, u in enumerate(users)]
    errors = []

    def run(t):
        try:
            t.run()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    runners = [threading.Thread(target=run, args=(t,)) for t in threads]
    for t in runners:
        t.start()
    for t in runners:
        t.join(timeout=120)
    assert not errors, errors
    labels = Label.objects.filter(queue=queue)
    # every item has exactly N labels, from N different clinicians (skips are re-served to others)
    per_item = Counter(labels.values_list("item_id", flat=True))
    assert len(per_item) == N_DOCS and set(per_item.values()) == {PER_ITEM}, per_item
    assert labels.values("item_id", "annotator").distinct().count() == labels.count()
    # each double submit saved once and answered "already saved" once; none lost
    assert stats["saved"] == stats["expected"] == labels.count() == N_DOCS * PER_ITEM
    assert stats["already_saved"] == stats["expected"]
    assert not Assignment.objects.filter(queue=queue, status=Status.ACTIVE).exists()
    assert not Assignment.objects.filter(queue=queue, status=Status.FREE).exists()
