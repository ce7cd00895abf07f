"""Writes for datasets and records: import (one pass; one transaction on PostgreSQL, undoable batches on SQLite), export, flags."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Iterable

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_noop

from medstudio.audit.services import audit_log
from medstudio.jobs.context import JobContext, JobFailed, connection_lost
from medstudio.jobs.registry import job_handler, register_job_kind

from .formats import (KINDS, PARQUET_JSON_COLUMNS_KEY, FileError, NormalizedRecord, RowError, check_row, count_rows,
                      detect_kind, iter_rows, record_from_checked)
from . import search_index
from .models import Dataset, Export, Record

log = logging.getLogger("medstudio.datasets")


class ImportRejected(Exception):
    """The file has bad lines (or cannot be read); nothing was imported."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        super().__init__(report.summary())


def _lines_text(lines: list[int], n: int) -> str:
    shown = ", ".join(map(str, lines[:20]))
    return shown + (f" (and {n - 20} more)" if n > 20 else "")


@dataclass
class ValidationReport:
    n_rows: int = 0
    n_ok: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # first N (line, reason)
    n_bad: int = 0
    file_error: str = ""
    n_nul: int = 0  # NUL characters stripped (PostgreSQL cannot store them)
    nul_lines: list[int] = field(default_factory=list)  # first N lines that had some
    n_nul_lines: int = 0
    kind: str = ""  # the kind the file was read as
    kind_hint: str = ""  # most bad lines fit this other kind: the file is probably of that kind

    def summary(self) -> str:
        if self.file_error:
            return self.file_error
        if self.kind_hint:
            return (f"This looks like kind={self.kind_hint}, not kind={self.kind}: {self.n_bad} of {self.n_rows} lines "
                    f"do not fit {self.kind} but fit {self.kind_hint}. Import it as {self.kind_hint} "
                    f"(into a {self.kind_hint} dataset), or choose kind auto.")
        if not self.n_bad:
            return f"{self.n_ok} valid records."
        shown = "; ".join(f"line {ln}: {reason}" for ln, reason in self.errors[:20])
        more = f" (and {self.n_bad - 20} more)" if self.n_bad > 20 else ""
        return f"{self.n_bad} bad line(s) of {self.n_rows}: {shown}{more}"

    def nul_summary(self) -> str:
        if not self.n_nul:
            return ""
        return (f"Stripped {self.n_nul} NUL character(s) on line(s) {_lines_text(self.nul_lines, self.n_nul_lines)} "
                "(PostgreSQL cannot store them).")

    def as_dict(self) -> dict:
        # with a kind hint the lines' errors are all the same mistake: a few examples are enough
        errors = self.errors[:3] if self.kind_hint else self.errors
        out = {"n_rows": self.n_rows, "n_ok": self.n_ok, "n_bad": self.n_bad, "file_error": self.file_error,
               "errors": [{"line": ln, "reason": r} for ln, r in errors]}
        if self.kind_hint:
            out["kind_hint"] = self.kind_hint
        if self.n_nul:
            out["nul_stripped"] = {"characters": self.n_nul, "lines": self.nul_lines, "n_lines": self.n_nul_lines}
        return out


def _duplicate_reason(external_id: str, row: dict, first_line: int) -> str:
    if row.get("id") in (None, ""):
        return f"same content as line {first_line} (a row without an id is keyed by its content)"
    return f"id {external_id!r} already used on line {first_line}"


