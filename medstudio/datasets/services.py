"""Writes for datasets and records: import (validate, then stream in batches), export, flags."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum

from medstudio.audit.services import audit_log
from medstudio.jobs.context import JobContext, JobFailed
from medstudio.jobs.registry import job_handler

from .formats import KINDS, FileError, NormalizedRecord, RowError, iter_rows, normalize_content, normalize_row
from .models import Dataset, Export, Record


class ImportRejected(Exception):
    """The file has bad lines (or cannot be read); nothing was imported."""

    def __init__(self, report: "ValidationReport"):
        self.report = report
        super().__init__(report.summary())


@dataclass
class ValidationReport:
    n_rows: int = 0
    n_ok: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # first N (line, reason)
    n_bad: int = 0
    file_error: str = ""

    def summary(self) -> str:
        if self.file_error:
            return self.file_error
        if not self.n_bad:
            return f"{self.n_ok} valid records."
        shown = "; ".join(f"line {ln}: {reason}" for ln, reason in self.errors[:20])
        more = f" (and {self.n_bad - 20} more)" if self.n_bad > 20 else ""
        return f"{self.n_bad} bad line(s) of {self.n_rows}: {shown}{more}"

    def as_dict(self) -> dict:
        return {"n_rows": self.n_rows, "n_ok": self.n_ok, "n_bad": self.n_bad, "file_error": self.file_error,
                "errors": [{"line": ln, "reason": r} for ln, r in self.errors]}


def import_validate(*, path: str | Path, fmt: str, kind: str) -> ValidationReport:
    """Read the whole file once (streaming) and report every bad line; writes nothing."""
    report = ValidationReport()
    if kind != "auto" and kind not in KINDS:
        report.file_error = f"Unknown kind {kind!r}; expected one of {', '.join(KINDS)} (or auto)."
        return report
    try:
        for lineno, row in iter_rows(path, fmt, max_line_bytes=settings.IMPORT_MAX_LINE_BYTES):
            report.n_rows += 1
            if not isinstance(row, RowError):
                try:
                    normalize_content(row, kind)
                    report.n_ok += 1
                    continue
                except RowError as exc:
                    row = exc
            report.n_bad += 1
            if len(report.errors) < settings.IMPORT_MAX_REPORTED_ERRORS:
                report.errors.append((lineno, str(row)))
    except FileError as exc:
        report.file_error = str(exc)
    return report


def dataset_create(*, actor, name: str, kind: str, description: str = "", parent: Dataset | None = None,
                   licence: str = "", data: dict | None = None) -> Dataset:
    """The one way a dataset comes into being (imports, redacted copies, review sets...): audited."""
    dataset = Dataset.objects.create(name=name, kind=kind, description=description, parent=parent, licence=licence,
                                     created_by=actor if getattr(actor, "is_authenticated", False) else None)
    audit_log(actor=actor, action="datasets.create", target=dataset,
              data={"kind": kind, **({"parent": parent.pk} if parent else {}), **(data or {})})
    return dataset


def _dataset_for_import(*, name: str, kind: str, user, description: str = "") -> Dataset:
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        if kind == "auto":
            raise JobFailed("A new dataset needs a kind (document, qa, dialogue, mcq or pair), not auto.")
        dataset = dataset_create(actor=user, name=name, kind=kind, description=description)
    elif kind not in ("auto", dataset.kind):
        raise JobFailed(f"Dataset {name!r} holds {dataset.kind} records, not {kind}.")
    return dataset


def records_insert(*, dataset: Dataset, rows: list[NormalizedRecord]) -> int:
    """Insert normalised records, ignoring ones already present (same dataset + external id)."""
    ids = [r.external_id for r in rows]
    existing = set(Record.objects.filter(dataset=dataset, external_id__in=ids).values_list("external_id", flat=True))
    fresh: dict[str, Record] = {}
    for r in rows:
        if r.external_id in existing or r.external_id in fresh:
            continue
        fresh[r.external_id] = Record(dataset=dataset, external_id=r.external_id, lang=r.lang, source=r.source,
                                      subset=r.subset, content=r.content, text=r.text, text_hash=r.text_hash,
                                      n_tokens=r.n_tokens)
    Record.objects.bulk_create(fresh.values(), ignore_conflicts=True)
    return len(fresh)


def dataset_refresh_stats(*, dataset: Dataset) -> Dataset:
    agg = Record.objects.filter(dataset=dataset).aggregate(n=Count("id"), t=Sum("n_tokens"))
    langs = dict(Record.objects.filter(dataset=dataset).values_list("lang").annotate(c=Count("id")).order_by())
    Dataset.objects.filter(pk=dataset.pk).update(n_records=agg["n"] or 0, n_tokens=agg["t"] or 0, langs=langs)
    dataset.refresh_from_db()
    return dataset


@job_handler("datasets.import", queue="cpu", description="Validate and import a JSONL/CSV/Parquet file.")
def import_job(ctx: JobContext) -> dict:
    p = ctx.params
    path, fmt, kind, skip_bad = p["path"], p["format"], p.get("kind", "auto"), bool(p.get("skip_bad"))
    cursor = ctx.cursor
    if cursor is None:
        ctx.log(f"Validating {Path(path).name} ({fmt}, kind {kind}).")
        report = import_validate(path=path, fmt=fmt, kind=kind)
        if report.file_error or (report.n_bad and not skip_bad):
            exc = JobFailed(("Nothing was imported. " + report.summary()) if not report.file_error else report.file_error)
            exc.result = {"validation": report.as_dict()}
            raise exc
        with transaction.atomic():
            dataset = _dataset_for_import(name=p["dataset"], kind=kind, user=ctx.job.created_by,
                                          description=p.get("description", ""))
            cursor = {"line": 0, "dataset_id": dataset.pk, "inserted": 0}
            ctx.progress(done=0, total=report.n_ok, cursor=cursor,
                         result={"validation": report.as_dict(), "dataset_id": dataset.pk})
        if report.n_bad:
            ctx.log(f"Skipping {report.n_bad} bad line(s): " + report.summary(), "warning")
    dataset = Dataset.objects.get(pk=cursor["dataset_id"])
    kind = dataset.kind
    batch: list[NormalizedRecord] = []
    done = ctx.job.done
    inserted = cursor.get("inserted", 0)
    last_line = cursor["line"]

    def flush() -> None:
        nonlocal batch, done, inserted
        with transaction.atomic():
            inserted += records_insert(dataset=dataset, rows=batch)
            done += len(batch)
            ctx.progress(done=done, cursor={"line": last_line, "dataset_id": dataset.pk, "inserted": inserted})
        batch = []

    for lineno, row in iter_rows(path, fmt, max_line_bytes=settings.IMPORT_MAX_LINE_BYTES, start_line=cursor["line"]):
        last_line = lineno
        if isinstance(row, RowError):
            continue
        try:
            batch.append(normalize_row(row, kind))
        except RowError:
            continue  # reported by validation; only reached with skip_bad
        if len(batch) >= settings.IMPORT_BATCH_SIZE:
            flush()
    if batch:
        flush()
    dataset_refresh_stats(dataset=dataset)
    audit_log(actor=ctx.job.created_by, action="datasets.import", target=dataset,
              data={"file": Path(path).name, "inserted": inserted, "rows": done, "job": ctx.job.pk})
    ctx.log(f"Imported {inserted} new record(s) ({done - inserted} already present) into {dataset.name}.")
    return {"dataset_id": dataset.pk, "inserted": inserted, "already_present": done - inserted, "rows": done}


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
                 description: str = "", enqueue: bool = True):
    from medstudio.jobs.services import job_create

    params = {"path": str(path), "format": fmt, "kind": kind, "dataset": dataset, "skip_bad": skip_bad,
              "description": description}
    return job_create(kind="datasets.import", params=params, user=user, enqueue=enqueue)


# ----------------------------------------------------------------------------------------------
# export

_FLAT_FIELDS = {
    "document": ("title", "text"),
    "qa": ("question", "answer", "system"),
    "dialogue": ("turns", "system"),
    "mcq": ("question", "options", "answer", "explanation"),
    "pair": ("prompt_turns", "chosen", "rejected"),
}


def record_to_row(record: Record, kind: str) -> dict:
    """The shared-data schema: id, source, lang, the kind's fields, and the original extra fields."""
    from .convert import to_flat_row

    return to_flat_row(kind, record.content, id=record.external_id, source=record.source, lang=record.lang)


