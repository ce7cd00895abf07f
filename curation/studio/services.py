"""Writes of the threshold studio: the score matrix, recipes, selections, exports and mixtures."""
from __future__ import annotations

import hashlib
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, Sum

from medstudio.handoffs.models import Score, ScorerRun
from medstudio.audit.services import audit_log
from medstudio.datasets.models import Dataset, Record

from .models import N_FLAG_SLOTS, N_VALUE_SLOTS, MatrixSlot, ScoreMatrix, SelectionExport
from medstudio.handoffs.models import Mixture, MixtureSource, Recipe, RecipeVersion, Selection, SelectionRecord
from .spec import Spec, SpecError, parse_spec


class StudioError(ValueError):
    """A studio action cannot be done as asked; the message says why."""


# --------------------------------------------------------------------------------------------
# score matrix


def _run_finished(run: ScorerRun) -> bool:
    if run.status == "succeeded":
        return True
    if run.status in ("failed", "queued"):
        return False
    # A run's status is set by its last shard job while that job still counts as running, so a
    # "running" run whose score jobs all succeeded is finished too.
    from medstudio.jobs.models import Job

    statuses = set(Job.objects.filter(kind="curation.score", params__run_id=run.pk).values_list("status", flat=True))
    return statuses == {"succeeded"}


def _latest_runs(dataset: Dataset) -> dict[str, ScorerRun]:
    """The newest finished run of each scorer on the dataset (what the studio shows and recipes resolve to)."""
    latest: dict[str, ScorerRun] = {}
    for run in ScorerRun.objects.filter(dataset=dataset).exclude(status="failed").order_by("-id"):
        if run.scorer not in latest and _run_finished(run):
            latest[run.scorer] = run
    return latest


def _run_roles(run: ScorerRun) -> set[str]:
    """A run fills a value column when it has informative values and a drop bit when it is a filter."""
    roles = set()
    scores = Score.objects.filter(run=run)
    if scores.filter(keep__isnull=False).exists():
        roles.add(MatrixSlot.Kind.FLAG)
    if scores.filter(value__isnull=False).exclude(value__in=[0.0, 1.0]).exists() or (
        MatrixSlot.Kind.FLAG not in roles and scores.filter(value__isnull=False).exists()
    ):
        roles.add(MatrixSlot.Kind.VALUE)
    return roles


def _wanted_slots(dataset: Dataset) -> list[tuple[ScorerRun, str]]:
    out = []
    for run in sorted(_latest_runs(dataset).values(), key=lambda r: r.scorer):
        for role in sorted(_run_roles(run)):
            out.append((run, role))
    return out


def matrix_is_current(*, dataset: Dataset) -> bool:
    """Cheap check: the slots hold exactly the latest runs and every record has a row."""
    want = {(run.pk, role) for run, role in _wanted_slots(dataset)}
    have = set(MatrixSlot.objects.filter(dataset=dataset).values_list("run_id", "kind"))
    if want != have:
        return False
    return ScoreMatrix.objects.filter(dataset=dataset).count() == Record.objects.filter(dataset=dataset).count()


def _rebuild_rows(dataset: Dataset, slots: list[MatrixSlot]) -> int:
    """Write every row of the dataset's matrix in one INSERT ... SELECT with one LEFT JOIN per slot.

    Filling column by column with UPDATEs was measured to leave the table ~6x its live size
    (every UPDATE writes a new row version) and full counts 20x slower until a VACUUM FULL;
    one pivoting insert writes each row once.
    """
    m, r, s = ScoreMatrix._meta.db_table, Record._meta.db_table, Score._meta.db_table
    cols, exprs, joins, params = [], [], [], []
    mask_terms = []
    for i, slot in enumerate(slots):
        alias = f"s{i}"
        joins.append(f"LEFT JOIN {s} {alias} ON {alias}.run_id = %s AND {alias}.record_id = r.id")
        params.append(slot.run_id)
        if slot.kind == MatrixSlot.Kind.VALUE:
            cols.append(slot.column)
            exprs.append(f"{alias}.value")
        else:
            mask_terms.append(f"(CASE WHEN {alias}.keep = %s THEN {slot.bit} ELSE 0 END)")
    mask = " + ".join(mask_terms) if mask_terms else "0"  # distinct bits: + is |, and portable
    mask_params = [False] * len(mask_terms)
    ScoreMatrix.objects.filter(dataset=dataset).delete()
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {m} (record_id, dataset_id, lang, source, n_tokens, drop_mask{''.join(', ' + c for c in cols)}) "
            f"SELECT r.id, r.dataset_id, r.lang, r.source, r.n_tokens, {mask}{''.join(', ' + e for e in exprs)} "
            f"FROM {r} r {' '.join(joins)} WHERE r.dataset_id = %s",
            [*mask_params, *params, dataset.pk],
        )
        return cur.rowcount or 0