class _Scan:
    """One pass over an import file: every bad line reported, the good rows normalised for insert.

    A line is bad when it cannot be read or normalised, or when its id was already used by an
    earlier line of the file (rows without an id: the same content). Once a bad line has decided
    that nothing is imported (`stop_writing_on_bad`), the rest of the file is only checked (no
    hashing, text or token counts) so that the report still lists every bad line.
    """

    def __init__(self, *, path: str | Path, fmt: str, kind: str, hint_kind: bool, stop_writing_on_bad: bool,
                 writing: bool = True):
        self.path, self.fmt, self.kind = path, fmt, kind
        self.report = ValidationReport(kind=kind)
        self.hint_kind = hint_kind and kind != "auto"
        self.stop_writing_on_bad = stop_writing_on_bad
        self.writing = writing
        self.last_line = 0
        self._guessed: dict[str, int] = {}  # bad lines (read as `kind`) that another kind reads without error

    def _bad(self, lineno: int, reason: str) -> None:
        report = self.report
        report.n_bad += 1
        if len(report.errors) < settings.IMPORT_MAX_REPORTED_ERRORS:
            report.errors.append((lineno, reason))
        if self.stop_writing_on_bad:
            self.writing = False

    def records(self):
        """The good rows as NormalizedRecord (while writing), in file order; fills `report`."""
        report, kind, bad = self.report, self.kind, self._bad
        seen: dict[str, int] = {}  # external id -> first line
        max_reported = settings.IMPORT_MAX_REPORTED_ERRORS
        try:
            for lineno, row in iter_rows(self.path, self.fmt, max_line_bytes=settings.IMPORT_MAX_LINE_BYTES):
                self.last_line = lineno
                report.n_rows += 1
                if isinstance(row, RowError):
                    bad(lineno, str(row))
                    continue
                try:
                    checked = check_row(row, kind)
                except RowError as exc:
                    if self.hint_kind:
                        other = _other_kind(row, kind)
                        if other:
                            self._guessed[other] = self._guessed.get(other, 0) + 1
                    bad(lineno, str(exc))
                    continue
                first = seen.setdefault(checked.external_id, lineno)
                if first != lineno:
                    bad(lineno, _duplicate_reason(checked.external_id, checked.row, first))
                    continue
                if self.writing:
                    try:
                        record = record_from_checked(checked)
                    except RowError as exc:  # a NaN in a Parquet column, found when the JSON is built
                        bad(lineno, str(exc))
                        continue
                report.n_ok += 1
                if checked.n_nul:
                    report.n_nul += checked.n_nul
                    report.n_nul_lines += 1
                    if len(report.nul_lines) < max_reported:
                        report.nul_lines.append(lineno)
                if self.writing:
                    yield lineno, record
        except FileError as exc:
            report.file_error = str(exc)
        if self._guessed and report.n_bad:
            best, n = max(self._guessed.items(), key=lambda kv: kv[1])
            if n >= 0.9 * report.n_bad and report.n_bad >= 0.5 * report.n_rows:
                report.kind_hint = best


def import_validate(*, path: str | Path, fmt: str, kind: str) -> ValidationReport:
    """Read the whole file once (streaming) and report every bad line; writes nothing.

    The import job does the same checks in its own single pass; this is for callers that want the
    report before queueing an import (the command line's --async).
    """
    if kind != "auto" and kind not in KINDS:
        return ValidationReport(kind=kind, file_error=f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)} (or auto).")
    scan = _Scan(path=path, fmt=fmt, kind=kind, hint_kind=True, stop_writing_on_bad=False, writing=False)
    for _ in scan.records():
        pass
    return scan.report


def _other_kind(row: dict, kind: str) -> str:
    """The kind a row that failed as `kind` would be read as, when it reads cleanly as that one."""
    try:
        other = detect_kind(row)
        if other != kind:
            check_row(row, other)
            return other
    except RowError:
        pass
    return ""


def display_name(path: str | Path) -> str:
    """An uploaded file's own name, without the uuid prefix upload_store gives it."""
    name = Path(path).name
    head, sep, rest = name.partition("_")
    return rest if sep and len(head) == 32 and all(c in "0123456789abcdef" for c in head) else name


def dataset_create(*, actor, name: str, kind: str, description: str = "", parent: Dataset | None = None,
                   licence: str = "", data: dict | None = None) -> Dataset:
    """The one way a dataset comes into being (imports, redacted copies, review sets...): audited."""
    dataset = Dataset.objects.create(name=name, kind=kind, description=description, parent=parent, licence=licence,
                                     created_by=actor if getattr(actor, "is_authenticated", False) else None)
    audit_log(actor=actor, action="datasets.create", target=dataset,
              data={"kind": kind, **({"parent": parent.pk} if parent else {}), **(data or {})})
    return dataset


