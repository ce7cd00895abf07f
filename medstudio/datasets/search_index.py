"""Record text search on PostgreSQL: one trigram index per (large) dataset, built after its import.

Search itself is always the same query (`text__icontains`, i.e. `UPPER(text) LIKE UPPER('%q%')`
inside one dataset), so its results do not depend on the index: the index only makes it fast.
Keeping a trigram GIN index up to date row by row is what made imports slow (it cost 25 s of a
50k-row COPY that takes under 1 s without it), so no index covers the insert path any more:

* each dataset with at least `SEARCH_INDEX_MIN_RECORDS` records gets a partial index
  `record_trgm_ds<pk>` on `UPPER(text) gin_trgm_ops WHERE dataset_id = <pk>`, built in one pass
  (`CREATE INDEX CONCURRENTLY`, which blocks neither reads nor writes) by the
  `datasets.search_index` job that `dataset_refresh_stats` asks for after an import (or any
  other writer) has committed;
* a new dataset therefore imports with no trigram index at all; while its index is being built
  the dataset page says so, and search still answers (a scan of that dataset's rows);
* a large append to a dataset that has an index drops it first and the job rebuilds it
  (`drop_for_bulk_load`), since one build is much cheaper than row-by-row maintenance;
* small datasets have no index: scanning a few thousand rows is as fast as using one;
* deleting a dataset drops its index once the delete has committed.

SQLite has no trigram index: everything here is a no-op there.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, connection, transaction

log = logging.getLogger("medstudio.datasets")

JOB_KIND = "datasets.search_index"


def min_records() -> int:
    return int(getattr(settings, "SEARCH_INDEX_MIN_RECORDS", 5000))


def index_name(dataset_id: int) -> str:
    return f"record_trgm_ds{int(dataset_id)}"


def _pg() -> bool:
    return connection.vendor == "postgresql"


def index_valid(dataset_id: int) -> bool | None:
    """True: a usable index; False: one that is being built (or a failed build); None: no index."""
    if not _pg():
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                    "WHERE c.relname = %s AND c.relkind = 'i'", [index_name(dataset_id)])
        row = cur.fetchone()
    return None if row is None else bool(row[0])


def state(dataset) -> str:
    """'ready', 'building' (search works, more slowly), or '' (no index needed, or SQLite)."""
    if not _pg():
        return ""
    valid = index_valid(dataset.pk)
    if valid:
        return "ready"
    if (dataset.n_records or 0) < min_records():
        return ""
    return "building"


def request(dataset) -> None:
    """Ask for the dataset's index to be built when it needs one and has none (idempotent)."""
    if not _pg() or (dataset.n_records or 0) < min_records() or index_valid(dataset.pk):
        return
    from medstudio.jobs.models import FINISHED, Job
    from medstudio.jobs.services import job_create

    if Job.objects.filter(kind=JOB_KIND, params__dataset_id=dataset.pk).exclude(status__in=FINISHED).exists():
        return
    try:
        with transaction.atomic():  # the writes that asked for it stand even if this fails
            job_create(kind=JOB_KIND, params={"dataset_id": dataset.pk}, user=None)
    except DatabaseError:
        log.exception("could not ask for the search index of dataset %s", dataset.pk)


def build(dataset_id: int) -> str:
    """Build the dataset's index (what the job runs); returns what it did."""
    from .models import Dataset, Record

    if not _pg():
        return "no trigram index on this database"
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        return "the dataset is gone"
    valid = index_valid(dataset_id)
    if valid:
        return "already built"
    name = index_name(dataset_id)
    # Outside a transaction the build is CONCURRENTLY (no lock against imports and labelling);
    # inside one (tests, an eager job within a request) a plain build is the only kind allowed.
    concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
    table = connection.ops.quote_name(Record._meta.db_table)
    sql = (f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} "
           f"USING gin (UPPER(text) gin_trgm_ops) WHERE dataset_id = {int(dataset_id)}")
    if connection.in_atomic_block:
        # Deferred foreign-key checks pending in this transaction forbid DDL on the table: run them now.
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute(sql)
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
    else:
        with connection.cursor() as cur:
            if valid is False:
                cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # a failed earlier build leaves an invalid one
            cur.execute(sql)
    return f"built {name}"


def drop(dataset_id: int) -> None:
    """Drop the dataset's index; CONCURRENTLY when no transaction is open (it then takes no table lock)."""
    if not _pg():
        return
    concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX{concurrently} IF EXISTS {index_name(dataset_id)}")


def drop_for_bulk_load(dataset, n_new: int) -> bool:
    """Before a large append: drop the index when rebuilding it is cheaper than updating it per row.

    True when it was dropped (the import asks for the rebuild through `dataset_refresh_stats`).
    """
    if not _pg() or connection.in_atomic_block:
        return False
    if n_new < min_records() or n_new < (dataset.n_records or 0) or index_valid(dataset.pk) is None:
        return False
    drop(dataset.pk)
    return True


def drop_after_delete(dataset_id: int) -> None:
    """A deleted dataset's index: dropped once the delete commits (an empty index costs every insert)."""
    if not _pg():
        return

    def _drop():
        try:
            drop(dataset_id)
        except DatabaseError:
            log.exception("dropping the search index of deleted dataset %s failed", dataset_id)

    transaction.on_commit(_drop)
