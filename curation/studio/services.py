"""Writes of the threshold studio: the score matrix, recipes, selections, exports and mixtures."""
from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q
from django.utils.translation import gettext

from medstudio.handoffs.models import Score, ScorerRun
from medstudio.audit.services import audit_log
from medstudio.datasets.models import Dataset, Record

from .models import N_FLAG_SLOTS, N_VALUE_SLOTS, MatrixSlot, ScoreMatrix, SelectionExport
from medstudio.handoffs.models import Mixture, RecipeVersion, Selection
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
            raise StudioError(gettext("%(name)s: more than %(limit)s scorers of kind %(role)s; no matrix slot left for %(scorer)s") % {"name": dataset.name, "limit": limits[role], "role": role, "scorer": run.scorer})
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
        raise StudioError(gettext("A recipe needs a name."))
    if not datasets:
        raise StudioError(gettext("A recipe needs at least one dataset."))
    try:
        spec = parse_spec(conditions)
    except SpecError as exc:
        raise StudioError(str(exc)) from exc
    from medstudio.handoffs import services as handoffs

    try:
        return handoffs.recipe_version_save(user=user, name=name, datasets=datasets, conditions=spec.as_dict(), note=note,
                                            description=description)
    except handoffs.HandoffError as exc:
        raise StudioError(str(exc)) from exc


# --------------------------------------------------------------------------------------------
# selections


@transaction.atomic
def selection_apply_start(*, user, version: RecipeVersion, name: str = "", enqueue: bool = True) -> Selection:
    """Freeze the records a recipe version keeps into a new Selection (a job does the work)."""
    from medstudio.jobs.services import job_create

    from medstudio.handoffs import services as handoffs

    sel = handoffs.selection_create(user=user, version=version, name=name)
    job = job_create(kind="studio.apply_recipe", params={"selection_id": sel.pk}, user=user, enqueue=enqueue)
    handoffs.selection_update(selection=sel, job=job)  # the job may already have run (eager mode)
    sel.refresh_from_db()
    audit_log(actor=user, action="studio.selection_apply", target=sel, data={"recipe_version": version.pk, "job": job.pk})
    return sel


def selection_freeze(*, selection: Selection, spec: Spec, runs: list[dict], q: Q) -> Selection:
    """Freeze what the conditions keep: the matrix query is the studio's, the write the platform's."""
    from medstudio.handoffs import services as handoffs

    ds_ids = list(selection.datasets.values_list("id", flat=True))
    kept = ScoreMatrix.objects.filter(dataset_id__in=ds_ids).filter(q).values("record_id")
    return handoffs.selection_freeze(selection=selection, kept=kept, conditions=spec.as_dict(), runs=runs)


# --------------------------------------------------------------------------------------------
# exports and mixtures


@transaction.atomic
def selection_export_start(*, user, selection: Selection, fmt: str, enqueue: bool = True) -> SelectionExport:
    from medstudio.jobs.services import job_create

    from medstudio.datasets.convert import EXPORT_FORMATS as FORMATS

    if fmt not in FORMATS:
        raise StudioError(gettext("Unknown export format %(fmt)s; expected one of %(items)s.") % {"fmt": repr(fmt), "items": ', '.join(FORMATS)})
    if selection.status != Selection.Status.READY:
        raise StudioError(gettext("The selection is not ready yet (its apply job has not finished)."))
    export = SelectionExport.objects.create(selection=selection, format=fmt,
                                            created_by=user if getattr(user, "is_authenticated", False) else None)
    job = job_create(kind="studio.export_selection", params={"export_id": export.pk}, user=user, enqueue=enqueue)
    SelectionExport.objects.filter(pk=export.pk).update(job=job)
    export.refresh_from_db()
    audit_log(actor=user, action="studio.selection_export", target=export, data={"selection": selection.pk, "format": fmt})
    return export