def records_insert(*, dataset: Dataset, rows: Iterable[NormalizedRecord], check_existing: bool = True) -> int:
    """Insert normalised records, ignoring ones already present (same dataset + external id).

    check_existing=False skips the look-up of ids already there (an import into the dataset it
    created: its rows are new by construction); a conflict is still caught on PostgreSQL. There
    `rows` may be a lazy iterator: each row is produced while the COPY is open, so PostgreSQL
    stores rows while Python prepares the next ones, instead of the two taking turns.

    On PostgreSQL the rows go in with one COPY (no per-row SQL, no ORM objects); if a concurrent
    writer added one of the ids in between, that batch falls back to INSERT ... ON CONFLICT DO NOTHING.
    """
    if connection.vendor == "postgresql" and not check_existing:
        sent: list[NormalizedRecord] = []
        it = iter(rows)
        try:
            with transaction.atomic():  # a savepoint: a unique violation undoes only this attempt
                _records_copy(dataset, _kept(it, sent))
            return len(sent)
        except IntegrityError:
            rows = sent + list(it)  # someone else inserted one of these ids meanwhile: the ORM path ignores those
    rows = rows if isinstance(rows, list) else list(rows)
    existing: set[str] = set()
    if check_existing or connection.vendor != "postgresql":
        ids = [r.external_id for r in rows]
        existing = set(Record.objects.filter(dataset=dataset, external_id__in=ids).values_list("external_id", flat=True))
    fresh: dict[str, NormalizedRecord] = {}
    for r in rows:
        if r.external_id in existing or r.external_id in fresh:
            continue
        fresh[r.external_id] = r
    if not fresh:
        return 0
    if connection.vendor == "postgresql" and check_existing:
        try:
            with transaction.atomic():
                _records_copy(dataset, fresh.values())
            return len(fresh)
        except IntegrityError:
            pass
    Record.objects.bulk_create(
        [Record(dataset=dataset, external_id=r.external_id, lang=r.lang, source=r.source, subset=r.subset,
                content=r.content, text=r.text, text_hash=r.text_hash, n_tokens=r.n_tokens) for r in fresh.values()],
        ignore_conflicts=True)
    return len(fresh)


def _kept(rows, sent: list):
    for r in rows:
        sent.append(r)
        yield r


_COPY_COLUMNS = ("dataset_id", "external_id", "lang", "source", "subset", "content", "text", "text_hash", "n_tokens",
                 "created_at")


def _records_copy(dataset: Dataset, rows) -> None:
    """COPY the rows into datasets_record (PostgreSQL, psycopg 3); content is sent as JSON text."""
    from psycopg.copy import QueuedLibpqWriter

    now = timezone.now()
    dumps = json.dumps
    pk = dataset.pk
    table = connection.ops.quote_name(Record._meta.db_table)
    with connection.cursor() as cur, connection.wrap_database_errors:  # psycopg's errors as Django's
        # A queued writer: a psycopg thread sends while this one formats (and normalises, when
        # `rows` is lazy) the next rows, instead of waiting for the socket.
        with cur.cursor.copy(f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN",
                             writer=QueuedLibpqWriter(cur.cursor)) as copy:
            write = copy.write_row
            for r in rows:
                write((pk, r.external_id, r.lang, r.source, r.subset, r.content_json or dumps(r.content), r.text,
                       r.text_hash, r.n_tokens, now))


def dataset_refresh_stats(*, dataset: Dataset, request_index: bool = True) -> Dataset:
    """Refresh the cached counts; ask for the search index unless `request_index=False` (a caller
    inside a long transaction asks once it has committed)."""
    agg = Record.objects.filter(dataset=dataset).aggregate(n=Count("id"), t=Sum("n_tokens"))
    langs = dict(Record.objects.filter(dataset=dataset).values_list("lang").annotate(c=Count("id")).order_by())
    Dataset.objects.filter(pk=dataset.pk).update(n_records=agg["n"] or 0, n_tokens=agg["t"] or 0, langs=langs)
    dataset.refresh_from_db()
    if request_index:
        search_index.request(dataset)  # PostgreSQL: a large dataset's trigram index, built after the writes commit
    return dataset


def _drop_index_for_append(ctx: JobContext, dataset: Dataset, rows, n_upper: int):
    """A large append to a dataset with a search index: drop the index first (the job rebuilds it
    after the commit), which is cheaper than updating it row by row. Re-importing the same file
    (no new rows) keeps it. Returns (rows, whether it was dropped).

    How many rows are new is not known before the one pass, so it is estimated from the first
    batch (looked up against the dataset, then inserted as usual) times the file's row count.
    The estimate only decides speed: search gives the same results with or without the index.
    """
    if (connection.vendor != "postgresql" or connection.in_atomic_block or n_upper < search_index.min_records()
            or n_upper < (dataset.n_records or 0) or search_index.index_valid(dataset.pk) is None):
        return rows, False
    head = list(islice(rows, settings.IMPORT_BATCH_SIZE))
    ids = [r.external_id for _, r in head]
    present = Record.objects.filter(dataset=dataset, external_id__in=ids).count() if ids else 0
    n_new = round((len(ids) - present) / len(ids) * n_upper) if ids else 0
    dropped = search_index.drop_for_bulk_load(dataset, n_new)
    if dropped:
        ctx.log("Dropped the dataset's search index for this large import; it is rebuilt afterwards.")
    return chain(head, rows), dropped