def _parquet_row(row: dict, kind: str) -> dict:
    out = {"id": row["id"], "source": row.get("source", ""), "lang": row.get("lang", "")}
    for f in _FLAT_FIELDS[kind]:
        v = row.get(f)
        out[f] = json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
    extra = {k: v for k, v in row.items() if k not in out}
    out["meta"] = json.dumps(extra, ensure_ascii=False) if extra else None
    return out


@job_handler("datasets.export", queue="cpu", description="Export a dataset (or a filtered list) to JSONL or Parquet.")
def export_job(ctx: JobContext) -> dict:
    from .selectors import records_filtered

    p = ctx.params
    dataset = Dataset.objects.get(pk=p["dataset_id"])
    fmt = p["format"]
    if fmt not in ("jsonl", "parquet"):
        raise JobFailed(f"Unknown export format {fmt!r}; expected jsonl or parquet.")
    qs = records_filtered(dataset=dataset, **(p.get("filters") or {}))
    total = qs.count()
    ctx.progress(done=0, total=total)
    folder = Path(settings.MEDIA_ROOT) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset.name.replace('/', '_')}-job{ctx.job.pk}.{fmt}"
    tmp = path.with_suffix(path.suffix + ".part")
    n = 0
    # An export is cheap to redo, so a resumed export starts over; the file appears only when complete.
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for record in qs.iterator(chunk_size=2000):
                fh.write(json.dumps(record_to_row(record, dataset.kind), ensure_ascii=False) + "\n")
                n += 1
                if n % 5000 == 0:
                    ctx.progress(done=n)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [("id", pa.string()), ("source", pa.string()), ("lang", pa.string())]
        fields += [(f, pa.string()) for f in _FLAT_FIELDS[dataset.kind]] + [("meta", pa.string())]
        schema = pa.schema(fields)
        with pq.ParquetWriter(tmp, schema) as writer:
            rows: list[dict] = []
            for record in qs.iterator(chunk_size=2000):
                rows.append(_parquet_row(record_to_row(record, dataset.kind), dataset.kind))
                n += 1
                if len(rows) >= 5000:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
                    ctx.progress(done=n)
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    digest = hashlib.sha256()
    with tmp.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    tmp.replace(path)
    with transaction.atomic():
        export = Export.objects.create(dataset=dataset, job=ctx.job, format=fmt, filters=p.get("filters") or {},
                                       path=str(path), sha256=digest.hexdigest(), n_records=n,
                                       size_bytes=path.stat().st_size, created_by=ctx.job.created_by)
        audit_log(actor=ctx.job.created_by, action="datasets.export", target=dataset,
                  data={"export": export.pk, "format": fmt, "n": n, "sha256": export.sha256})
        ctx.progress(done=n)
    return {"export_id": export.pk, "sha256": export.sha256, "n_records": n, "path": str(path)}


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
