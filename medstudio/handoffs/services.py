"""The one write path for hand-off entities (audited, under transaction.atomic).

Stages validate what is theirs to validate (a recipe's condition grammar, a mixture plan, a
scorer's params) and then record the result here; nothing else creates these rows.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable

from django.db import connection, transaction
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext

from medstudio.audit.services import audit_log

from .models import Mixture, MixtureSource, PreferenceSet, Recipe, RecipeVersion, Score, ScorerRun, Selection, SelectionRecord


class HandoffError(ValueError):
    """A hand-off entity cannot be written as asked; the message says why."""


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


# --- scorer runs and scores -------------------------------------------------------------------

@transaction.atomic
def scorer_run_create(*, user, dataset, scorer: str, version: str, params: dict, model_ref: str = "") -> ScorerRun:
    run = ScorerRun.objects.create(dataset=dataset, scorer=scorer, version=version, params=params, model_ref=model_ref,
                                   created_by=_user(user))
    audit_log(actor=user, action="curation.scorer_run_start", target=run, data={"scorer": scorer, "params": params})
    return run


def scorer_run_update(*, run: ScorerRun | int, finished: bool = False, only_if_status: str | None = None, **fields) -> int:
    """Status, summary or job of a run (machine writes from its jobs: not audited one by one)."""
    if finished:
        fields["finished_at"] = timezone.now()
    qs = ScorerRun.objects.filter(pk=run.pk if isinstance(run, ScorerRun) else run)
    if only_if_status:
        qs = qs.filter(status=only_if_status)
    return qs.update(**fields)


def scores_write(*, run: ScorerRun, rows: Iterable[tuple[int, Any]]) -> int:
    """Store (record_id, result) rows, result having value/keep/reason/detail; a row already stored
    for this run is left as it is (a resumed job re-writing a batch changes nothing)."""
    objs = [Score(run=run, record_id=rid, value=res.value, keep=res.keep, reason=(res.reason or "")[:100],
                  detail=res.detail or {}) for rid, res in rows]
    Score.objects.bulk_create(objs, ignore_conflicts=True)
    return len(objs)


# --- recipes and selections -------------------------------------------------------------------

@transaction.atomic
def recipe_version_save(*, user, name: str, datasets: list, conditions: dict, note: str = "", description: str = "") -> RecipeVersion:
    """`conditions` (already validated and canonical) as the next version of recipe `name`;
    the same conditions and datasets as the latest version return that version unchanged."""
    name = (name or "").strip()
    if not name:
        raise HandoffError(gettext("A recipe needs a name."))
    if not datasets:
        raise HandoffError(gettext("A recipe needs at least one dataset."))
    recipe, _ = Recipe.objects.select_for_update().get_or_create(name=name, defaults={"description": description, "created_by": _user(user)})
    last = recipe.versions.order_by("-number").first()
    ds_ids = sorted(d.pk for d in datasets)
    if last and last.conditions == conditions and sorted(last.datasets.values_list("id", flat=True)) == ds_ids:
        return last
    version = RecipeVersion.objects.create(recipe=recipe, number=(last.number + 1) if last else 1, conditions=conditions,
                                           note=note[:500], created_by=_user(user))
    version.datasets.set(ds_ids)
    audit_log(actor=user, action="studio.recipe_version_create", target=version,
              data={"recipe": recipe.name, "number": version.number, "conditions": conditions, "datasets": ds_ids})
    return version


@transaction.atomic
def selection_create(*, user, version: RecipeVersion | None, name: str = "", datasets: list | None = None) -> Selection:
    """A new selection of `version` (over its datasets, or only `datasets`), status building (a job or
    the caller freezes its records). Without a version it stands for whole datasets (a mixture source)."""
    if version is None and not datasets:
        raise HandoffError(gettext("A selection needs a recipe version or at least one dataset."))
    default = f"{version.recipe.name} v{version.number}" if version else ", ".join(d.name for d in datasets)
    sel = Selection.objects.create(name=(name or default)[:200], recipe_version=version,
                                   conditions=version.conditions if version else {}, created_by=_user(user))
    sel.datasets.set(datasets if datasets else version.datasets.all())
    return sel


def selection_update(*, selection: Selection | int, **fields) -> int:
    return Selection.objects.filter(pk=selection.pk if isinstance(selection, Selection) else selection).update(**fields)


def selection_content_hash(selection: Selection) -> str:
    """sha256 over "record_id:text_hash" lines in id order: equal hashes mean the same records and texts."""
    from .selectors import selection_records

    digest = hashlib.sha256()
    for rid, th in selection_records(selection).values_list("id", "text_hash").iterator(chunk_size=10000):
        digest.update(f"{rid}:{th}\n".encode())
    return digest.hexdigest()


def selection_freeze(*, selection: Selection, kept: QuerySet, conditions: dict, runs: list[dict]) -> Selection:
    """Store the kept record ids (one INSERT ... SELECT from `kept`, a queryset of `record_id`s),
    then counts and tokens by language and source, the scorer runs behind it and the content hash."""
    from medstudio.datasets.models import Record

    with transaction.atomic():
        SelectionRecord.objects.filter(selection=selection).delete()
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
        selection.conditions = conditions
        selection.content_hash = selection_content_hash(selection)
        selection.status = Selection.Status.READY
        selection.save()
        # The foreign keys behind `runs` (lineage walks these; the JSON keeps versions for display).
        selection.scorer_runs.set(ScorerRun.objects.filter(pk__in=[int(r["run"]) for r in runs if r.get("run")]))
        audit_log(actor=selection.created_by, action="studio.selection_freeze", target=selection,
                  data={"n_records": selection.n_records, "n_tokens": selection.n_tokens, "hash": selection.content_hash})
    return selection


# --- mixtures ---------------------------------------------------------------------------------

@transaction.atomic
def mixture_create(*, user, name: str, stage: str, budget_tokens: int, targets: dict, sources: list[dict], strategy: str,
                   seed: str, shard_tokens: int, plan: dict) -> Mixture:
    """Record a planned mixture and its tagged sources (the plan was computed by the studio).

    A source is a frozen selection ({"selection": id, "category": tag}) or a dataset, whole or through
    a recipe version ({"dataset": id, "recipe_version": id | None, "category": tag}); a dataset source
    becomes a selection when the mixture is drawn (`mixture_source_frozen`), so the mixture's lineage
    always ends in frozen record sets."""
    if not (name or "").strip():
        raise HandoffError(gettext("A mixture needs a name."))
    keys = [("selection", int(s["selection"])) if s.get("selection") else
            ("dataset", int(s["dataset"]), int(s.get("recipe_version") or 0)) for s in sources]
    if len(set(keys)) != len(keys):
        raise HandoffError(gettext("Each selection (or dataset with the same recipe) can be tagged once per mixture."))
    mix = Mixture.objects.create(name=name.strip()[:200], stage=stage, budget_tokens=int(budget_tokens), targets=targets,
                                 strategy=strategy, sources=sources, seed=seed, shard_tokens=int(shard_tokens), plan=plan,
                                 created_by=_user(user))
    MixtureSource.objects.bulk_create([MixtureSource(mixture=mix, selection_id=int(s["selection"]), category=str(s["category"])[:64],
                                                     position=i) for i, s in enumerate(sources) if s.get("selection")])
    audit_log(actor=user, action="studio.mixture_create", target=mix, data={"plan": plan, "sources": sources})
    return mix


@transaction.atomic
def mixture_source_frozen(*, mixture: Mixture, position: int, selection: Selection, actor=None) -> Mixture:
    """Dataset source `position` of the mixture was frozen into `selection`: the source now names it
    (keeping the dataset and recipe version it came from) and the selection joins the mixture's parts."""
    mix = Mixture.objects.select_for_update().get(pk=mixture.pk)
    sources = list(mix.sources)
    src = dict(sources[position])
    if src.get("selection"):
        raise HandoffError(gettext("Source %(position)s of mixture %(mix_id)s is already a selection.") % {"position": position, "mix_id": mix.pk})
    src["selection"] = selection.pk
    sources[position] = src
    Mixture.objects.filter(pk=mix.pk).update(sources=sources)
    MixtureSource.objects.get_or_create(mixture=mix, selection=selection,
                                        defaults={"category": str(src["category"])[:64], "position": position})
    audit_log(actor=actor, action="studio.mixture_source_frozen", target=mix,
              data={"position": position, "dataset": src.get("dataset"), "recipe_version": src.get("recipe_version"),
                    "selection": selection.pk, "content_hash": selection.content_hash})
    mix.refresh_from_db()
    return mix