class _Batch:
    """The next batch of an import, drawn lazily from the pass's (line, record) pairs: `next()`
    says whether there is one; iterating it yields its records (at most `size`), counting them."""

    def __init__(self, rows, size: int):
        self._rows, self._size = rows, size
        self._first = None
        self.n = 0
        self.last_line = 0

    def next(self) -> bool:
        self._first = next(self._rows, None)  # the rest of the file is checked here once nothing is written
        self.n = 0
        return self._first is not None

    def __iter__(self):
        first, self._first = self._first, None
        if first is None:
            return
        for lineno, record in chain((first,), islice(self._rows, self._size - 1)):
            self.n += 1
            self.last_line = lineno
            yield record


def _create(ctx: JobContext, p: dict, kind: str, undo: dict | None) -> Dataset:
    dataset = dataset_create(actor=ctx.job.created_by, name=p["dataset"], kind=kind, description=p.get("description", ""))
    if undo is not None:
        undo["dataset"] = dataset.pk
    return dataset


def _max_record_pk() -> int:
    return Record.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _note_range(ranges: list, lo: int, hi: int) -> None:
    """The pks a batch inserted, (lo, hi]: exact on SQLite, whose batch transaction holds the only
    write lock from its start (IMMEDIATE), so no other writer's rows fall in between."""
    if hi <= lo:
        return
    if ranges and ranges[-1][1] == lo:
        ranges[-1][1] = hi
    else:
        ranges.append([lo, hi])


def _import_undo(undo: dict) -> None:
    """SQLite: remove what an import committed batch by batch: the dataset it created, or the
    records its own batches added to an existing one (by their pk ranges, so another import's rows
    in the same dataset stay)."""
    if undo.get("dataset") is None:
        return
    with transaction.atomic():
        if undo.get("created"):
            Record.objects.filter(dataset_id=undo["dataset"]).delete()
            Dataset.objects.filter(pk=undo["dataset"]).delete()
        else:
            for lo, hi in undo.get("ranges", ()):
                Record.objects.filter(dataset_id=undo["dataset"], pk__gt=lo, pk__lte=hi).delete()
            ds = Dataset.objects.filter(pk=undo["dataset"]).first()
            if ds is not None:
                dataset_refresh_stats(dataset=ds, request_index=False)


class _Rejected(Exception):
    """Bad lines (or an unreadable file) found in the import's pass: undo the transaction."""


