"""Shared builders for annotation tests: datasets from the shared public data, queues, users."""
from __future__ import annotations

import json
import os
from pathlib import Path

SHARED = Path(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"))


def shared_rows(name: str, n: int, *, skip: int = 0) -> list[dict]:
    rows = []
    with open(SHARED / name, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def user(django_user_model, name: str, role: str = "clinician"):
    return django_user_model.objects.create_user(username=name, password="pw", role=role)


def login(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


def rating_queue(make_dataset, curator, *, n_docs=6, per_item=2, name="docs", assignees=(), file="general_zh.jsonl",
                 **kw):
    from medstudio.annotation import services

    ds = make_dataset(name, "document", shared_rows(file, n_docs))
    q = services.question_create(user=curator, name="quality", kind="rating")
    return services.queue_create(user=curator, name=f"{name} queue", dataset=ds, question=q,
                                 annotators_per_item=per_item, assignees=assignees, **kw)