def mixture_update(*, mixture: Mixture | int, **fields) -> int:
    return Mixture.objects.filter(pk=mixture.pk if isinstance(mixture, Mixture) else mixture).update(**fields)


# --- preference sets --------------------------------------------------------------------------

@transaction.atomic
def preference_set_create(*, user, name: str, description: str = "") -> PreferenceSet:
    name = (name or "").strip()
    if not name:
        raise HandoffError(gettext("A preference set needs a name."))
    if PreferenceSet.objects.filter(name=name).exists():
        raise HandoffError(gettext("A preference set named %(name)s already exists.") % {"name": repr(name)})
    pref_set = PreferenceSet.objects.create(name=name, description=description, created_by=_user(user))
    audit_log(actor=user, action="preferences.set_create", target=pref_set)
    return pref_set


# --- frozen corpus selections -----------------------------------------------------------------

@transaction.atomic
def corpus_selection_register(*, user, name: str, corpus: str, path: str, manifest: dict, manifest_sha256: str,
                              job=None):
    """Record a frozen corpus selection (the manifest was written by the curation stage); the same
    name again replaces it (a re-freeze under that name)."""
    from .models import CorpusSelection

    name = (name or "").strip()
    if not name:
        raise HandoffError(gettext("A frozen corpus selection needs a name."))
    sel, _ = CorpusSelection.objects.update_or_create(name=name[:200], defaults=dict(
        corpus=corpus, path=path, manifest_sha256=manifest_sha256, conditions=manifest.get("conditions") or [],
        n_docs=int(manifest.get("docs") or 0), n_records=int(manifest.get("kept") or 0),
        n_chars=int(manifest.get("kept_chars") or 0), job=job, created_by=_user(user)))
    audit_log(actor=user, action="corpus.selection_freeze", target=sel,
              data={"corpus": corpus, "kept": sel.n_records, "docs": sel.n_docs, "path": path,
                    "manifest_sha256": manifest_sha256})
    return sel