@job_handler("datasets.import", queue="cpu", description="Validate and import a JSONL/CSV/Parquet file.")
def import_job(ctx: JobContext) -> dict:
    """One pass over the file: each good row is normalised and written (COPY on PostgreSQL,
    bulk_create on SQLite) in batches, each bad line is reported, and any bad line (unless
    skip_bad) undoes the import once the rest of the file has been checked, so the report lists
    every bad line and nothing is half-written.

    All or nothing likewise when the database refuses a batch, on a cancel or on any other error.
    On PostgreSQL the dataset it created, the records it added and the cached counts are one
    transaction, and a worker lost mid-import leaves nothing committed. On SQLite each batch
    commits (see `per_batch` below) and the undo removes them; the re-queued attempt of a lost
    worker removes its predecessor's batches first. Either way the re-queued job starts over.
    """
    p = ctx.params
    path, fmt, kind, skip_bad = p["path"], p["format"], p.get("kind", "auto"), bool(p.get("skip_bad"))
    stale = ctx.cursor.get("undo") if isinstance(ctx.cursor, dict) else None
    if stale:  # SQLite: an earlier attempt of this job died after committing some batches
        _import_undo(stale)
        ctx.log("Removed the records an earlier attempt of this import had committed; starting over.", "warning")
        ctx.progress(cursor=None)
    name = p.get("file_name") or display_name(path)
    if kind != "auto" and kind not in KINDS:
        raise JobFailed(f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)} (or auto).")
    dataset = Dataset.objects.filter(name=p["dataset"]).first()
    if dataset is None and kind == "auto":
        raise JobFailed("A new dataset needs a kind (document, qa, dialogue, mcq or pair), not auto.")
    if dataset is not None and kind not in ("auto", dataset.kind):
        raise JobFailed(f"Dataset {dataset.name!r} holds {dataset.kind} records, not {kind}.")
    created = dataset is None
    # SQLite (the embedded default) has one writer at a time: a transaction as long as the import
    # would hold the write lock for its whole run, so labels and other jobs would wait on it and
    # fail with "database is locked" after the busy timeout. There each batch commits on its own
    # and the job's cursor carries what to undo; a failure removes what this import added, and the
    # re-queued attempt of a worker that died removes the dead attempt's batches before starting
    # over. PostgreSQL keeps the one transaction (its writers do not block each other).
    per_batch = connection.vendor != "postgresql"
    undo = None
    if created and per_batch:
        undo = {"dataset": None, "created": True}
    elif per_batch:
        undo = {"dataset": dataset.pk, "ranges": []}  # the pk ranges this import's batches inserted
    ctx.log(f"Validating and importing {name} ({fmt}, kind {kind}).")
    n_upper = count_rows(path, fmt)
    ctx.progress(done=0, total=n_upper or None, cursor=None)
    # A kind hint ("this looks like a qa file") only when the kind was chosen, not taken from the dataset.
    scan = _Scan(path=path, fmt=fmt, kind=dataset.kind if dataset else kind, hint_kind=kind != "auto",
                 stop_writing_on_bad=not skip_bad)
    scan.report.kind = kind
    rows = scan.records()
    dropped = False
    if dataset is not None:
        rows, dropped = _drop_index_for_append(ctx, dataset, rows, n_upper)
    report = scan.report
    inserted = done = 0
    # A new dataset's rows are new by construction (no other session sees the dataset before the
    # commit), so on PostgreSQL each batch streams into its COPY as it is normalised.
    stream = created and connection.vendor == "postgresql"
    batch = _Batch(rows, max(settings.IMPORT_BATCH_SIZE, settings.IMPORT_STREAM_BATCH_SIZE) if stream
                   else settings.IMPORT_BATCH_SIZE)
    try:
        # progress (heartbeat, count) is written where the web and jobs_recover see it meanwhile
        with ctx.progress_outside_transaction(), (nullcontext() if per_batch else transaction.atomic()):
            while batch.next():
                with (transaction.atomic() if per_batch else nullcontext()):
                    if created and dataset is None:
                        dataset = _create(ctx, p, kind, undo)
                    before = _max_record_pk() if undo and not created else 0
                    inserted += records_insert(dataset=dataset, rows=batch if stream else list(batch),
                                               check_existing=not created)
                    if undo and not created:
                        _note_range(undo["ranges"], before, _max_record_pk())
                    done += batch.n
                    ctx.progress(done=done, cursor={"undo": undo} if per_batch else ...)
            if report.file_error or (report.n_bad and not skip_bad):
                raise _Rejected()
            with (transaction.atomic() if per_batch else nullcontext()):
                if created and dataset is None:
                    dataset = _create(ctx, p, kind, undo)
                dataset_refresh_stats(dataset=dataset, request_index=False)
                audit_log(actor=ctx.job.created_by, action="datasets.import", target=dataset,
                          data={"file": name, "inserted": inserted, "rows": done, "job": ctx.job.pk})
                if per_batch:
                    ctx.progress(cursor=None)
    except Exception as exc:
        if connection_lost(exc):
            raise  # not the data's fault: nothing was committed, and the re-queued job starts over
        if undo and (undo.get("dataset") is not None):
            from medstudio.jobs.models import Job

            _import_undo(undo)  # SQLite: the batches this import committed
            Job.objects.filter(pk=ctx.job.pk).update(cursor=None)  # not progress(): a cancel would raise again
        if dropped:
            search_index.request(Dataset.objects.get(pk=dataset.pk))  # the records stand: so does their index
        undone = ""
        if (created and dataset is not None or inserted) and not isinstance(exc, _Rejected):
            undone = ("Nothing was imported: the transaction was rolled back, so "
                      + (f"the new dataset {p['dataset']!r} was removed." if created else
                         f"the {inserted} record(s) this import had added to {dataset.name!r} were removed."))
            ctx.log(undone, "warning")
        if isinstance(exc, _Rejected):
            failed = JobFailed(report.file_error or ("Nothing was imported. " + report.summary()))
            failed.result = {"validation": report.as_dict()}
            raise failed from None
        if isinstance(exc, DatabaseError):
            log.exception("job %s: import failed", ctx.job.pk)
            failed = JobFailed(f"The database refused the batch ending at line {batch.last_line} "
                               f"({type(exc).__name__}: {exc}). {undone}".strip())
            failed.result = {"validation": report.as_dict(), "dataset_id": None if created else dataset.pk}
            raise failed from exc
        if created:
            from medstudio.jobs.models import Job

            Job.objects.filter(pk=ctx.job.pk).update(result={"dataset_id": None, "rolled_back": undone})
        raise
    search_index.request(dataset)  # PostgreSQL: a large dataset's trigram index, built now that the rows are committed
    validation = report.as_dict()
    ctx.progress(done=done, total=done, result={**(ctx.job.result or {}), "validation": validation, "dataset_id": dataset.pk})
    if report.n_bad:
        ctx.log(f"Skipped {report.n_bad} bad line(s): " + report.summary(), "warning")
    nul = validation.get("nul_stripped")
    note = f" Stripped {nul['characters']} NUL character(s) on {nul['n_lines']} line(s)." if nul else ""
    if nul:
        ctx.log(report.nul_summary(), "warning")
    ctx.log(f"Imported {inserted} new record(s) ({done - inserted} already present) into {dataset.name}.{note}")
    if p.get("benchmark") and not dataset.is_benchmark:
        dataset_update(actor=ctx.job.created_by, dataset=dataset, is_benchmark=True)
        ctx.log(f"Flagged {dataset.name} as an evaluation benchmark (training data is decontaminated against it).")
    out = {"dataset_id": dataset.pk, "inserted": inserted, "already_present": done - inserted, "rows": done}
    if nul:
        out["nul_stripped"] = nul
    return out