def mixture_sources_prepare(sources: list[dict]) -> None:
    """Bring the score matrix of every dataset a recipe-based source reads up to date (what it keeps is
    counted there, as in the studio)."""
    from .selectors import dataset_source

    for src in sources or []:
        if isinstance(src, dict) and src.get("dataset") and not src.get("selection") and src.get("recipe_version"):
            try:
                ds, _version = dataset_source(src)
            except ValueError as exc:
                raise StudioError(str(exc)) from exc
            matrix_sync(dataset=ds)


def mixture_plan(*, sources: list[dict], targets: dict, budget_tokens: int, strategy: str = "independent"):
    """(MixTargets, MixPlan) for tagged sources, selections or datasets (nothing is frozen or written)."""
    from curation.pipeline.mixing import MixingError, plan_mixture

    from .selectors import mix_sources, mix_targets

    mixture_sources_prepare(sources)
    try:
        mt = mix_targets(targets)
        return mt, plan_mixture(mix_sources(sources), mt, budget=int(budget_tokens), strategy=strategy)
    except (MixingError, ValueError) as exc:
        raise StudioError(str(exc)) from exc


def dataset_source_freeze(*, user, dataset: Dataset, version: RecipeVersion | None, name: str) -> Selection:
    """Freeze a mixture's dataset source into a ready selection: the whole dataset, or what the recipe
    version keeps of it (the same matrix query and write as applying the recipe), so the mixture's
    lineage runs selection -> recipe version, scorer runs -> dataset like any other."""
    from medstudio.handoffs import services as handoffs

    from .selectors import kept_q, scope_load, version_spec

    sel = handoffs.selection_create(user=user, version=version, name=name, datasets=[dataset])
    try:
        if version is None:
            kept = Record.objects.filter(dataset=dataset).annotate(record_id=F("id")).values("record_id")
            handoffs.selection_freeze(selection=sel, kept=kept, conditions={}, runs=[])
        else:
            matrix_sync(dataset=dataset, actor=user)
            scope = scope_load([dataset.pk])
            spec = version_spec(version)
            selection_freeze(selection=sel, spec=spec, runs=scope.runs_for(spec), q=kept_q(scope, spec, only=[dataset.pk]))
    except Exception:
        handoffs.selection_update(selection=sel, status=Selection.Status.FAILED)
        raise
    sel.refresh_from_db()
    audit_log(actor=user, action="studio.dataset_source_freeze", target=sel,
              data={"dataset": dataset.pk, "recipe_version": version.pk if version else None, "n_records": sel.n_records})
    return sel


@transaction.atomic
def mixture_create(*, user, name: str, stage: str, budget_tokens: int, targets: dict, sources: list[dict],
                   strategy: str = "independent", seed: str = "medstudio-mix", shard_tokens: int = 50_000_000,
                   build: bool = True, enqueue: bool = True) -> Mixture:
    """Plan a CPT mixture over tagged selections or datasets (docs/METHODS.md 1.6); optionally start the
    shard export job, which first freezes every dataset source into a selection."""
    if not (name or "").strip():
        raise StudioError(gettext("A mixture needs a name."))
    mt, plan = mixture_plan(sources=sources, targets=targets, budget_tokens=budget_tokens, strategy=strategy)
    if int(shard_tokens) <= 0:
        raise StudioError(gettext("Shard size must be positive."))
    from medstudio.handoffs import services as handoffs

    try:
        mix = handoffs.mixture_create(user=user, name=name, stage=stage, budget_tokens=int(budget_tokens),
                                      targets={"categories": mt.categories, "langs": mt.langs}, sources=sources,
                                      strategy=strategy, seed=seed, shard_tokens=int(shard_tokens), plan=plan.as_dict())
    except handoffs.HandoffError as exc:
        raise StudioError(str(exc)) from exc
    if build:
        from medstudio.jobs.services import job_create

        handoffs.mixture_update(mixture=mix, status="building")
        job = job_create(kind="studio.build_mixture", params={"mixture_id": mix.pk}, user=user, enqueue=enqueue)
        handoffs.mixture_update(mixture=mix, job=job)
        mix.refresh_from_db()
    return mix
