"""Studio jobs: refresh a score matrix, freeze a selection, export it, build a CPT mixture.

Each job is cheap to redo from the start relative to its risk of half-written output, so a resumed
job starts over; files appear under their final name only when complete.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from medstudio.audit.services import audit_log
from medstudio.datasets.models import Dataset
from medstudio.jobs.context import JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind

from .models import SelectionExport
from medstudio.handoffs import services as handoffs
from medstudio.handoffs.models import Mixture, Selection


def _out_dir(*parts: str) -> Path:
    folder = Path(settings.MEDIA_ROOT).joinpath("studio", *parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@job_handler("studio.matrix_sync", queue="cpu", description="Copy a dataset's latest scorer runs into its score matrix.")
def matrix_sync_job(ctx: JobContext) -> dict:
    from .services import StudioError, matrix_sync

    dataset = Dataset.objects.filter(pk=ctx.params["dataset_id"]).first()
    if dataset is None:
        raise JobFailed("The dataset was deleted.")
    try:
        return matrix_sync(dataset=dataset, actor=ctx.job.created_by)
    except StudioError as exc:
        raise JobFailed(str(exc)) from exc


@job_handler("studio.apply_recipe", queue="cpu", description="Apply a recipe version: freeze the kept records as a selection.")
def apply_recipe_job(ctx: JobContext) -> dict:
    from .selectors import kept_q, scope_load
    from .services import StudioError, matrix_sync, selection_freeze
    from .spec import SpecError, parse_spec

    sel = Selection.objects.filter(pk=ctx.params["selection_id"]).first()
    if sel is None:
        raise JobFailed("The selection was deleted.")
    try:
        spec = parse_spec(sel.conditions)
        datasets = list(sel.datasets.all())
        ctx.progress(done=0, total=len(datasets) + 1)
        for i, ds in enumerate(datasets):
            matrix_sync(dataset=ds, actor=ctx.job.created_by)
            ctx.progress(done=i + 1)
        scope = scope_load([d.pk for d in datasets])
        missing = [b.scorer for b in spec.bounds if b.scorer not in scope.value and not b.keep_unscored]
        if missing:
            ctx.log(f"No finished run of {', '.join(missing)} on these datasets: those bounds keep nothing.")
        selection_freeze(selection=sel, spec=spec, runs=scope.runs_for(spec), q=kept_q(scope, spec))
    except (SpecError, StudioError) as exc:
        handoffs.selection_update(selection=sel, status=Selection.Status.FAILED)
        raise JobFailed(str(exc)) from exc
    except Exception:
        handoffs.selection_update(selection=sel, status=Selection.Status.FAILED)
        raise
    sel.refresh_from_db()
    ctx.progress(done=len(datasets) + 1)
    return {"selection_id": sel.pk, "n_records": sel.n_records, "n_tokens": sel.n_tokens, "content_hash": sel.content_hash}


def _provenance(sel: Selection, fmt: str) -> dict[str, Any]:
    version = sel.recipe_version
    return {
        "selection": {"id": sel.pk, "name": sel.name, "content_hash": sel.content_hash, "n_records": sel.n_records,
                      "n_tokens": sel.n_tokens, "created_at": sel.created_at.isoformat()},
        "recipe": ({"name": version.recipe.name, "version": version.number, "version_id": version.pk} if version else None),
        "conditions": sel.conditions,
        "scorer_runs": sel.runs,
        "datasets": [{"id": d.pk, "name": d.name, "kind": d.kind} for d in sel.datasets.all()],
        "format": fmt,
        "exported_at": timezone.now().isoformat(),
    }


@job_handler("studio.export_selection", queue="cpu", description="Export a frozen selection (JSONL, Parquet, TRL, LLaMA-Factory, text).")
def export_selection_job(ctx: JobContext) -> dict:
    from medstudio.datasets import convert as formats
    from medstudio.handoffs.selectors import selection_records

    export = SelectionExport.objects.select_related("selection").filter(pk=ctx.params["export_id"]).first()
    if export is None:
        raise JobFailed("The export was deleted.")
    sel = export.selection
    fmt = export.format
    datasets = {d.pk: d for d in sel.datasets.all()}
    kinds = {d.kind for d in datasets.values()}
    folder = _out_dir("exports", f"selection{sel.pk}-export{export.pk}")
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in sel.name)[:60] or f"selection{sel.pk}"
    data_name = {"jsonl": f"{slug}.jsonl", "parquet": f"{slug}.parquet", "messages": f"{slug}.messages.jsonl",
                 "preference": f"{slug}.preference.jsonl", "llamafactory": f"{slug}.jsonl", "text": f"{slug}.txt"}[fmt]
    if fmt == "llamafactory":
        try:
            info = formats.llamafactory_dataset_info(slug, data_name, kinds)
        except formats.Unconvertible as exc:
            raise JobFailed(str(exc)) from exc
    path = folder / data_name
    tmp = path.with_name(path.name + ".part")
    total = sel.n_records
    ctx.progress(done=0, total=total)
    written, skipped = 0, {}
    fields = ("id", "external_id", "dataset_id", "lang", "source", "subset", "n_tokens", "text_hash", "content")
    rows = selection_records(sel).values(*fields).iterator(chunk_size=2000)

    def records():
        for r in rows:
            ds = datasets[r["dataset_id"]]
            yield dict(r, dataset=ds.name, kind=ds.kind)

    convert = {
        "messages": lambda r: {"messages": formats.to_messages(r["kind"], r["content"])},
        "preference": lambda r: formats.to_preference(r["kind"], r["content"]),
        "llamafactory": lambda r: formats.to_llamafactory(r["kind"], r["content"]),
    }
    seen = 0
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("record_id", pa.int64()), ("external_id", pa.string()), ("dataset", pa.string()),
                            ("kind", pa.string()), ("lang", pa.string()), ("source", pa.string()), ("subset", pa.string()),
                            ("n_tokens", pa.int64()), ("text_hash", pa.string()), ("content", pa.string())])
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict] = []
            for r in records():
                row = formats.to_row(r)
                row["content"] = formats.dumps(row["content"])
                batch.append(row)
                seen += 1
                if len(batch) >= 5000:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    written += len(batch)
                    batch = []
                    ctx.progress(done=seen)
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                written += len(batch)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for r in records():
                seen += 1
                try:
                    if fmt == "jsonl":
                        line = formats.dumps(formats.to_row(r))
                    elif fmt == "text":
                        line = formats.to_text(r["kind"], r["content"]) + "\n"
                    else:
                        line = formats.dumps(convert[fmt](r))
                except formats.Unconvertible as exc:
                    skipped[str(exc)] = skipped.get(str(exc), 0) + 1
                    continue
                except (KeyError, TypeError, AttributeError) as exc:  # malformed content: skip the record, keep the job
                    skipped[f"malformed content ({type(exc).__name__})"] = skipped.get(f"malformed content ({type(exc).__name__})", 0) + 1
                    continue
                fh.write(line + "\n")
                written += 1
                if seen % 5000 == 0:
                    ctx.progress(done=seen)
    tmp.replace(path)
    files = [path.name]
    if fmt == "llamafactory":
        (folder / "dataset_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
        files.append("dataset_info.json")
    prov = _provenance(sel, fmt)
    prov.update({"n_written": written, "skipped": skipped, "files": {f: _sha256(folder / f) for f in files}})
    (folder / "provenance.json").write_text(json.dumps(prov, ensure_ascii=False, indent=2), encoding="utf-8")
    files.append("provenance.json")
    with transaction.atomic():
        SelectionExport.objects.filter(pk=export.pk).update(status="succeeded", path=str(folder), files=files,
                                                            n_written=written, skipped=skipped, provenance=prov,
                                                            sha256=prov["files"][path.name])
        audit_log(actor=ctx.job.created_by, action="studio.selection_export_done", target=export,
                  data={"n_written": written, "skipped": skipped, "sha256": prov["files"][path.name]})
        ctx.progress(done=seen)
    if written == 0:
        ctx.log(f"No record could be written as {fmt}: {skipped}")
    return {"export_id": export.pk, "n_written": written, "skipped": skipped, "path": str(folder)}


def _freeze_dataset_sources(ctx: JobContext, mix: Mixture) -> Mixture:
    """Each dataset source becomes a selection first (a resumed job finds those already frozen)."""
    from .selectors import dataset_source
    from .services import StudioError, dataset_source_freeze

    for i, src in enumerate(list(mix.sources)):
        if src.get("selection") or not src.get("dataset"):
            continue
        ds, version = dataset_source(src)
        name = f"{mix.name} · {ds.name}" + (f" · {version}" if version else "")
        try:
            sel = dataset_source_freeze(user=ctx.job.created_by, dataset=ds, version=version, name=name)
        except StudioError as exc:
            raise ValueError(str(exc)) from exc
        mix = handoffs.mixture_source_frozen(mixture=mix, position=i, selection=sel, actor=ctx.job.created_by)
        ctx.log(f"Froze dataset {ds.name}{' with ' + str(version) if version else ' (whole)'} into selection #{sel.pk} "
                f"({sel.n_records} records, {sel.n_tokens} tokens).")
    return mix


@job_handler("studio.build_mixture", queue="cpu", description="Draw a CPT mixture from its selections and write shards.")
def build_mixture_job(ctx: JobContext) -> dict:
    from curation.pipeline.mixing import MixingError, RecordRef, interleave, plan_mixture, realize, shard

    from medstudio.handoffs.selectors import selection_records

    from .selectors import mix_sources, mix_targets

    mix = Mixture.objects.filter(pk=ctx.params["mixture_id"]).first()
    if mix is None:
        raise JobFailed("The mixture was deleted.")
    try:
        mix = _freeze_dataset_sources(ctx, mix)
        targets = mix_targets(mix.targets)
        plan = plan_mixture(mix_sources(mix.sources), targets, budget=mix.budget_tokens, strategy=mix.strategy)
        refs: dict[str, list[RecordRef]] = {}
        for src in mix.sources:
            sel = Selection.objects.get(pk=int(src["selection"]))
            refs[str(sel.pk)] = [RecordRef(id=i, lang=lang, n_tokens=n) for i, lang, n in
                                 selection_records(sel).values_list("id", "lang", "n_tokens").iterator(chunk_size=10000)]
        realised = realize(plan, refs, seed=mix.seed)
    except (MixingError, ValueError) as exc:
        handoffs.mixture_update(mixture=mix, status="failed")
        raise JobFailed(str(exc)) from exc
    draws = interleave(realised.draws, seed=mix.seed)
    ctx.progress(done=0, total=len(draws))
    folder = _out_dir("mixtures", f"mixture{mix.pk}")
    from medstudio.datasets.models import Record

    files, done = [], 0
    for i, part in enumerate(shard(draws, mix.shard_tokens)):
        wanted = sorted({d.record_id for d in part})
        texts = {}
        for i0 in range(0, len(wanted), 5000):  # bounded IN lists (SQLite caps bound variables)
            texts.update(Record.objects.filter(pk__in=wanted[i0:i0 + 5000]).values_list("id", "text"))
        name = f"shard-{i:05d}.jsonl"
        tmp = folder / (name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            for d in part:
                fh.write(json.dumps({"text": texts[d.record_id], "record_id": d.record_id, "selection": int(d.source),
                                     "category": d.category, "lang": d.lang, "n_tokens": d.n_tokens, "epoch": d.epoch},
                                    ensure_ascii=False) + "\n")
        tmp.replace(folder / name)
        files.append(name)
        done += len(part)
        ctx.progress(done=done)
    achieved = realised.achieved(plan.targets)  # the ratios the plan meets (a missing language renormalised away)
    achieved["total_tokens"] = realised.total
    achieved["tokens_by_cell"] = realised.tokens_by_cell
    achieved["n_draws"] = len(draws)
    manifest = {"mixture": mix.pk, "name": mix.name, "stage": mix.stage, "plan": plan.as_dict(), "achieved": achieved,
                "sources": mix.sources, "seed": mix.seed, "shards": {f: _sha256(folder / f) for f in files},
                "selections": {str(s["selection"]): Selection.objects.filter(pk=int(s["selection"])).values_list("content_hash", flat=True).first()
                               for s in mix.sources}}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    with transaction.atomic():
        handoffs.mixture_update(mixture=mix, status="succeeded", plan=plan.as_dict(), achieved=achieved,
                                                 path=str(folder), files=files + ["manifest.json"])
        audit_log(actor=ctx.job.created_by, action="studio.mixture_built", target=mix,
                  data={"shards": len(files), "tokens": realised.total, "max_rel_error": achieved["max_rel_error"]})
    return {"mixture_id": mix.pk, "shards": len(files), "tokens": realised.total, "max_rel_error": achieved["max_rel_error"]}


def _url(name: str, *args) -> str:
    from django.urls import reverse
    return reverse(name, args=list(args))


def _matrix_links(job):
    ds = (job.params or {}).get("dataset_id")
    return [(gettext_noop("Open the studio"), _url("studio:studio") + f"?ds={ds}")] if ds else []


def _selection_links(job):
    sel = (job.result or {}).get("selection_id") or (job.params or {}).get("selection_id")
    return [(gettext_noop("Open the selection"), _url("studio:selection", sel))] if sel else []


def _export_links(job):
    ex = SelectionExport.objects.filter(pk=(job.params or {}).get("export_id")).values_list("selection_id", flat=True).first()
    return [(gettext_noop("Open the selection and its exports"), _url("studio:selection", ex))] if ex else []


def _mixture_links(job):
    mix = (job.result or {}).get("mixture_id") or (job.params or {}).get("mixture_id")
    return [(gettext_noop("Open the mixture"), _url("studio:mixture", mix))] if mix else []


register_job_kind("studio.matrix_sync", label=gettext_noop("Score matrix update"), result_links=_matrix_links)
register_job_kind("studio.apply_recipe", label=gettext_noop("Selection freeze"), result_links=_selection_links)
register_job_kind("studio.export_selection", label=gettext_noop("Selection export"), result_links=_export_links)
register_job_kind("studio.build_mixture", label=gettext_noop("Mixture build"), result_links=_mixture_links)