@job_handler(search_index.JOB_KIND, queue="cpu",
             description="Build a dataset's record search index (PostgreSQL trigram), after its import.")
def search_index_job(ctx: JobContext) -> dict:
    done = search_index.build(ctx.params["dataset_id"])
    ctx.log(f"Search index: {done}.")
    return {"dataset_id": ctx.params["dataset_id"], "search_index": done}


@receiver(post_delete, sender=Dataset)
def _dataset_deleted(sender, instance, **kwargs):
    search_index.drop_after_delete(instance.pk)


def upload_store(*, uploaded_file) -> Path:
    """Keep an uploaded file under MEDIA_ROOT/imports for the import job to stream."""
    folder = Path(settings.MEDIA_ROOT) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in uploaded_file.name)[-100:]
    path = folder / f"{uuid.uuid4().hex}_{safe}"
    with path.open("wb") as fh:
        for chunk in uploaded_file.chunks():
            fh.write(chunk)
    return path


def import_start(*, user, path: str | Path, fmt: str, kind: str, dataset: str, skip_bad: bool = False,
                 description: str = "", enqueue: bool = True, benchmark: bool = False, file_name: str = ""):
    from medstudio.jobs.services import job_create

    params = {"path": str(path), "format": fmt, "kind": kind, "dataset": dataset, "skip_bad": skip_bad,
              "description": description}
    if benchmark:
        params["benchmark"] = True
    if file_name:
        params["file_name"] = file_name
    return job_create(kind="datasets.import", params=params, user=user, enqueue=enqueue)


# ----------------------------------------------------------------------------------------------
# export

# Parquet columns per kind: id, source, lang, the kind's content fields, meta (the extra fields).
_PARQUET_FIELDS = {
    "document": ("title", "text", "system"),
    "qa": ("question", "answer", "system"),
    "dialogue": ("turns", "system"),
    "mcq": ("question", "options", "answer", "explanation", "system"),
    "pair": ("prompt_turns", "chosen", "rejected"),
}
# Written as JSON text (and named in the file's metadata, so the reader decodes exactly these).
_PARQUET_JSON = ("turns", "options", "prompt_turns", "meta")


def record_to_row(record: Record, kind: str) -> dict:
    """The shared-data schema: id, source, lang, the kind's fields, and the original extra fields."""
    from .convert import to_flat_row

    return to_flat_row(kind, record.content, id=record.external_id, source=record.source, lang=record.lang)


def _parquet_columns(kind: str) -> list[str]:
    return ["id", "source", "lang", *_PARQUET_FIELDS[kind], "meta"]


_PARQUET_KNOWN = {kind: frozenset(("meta", "id", "source", "lang", *fields)) for kind, fields in _PARQUET_FIELDS.items()}