@transaction.atomic
def matrix_sync(*, dataset: Dataset, actor=None) -> dict[str, Any]:
    """Rebuild the dataset's score matrix from the latest finished run of every scorer, if it changed.

    Scores of a finished run never change (scores_write ignores conflicts), so the matrix is stale
    only when the latest run of a scorer changes or records are added.
    """
    if matrix_is_current(dataset=dataset):
        return {"rebuilt": False, "slots": [f"{s.scorer}:{s.kind}{s.slot}" for s in MatrixSlot.objects.filter(dataset=dataset)]}
    wanted = _wanted_slots(dataset)
    counts = {MatrixSlot.Kind.VALUE: 0, MatrixSlot.Kind.FLAG: 0}
    limits = {MatrixSlot.Kind.VALUE: N_VALUE_SLOTS, MatrixSlot.Kind.FLAG: N_FLAG_SLOTS}
    MatrixSlot.objects.filter(dataset=dataset).delete()
    slots = []
    for run, role in wanted:
        if counts[role] >= limits[role]:
            raise StudioError(f"{dataset.name}: more than {limits[role]} scorers of kind {role}; no matrix slot left for {run.scorer}")
        slots.append(MatrixSlot(dataset=dataset, run=run, kind=role, slot=counts[role], scorer=run.scorer, version=run.version))
        counts[role] += 1
    MatrixSlot.objects.bulk_create(slots)
    rows = _rebuild_rows(dataset, slots)
    for slot in slots:
        if slot.kind == MatrixSlot.Kind.VALUE:
            agg = Score.objects.filter(run_id=slot.run_id, value__isnull=False).aggregate(n=Count("id"), lo=Min("value"), hi=Max("value"))
            slot.n_values, slot.lo, slot.hi = agg["n"], agg["lo"], agg["hi"]
        else:
            slot.n_values = Score.objects.filter(run_id=slot.run_id, keep=False).count()
    MatrixSlot.objects.bulk_update(slots, ["n_values", "lo", "hi"])
    summary = {"rebuilt": True, "rows": rows, "slots": [f"{s.scorer}:{s.kind}{s.slot}" for s in slots]}
    audit_log(actor=actor, action="studio.matrix_sync", target=dataset, data=summary)
    return summary


# --------------------------------------------------------------------------------------------
# recipes


@transaction.atomic
def recipe_version_create(*, user, name: str, datasets: list[Dataset], conditions: dict, note: str = "",
                          description: str = "") -> RecipeVersion:
    """Save conditions as the next version of recipe `name` (created on first save).

    Saving the same conditions and datasets as the latest version returns that version unchanged.
    """
    name = (name or "").strip()
    if not name:
        raise StudioError("A recipe needs a name.")
    if not datasets:
        raise StudioError("A recipe needs at least one dataset.")
    try:
        spec = parse_spec(conditions)
    except SpecError as exc:
        raise StudioError(str(exc)) from exc
    recipe, created = Recipe.objects.select_for_update().get_or_create(
        name=name, defaults={"description": description, "created_by": user if getattr(user, "is_authenticated", False) else None})
    last = recipe.versions.order_by("-number").first()
    ds_ids = sorted(d.pk for d in datasets)
    if last and last.conditions == spec.as_dict() and sorted(last.datasets.values_list("id", flat=True)) == ds_ids:
        return last
    version = RecipeVersion.objects.create(recipe=recipe, number=(last.number + 1) if last else 1, conditions=spec.as_dict(),
                                           note=note[:500], created_by=user if getattr(user, "is_authenticated", False) else None)
    version.datasets.set(ds_ids)
    audit_log(actor=user, action="studio.recipe_version_create", target=version,
              data={"recipe": recipe.name, "number": version.number, "conditions": spec.as_dict(), "datasets": ds_ids})
    return version


# --------------------------------------------------------------------------------------------
# selections


@transaction.atomic
def selection_apply_start(*, user, version: RecipeVersion, name: str = "", enqueue: bool = True) -> Selection:
    """Freeze the records a recipe version keeps into a new Selection (a job does the work)."""
    from medstudio.jobs.services import job_create

    sel = Selection.objects.create(name=(name or f"{version.recipe.name} v{version.number}")[:200], recipe_version=version,
                                   conditions=version.conditions,
                                   created_by=user if getattr(user, "is_authenticated", False) else None)
    sel.datasets.set(version.datasets.all())
    job = job_create(kind="studio.apply_recipe", params={"selection_id": sel.pk}, user=user, enqueue=enqueue)
    Selection.objects.filter(pk=sel.pk).update(job=job)  # the job may already have run (eager mode)
    sel.refresh_from_db()
    audit_log(actor=user, action="studio.selection_apply", target=sel, data={"recipe_version": version.pk, "job": job.pk})
    return sel


def selection_content_hash(selection: Selection) -> str:
    """sha256 over "record_id:text_hash" lines in id order: equal hashes mean the same records and texts."""
    digest = hashlib.sha256()
    rows = (Record.objects.filter(pk__in=SelectionRecord.objects.filter(selection=selection).values("record_id"))
            .order_by("id").values_list("id", "text_hash"))
    for rid, th in rows.iterator(chunk_size=10000):
        digest.update(f"{rid}:{th}\n".encode())
    return digest.hexdigest()