def _parquet_values(kind: str, ext: str, source: str, lang: str, content: dict | None) -> list:
    """The values of one Parquet row, in `_parquet_columns(kind)` order."""
    content = content or {}
    out = [ext, source, lang]
    for f in _PARQUET_FIELDS[kind]:
        v = content.get(f)
        out.append(json.dumps(v, ensure_ascii=False) if f in _PARQUET_JSON and v is not None else (
            v if v is None or isinstance(v, str) else str(v)))
    meta = content.get("meta") or {}
    if not content.keys() <= _PARQUET_KNOWN[kind]:  # a content field this layout has no column for stays in meta
        meta = dict(meta)
        for k in content:
            if k not in _PARQUET_KNOWN[kind]:
                meta.setdefault(k, content[k])
    out.append(json.dumps(meta, ensure_ascii=False) if meta else None)
    return out


@job_handler("datasets.export", queue="cpu", description="Export a dataset (or a filtered list) to JSONL or Parquet.")
def export_job(ctx: JobContext) -> dict:
    from .selectors import records_filtered

    p = ctx.params
    dataset = Dataset.objects.get(pk=p["dataset_id"])
    fmt = p["format"]
    if fmt not in ("jsonl", "parquet"):
        raise JobFailed(f"Unknown export format {fmt!r}; expected jsonl or parquet.")
    filters = {k: v for k, v in (p.get("filters") or {}).items() if v}
    qs = records_filtered(dataset=dataset, **filters)
    total = dataset.n_records if not filters else qs.count()  # the cached count is exact after each import
    ctx.progress(done=0, total=total)
    folder = Path(settings.MEDIA_ROOT) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset.name.replace('/', '_')}-job{ctx.job.pk}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        n, digest = _export_write(ctx, qs, dataset, fmt, tmp)
    except OSError as exc:
        # A full disk (or a vanished folder): say so, and leave no partial file that looks like an export.
        tmp.unlink(missing_ok=True)
        raise JobFailed(f"Could not write the export to {folder}: {exc.strerror or exc}. Nothing was kept; "
                        f"free some space and export again.") from exc
    tmp.replace(path)
    with transaction.atomic():
        export = Export.objects.create(dataset=dataset, job=ctx.job, format=fmt, filters=p.get("filters") or {},
                                       path=str(path), sha256=digest.hexdigest(), n_records=n,
                                       size_bytes=path.stat().st_size, created_by=ctx.job.created_by)
        audit_log(actor=ctx.job.created_by, action="datasets.export", target=dataset,
                  data={"export": export.pk, "format": fmt, "n": n, "sha256": export.sha256})
        ctx.progress(done=n)
    return {"export_id": export.pk, "sha256": export.sha256, "n_records": n, "path": str(path)}


def _export_rows(qs, chunk_size: int = 5000):
    """(external_id, source, lang, content dict) of the queryset's records, in its order, streamed.

    The query Django builds, run on a chunked (server-side on PostgreSQL) cursor, with the content
    JSON decoded here in one call per row instead of through the ORM's per-value converters.
    """
    sql, params = qs.values_list("external_id", "source", "lang", "content").query.sql_with_params()
    loads = json.loads
    chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")  # as QuerySet.iterator decides
    with (connection.chunked_cursor() if chunked else connection.cursor()) as cur:
        cur.execute(sql, params)
        while chunk := cur.fetchmany(chunk_size):
            for ext, source, lang, content in chunk:
                yield ext, source, lang, (content if isinstance(content, dict) else loads(content))


_JSONL_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _jsonl_line(row: dict) -> bytes:
    """One export line. orjson (3-5x the stdlib's speed) writes it, in the stdlib's compact form;
    it refuses integers beyond 64 bits, and those lines go through the stdlib. (Stored content
    never holds NaN or Infinity, which orjson would write as null: the import refuses them.)"""
    try:
        return orjson.dumps(row)
    except TypeError:
        return _JSONL_COMPACT.encode(row).encode()


def _write_lines(fh, digest, lines: list[bytes]) -> int:
    """Write (and hash) a block of JSONL lines; how many."""
    if lines:
        data = b"\n".join(lines) + b"\n"
        digest.update(data)
        fh.write(data)
    return len(lines)


def _export_write(ctx: JobContext, qs, dataset: Dataset, fmt: str, tmp: Path):
    """Write the records to `tmp`; return (count, sha256 of the file).

    One streamed query of the four exported columns (a server-side cursor on PostgreSQL; no model
    objects), written in blocks of 5000: JSONL lines hashed as they are written, Parquet as
    column arrays (one record batch per block).
    """
    from .convert import to_flat_row

    n = 0
    kind = dataset.kind
    rows = _export_rows(qs)
    digest = hashlib.sha256()
    # An export is cheap to redo, so a resumed export starts over; the file appears only when complete.
    if fmt == "jsonl":
        with tmp.open("wb") as fh:
            lines: list[bytes] = []
            for ext, source, lang, content in rows:
                lines.append(_jsonl_line(to_flat_row(kind, content, id=ext, source=source, lang=lang)))
                if len(lines) >= 5000:
                    n += _write_lines(fh, digest, lines)
                    lines = []
                    ctx.progress(done=n)
            n += _write_lines(fh, digest, lines)
        return n, digest
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _parquet_columns(kind)
    json_columns = ",".join(c for c in columns if c in _PARQUET_JSON)
    schema = pa.schema([(c, pa.string()) for c in columns], metadata={PARQUET_JSON_COLUMNS_KEY: json_columns})
    string = pa.string()

    def batch(block: list[list]) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([pa.array(col, type=string) for col in zip(*block)], schema=schema)

    # The file is hashed as pyarrow writes it (no second read of the file for its sha256).
    with tmp.open("wb") as raw, pq.ParquetWriter(_HashingWriter(raw, digest), schema) as writer:
        block: list[list] = []
        for ext, source, lang, content in rows:
            block.append(_parquet_values(kind, ext, source, lang, content))
            if len(block) >= 5000:
                writer.write_batch(batch(block))
                n += len(block)
                block = []
                ctx.progress(done=n)
        if block:
            writer.write_batch(batch(block))
            n += len(block)
    return n, digest


class _HashingWriter:
    """A write-only file for pyarrow's ParquetWriter that feeds every byte to a hash on its way to
    the real file (pyarrow writes Parquet sequentially: no seeks, the footer last)."""

    def __init__(self, fh, digest):
        self._fh, self._digest, self._pos = fh, digest, 0
        self.closed = False

    def write(self, data) -> int:
        self._digest.update(data)
        self._pos += len(memoryview(data).cast("B"))
        return self._fh.write(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def export_start(*, user, dataset: Dataset, fmt: str, filters: dict | None = None, enqueue: bool = True):
    from medstudio.jobs.services import job_create

    return job_create(kind="datasets.export", params={"dataset_id": dataset.pk, "format": fmt, "filters": filters or {}},
                      user=user, enqueue=enqueue)


@transaction.atomic
def dataset_update(*, actor, dataset: Dataset, is_benchmark: bool | None = None, description: str | None = None) -> Dataset:
    fields = []
    if is_benchmark is not None:
        dataset.is_benchmark = is_benchmark
        fields.append("is_benchmark")
    if description is not None:
        dataset.description = description
        fields.append("description")
    dataset.save(update_fields=fields)
    audit_log(actor=actor, action="datasets.update", target=dataset, data={f: getattr(dataset, f) for f in fields})
    return dataset


@transaction.atomic
def dataset_delete(*, actor, dataset: Dataset) -> None:
    audit_log(actor=actor, action="datasets.delete", target=dataset, data={"n_records": dataset.n_records})
    dataset.delete()


def _import_links(job):
    from django.urls import reverse
    ds = (job.result or {}).get("dataset_id")
    return [(gettext_noop("Open the dataset"), reverse("datasets:detail", args=[ds]))] if ds else []


def _export_links(job):
    from django.urls import reverse
    ex = (job.result or {}).get("export_id")
    return [(gettext_noop("Download the export"), reverse("datasets:export_download", args=[ex]))] if ex else []


register_job_kind("datasets.import", label=gettext_noop("Dataset import"), result_links=_import_links)
def _search_index_links(job):
    from django.urls import reverse
    ds = (job.params or {}).get("dataset_id")
    return [(gettext_noop("Open the dataset"), reverse("datasets:detail", args=[ds]))] if ds and Dataset.objects.filter(pk=ds).exists() else []


register_job_kind(search_index.JOB_KIND, label=gettext_noop("Dataset search index"), result_links=_search_index_links)
register_job_kind("datasets.export", label=gettext_noop("Dataset export"), result_links=_export_links)