def selection_freeze(*, selection: Selection, spec: Spec, runs: list[dict], q: Q) -> Selection:
    """Store the kept record ids (INSERT ... SELECT in the database), then counts, stats and the hash."""
    ds_ids = list(selection.datasets.values_list("id", flat=True))
    with transaction.atomic():
        SelectionRecord.objects.filter(selection=selection).delete()
        kept = ScoreMatrix.objects.filter(dataset_id__in=ds_ids).filter(q).values("record_id")
        sql, params = kept.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(f"INSERT INTO {SelectionRecord._meta.db_table} (selection_id, record_id) "
                        f"SELECT %s, sub.record_id FROM ({sql}) sub", [selection.pk, *params])
        items = Record.objects.filter(pk__in=SelectionRecord.objects.filter(selection=selection).values("record_id"))
        by_lang = {r["lang"]: {"records": r["n"], "tokens": r["t"] or 0}
                   for r in items.values("lang").annotate(n=Count("id"), t=Sum("n_tokens")).order_by()}
        by_source = {r["source"] or "(none)": {"records": r["n"], "tokens": r["t"] or 0}
                     for r in items.values("source").annotate(n=Count("id"), t=Sum("n_tokens")).order_by()}
        selection.n_records = sum(v["records"] for v in by_lang.values())
        selection.n_tokens = sum(v["tokens"] for v in by_lang.values())
        selection.stats = {"by_lang": by_lang, "by_source": by_source}
        selection.runs = runs
        selection.conditions = spec.as_dict()
        selection.content_hash = selection_content_hash(selection)
        selection.status = Selection.Status.READY
        selection.save()
        # The foreign keys behind `runs` (lineage walks these; the JSON keeps versions for display).
        selection.scorer_runs.set(ScorerRun.objects.filter(pk__in=[int(r["run"]) for r in runs if r.get("run")]))
        audit_log(actor=selection.created_by, action="studio.selection_freeze", target=selection,
                  data={"n_records": selection.n_records, "n_tokens": selection.n_tokens, "hash": selection.content_hash})
    return selection


# --------------------------------------------------------------------------------------------
# exports and mixtures


@transaction.atomic
def selection_export_start(*, user, selection: Selection, fmt: str, enqueue: bool = True) -> SelectionExport:
    from medstudio.jobs.services import job_create

    from medstudio.datasets.convert import EXPORT_FORMATS as FORMATS

    if fmt not in FORMATS:
        raise StudioError(f"Unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if selection.status != Selection.Status.READY:
        raise StudioError("The selection is not ready yet (its apply job has not finished).")
    export = SelectionExport.objects.create(selection=selection, format=fmt,
                                            created_by=user if getattr(user, "is_authenticated", False) else None)
    job = job_create(kind="studio.export_selection", params={"export_id": export.pk}, user=user, enqueue=enqueue)
    SelectionExport.objects.filter(pk=export.pk).update(job=job)
    export.refresh_from_db()
    audit_log(actor=user, action="studio.selection_export", target=export, data={"selection": selection.pk, "format": fmt})
    return export


@transaction.atomic
def mixture_create(*, user, name: str, stage: str, budget_tokens: int, targets: dict, sources: list[dict],
                   strategy: str = "independent", seed: str = "medstudio-mix", shard_tokens: int = 50_000_000,
                   build: bool = True, enqueue: bool = True) -> Mixture:
    """Plan a CPT mixture over tagged selections (docs/METHODS.md 1.6); optionally start the shard export job."""
    from curation.pipeline.mixing import MixingError, plan_mixture

    from .selectors import mix_sources, mix_targets

    if not (name or "").strip():
        raise StudioError("A mixture needs a name.")
    try:
        mt = mix_targets(targets)
        plan = plan_mixture(mix_sources(sources), mt, budget=int(budget_tokens), strategy=strategy)
    except (MixingError, ValueError) as exc:
        raise StudioError(str(exc)) from exc
    if int(shard_tokens) <= 0:
        raise StudioError("Shard size must be positive.")
    mix = Mixture.objects.create(name=name.strip()[:200], stage=stage, budget_tokens=int(budget_tokens),
                                 targets={"categories": mt.categories, "langs": mt.langs}, strategy=strategy,
                                 sources=sources, seed=seed, shard_tokens=int(shard_tokens), plan=plan.as_dict(),
                                 created_by=user if getattr(user, "is_authenticated", False) else None)
    MixtureSource.objects.bulk_create([MixtureSource(mixture=mix, selection_id=int(src["selection"]), category=str(src["category"])[:64],
                                                     position=i) for i, src in enumerate(sources)])
    audit_log(actor=user, action="studio.mixture_create", target=mix, data={"plan": plan.as_dict()})
    if build:
        from medstudio.jobs.services import job_create

        Mixture.objects.filter(pk=mix.pk).update(status="building")
        job = job_create(kind="studio.build_mixture", params={"mixture_id": mix.pk}, user=user, enqueue=enqueue)
        Mixture.objects.filter(pk=mix.pk).update(job=job)
        mix.refresh_from_db()
    return mix
