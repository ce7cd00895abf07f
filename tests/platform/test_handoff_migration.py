"""The move of the hand-off models (ScorerRun, Score, Recipe, RecipeVersion, Selection,
SelectionRecord, Mixture, PreferenceSet) into medstudio.handoffs, on a database that has the old
tables and rows: migrate back to just before the move, write rows with the historical models,
migrate forward, and read every row back with the current models (same ids, same values, and the
new foreign keys filled from the JSON / bare ids they replace)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# The state just before the move (what handoffs 0001 depends on, of the stages that gave models).
BEFORE = [
    ("curation", "0003_alter_duplicatecluster_stage"),
    ("studio", "0001_initial"),
    ("preferences", "0001_initial"),
    ("annotation", "0002_label_progress_index"),
]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()  # the applied set changed
    return executor


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())


def _make_old_rows(apps) -> dict:
    User = apps.get_model("accounts", "User")
    Dataset = apps.get_model("datasets", "Dataset")
    Record = apps.get_model("datasets", "Record")
    ScorerRun = apps.get_model("curation", "ScorerRun")
    Score = apps.get_model("curation", "Score")
    DuplicateCluster = apps.get_model("curation", "DuplicateCluster")
    Recipe = apps.get_model("studio", "Recipe")
    RecipeVersion = apps.get_model("studio", "RecipeVersion")
    Selection = apps.get_model("studio", "Selection")
    SelectionRecord = apps.get_model("studio", "SelectionRecord")
    Mixture = apps.get_model("studio", "Mixture")
    MatrixSlot = apps.get_model("studio", "MatrixSlot")
    PreferenceSet = apps.get_model("preferences", "PreferenceSet")
    BuildRun = apps.get_model("preferences", "BuildRun")
    PreferencePair = apps.get_model("preferences", "PreferencePair")
    Question = apps.get_model("annotation", "Question")
    Queue = apps.get_model("annotation", "Queue")

    user = User.objects.create(username="mover", role="curator")
    ds = Dataset.objects.create(name="old-qa", kind="qa", created_by=user)
    recs = [Record.objects.create(dataset=ds, external_id=f"r{i}", lang="en", content={"q": f"q{i}", "a": "a"},
                                  text=f"q{i} a", text_hash=f"h{i}", n_tokens=3) for i in range(4)]
    run = ScorerRun.objects.create(dataset=ds, scorer="rules", version="1", params={"min": 2}, status="done",
                                   summary={"n": 4}, created_by=user)
    other_run = ScorerRun.objects.create(dataset=ds, scorer="minhash", version="2", status="done")
    scores = [Score.objects.create(run=run, record=r, value=float(i), keep=i > 0,
                                   reason="" if i else "too_short", detail={"i": i}) for i, r in enumerate(recs)]
    cluster = DuplicateCluster.objects.create(run=other_run, keeper=recs[1], size=2,
                                              member_ids=[recs[1].id, recs[2].id], stage="dataset")
    recipe = Recipe.objects.create(name="old-recipe", description="d", created_by=user)
    version = RecipeVersion.objects.create(recipe=recipe, number=1, note="first",
                                           conditions={"bounds": [{"scorer": "rules", "lo": 1}], "flags": []})
    version.datasets.set([ds])
    runs_json = [{"dataset": ds.id, "scorer": "rules", "run": run.id, "version": "1"}]
    sel = Selection.objects.create(name="old-sel", recipe_version=version, conditions=version.conditions,
                                   runs=runs_json, status="ready", n_records=3, n_tokens=9,
                                   stats={"langs": {"en": 3}}, content_hash="c" * 64, created_by=user)
    sel.datasets.set([ds])
    items = [SelectionRecord.objects.create(selection=sel, record=r) for r in recs[1:]]
    # a second selection, not in any mixture, whose JSON names an unknown run (dropped, not an error)
    sel2 = Selection.objects.create(name="old-sel-2", runs=[{"dataset": ds.id, "scorer": "pii", "run": 999999,
                                                             "version": "1"}], status="ready")
    mix = Mixture.objects.create(name="old-mix", budget_tokens=1000, targets={"categories": {"medical": 1.0}},
                                 sources=[{"selection": sel.id, "category": "medical"}], plan={"p": 1},
                                 status="built", created_by=user)
    slot = MatrixSlot.objects.create(dataset=ds, run=run, kind="value", slot=0, scorer="rules", version="1",
                                     n_values=4, lo=0.0, hi=3.0)
    pref_set = PreferenceSet.objects.create(name="old-prefs", description="p", created_by=user)
    build = BuildRun.objects.create(pref_set=pref_set, builder="from_scores", selection_id=sel.id,
                                    params={"seed": 1}, status="done", n_pairs=1)
    stale_build = BuildRun.objects.create(pref_set=pref_set, builder="from_scores", selection_id=888888)
    pair = PreferencePair.objects.create(pref_set=pref_set, run=build, record=recs[1], item_key=recs[1].id,
                                         origin="from_scores", prompt_turns=[{"role": "user", "content": "q1"}],
                                         chosen="good", rejected="bad", provenance={"builder": "from_scores"})
    question = Question.objects.create(name="quality", kind="rating")
    queue = Queue.objects.create(name="old-queue", dataset=ds, question=question, suggestion_run=run)
    return {
        "user": user.id, "dataset": ds.id, "records": [r.id for r in recs], "run": run.id,
        "other_run": other_run.id, "scores": {s.id: (s.record_id, s.value, s.keep, s.reason, s.detail) for s in scores},
        "cluster": cluster.id, "recipe": recipe.id, "version": version.id, "selection": sel.id,
        "selection2": sel2.id, "items": {i.id: i.record_id for i in items}, "runs_json": runs_json,
        "mixture": mix.id, "slot": slot.id, "pref_set": pref_set.id, "build": build.id,
        "stale_build": stale_build.id, "pair": pair.id, "queue": queue.id,
    }


@pytest.mark.django_db(transaction=True)
def test_move_to_handoffs_keeps_rows_and_fills_foreign_keys():
    try:
        executor = _migrate([("handoffs", None), *BEFORE])
        applied = executor.loader.applied_migrations
        assert not any(app == "handoffs" for app, _ in applied)
        assert ("preferences", "0002_move_to_handoffs") not in applied
        # the models as the database now is: BEFORE, plus later migrations of apps it does not roll
        # back (a new column of datasets, say), so the historical models fill those too
        old = _make_old_rows(executor.loader.project_state(list(applied)).apps)
        _migrate_to_latest()
    finally:
        _migrate_to_latest()  # leave the database at the latest state whatever happened

    from curation.models import DuplicateCluster
    from curation.studio.models import MatrixSlot
    from medstudio.annotation.models import Queue
    from medstudio.handoffs.models import (Mixture, PreferenceSet, Recipe, RecipeVersion, Score, ScorerRun,
                                           Selection, SelectionRecord)
    from preferences.models import BuildRun, PreferencePair

    run = ScorerRun.objects.get(pk=old["run"])
    assert (run.dataset_id, run.scorer, run.version, run.params, run.status, run.summary, run.created_by_id) == (
        old["dataset"], "rules", "1", {"min": 2}, "done", {"n": 4}, old["user"])
    assert ScorerRun.objects.get(pk=old["other_run"]).scorer == "minhash"
    got_scores = {s.id: (s.record_id, s.value, s.keep, s.reason, s.detail) for s in Score.objects.filter(run=run)}
    assert got_scores == old["scores"]
    assert all(s.run == run for s in Score.objects.filter(pk__in=old["scores"]))
    assert set(run.scores.values_list("id", flat=True)) == set(old["scores"])
    assert DuplicateCluster.objects.get(pk=old["cluster"]).run_id == old["other_run"]

    recipe = Recipe.objects.get(pk=old["recipe"])
    version = RecipeVersion.objects.get(pk=old["version"])
    assert (recipe.name, version.recipe, version.number, version.note) == ("old-recipe", recipe, 1, "first")
    assert list(version.datasets.values_list("id", flat=True)) == [old["dataset"]]

    sel = Selection.objects.get(pk=old["selection"])
    assert (sel.name, sel.recipe_version, sel.status, sel.n_records, sel.n_tokens, sel.content_hash) == (
        "old-sel", version, "ready", 3, 9, "c" * 64)
    assert sel.runs == old["runs_json"]
    assert sel.stats == {"langs": {"en": 3}}
    assert list(sel.scorer_runs.all()) == [run]
    assert list(run.selections.all()) == [sel]
    assert list(sel.datasets.values_list("id", flat=True)) == [old["dataset"]]
    assert {i.id: i.record_id for i in SelectionRecord.objects.filter(selection=sel)} == old["items"]
    assert Selection.objects.get(pk=old["selection2"]).scorer_runs.count() == 0  # unknown run id: dropped

    mix = Mixture.objects.get(pk=old["mixture"])
    assert (mix.name, mix.budget_tokens, mix.status, mix.plan) == ("old-mix", 1000, "built", {"p": 1})
    assert mix.sources == [{"selection": sel.id, "category": "medical"}]
    assert [(p.selection, p.category, p.position) for p in mix.parts.all()] == [(sel, "medical", 0)]

    slot = MatrixSlot.objects.get(pk=old["slot"])
    assert (slot.run, slot.dataset_id, slot.kind, slot.slot) == (run, old["dataset"], "value", 0)

    pref_set = PreferenceSet.objects.get(pk=old["pref_set"])
    assert (pref_set.name, pref_set.description, pref_set.created_by_id) == ("old-prefs", "p", old["user"])
    build = BuildRun.objects.get(pk=old["build"])
    assert build.selection == sel
    assert build.pref_set == pref_set
    assert (build.builder, build.params, build.status, build.n_pairs) == ("from_scores", {"seed": 1}, "done", 1)
    assert BuildRun.objects.get(pk=old["stale_build"]).selection_id is None  # the selection never existed
    pair = PreferencePair.objects.get(pk=old["pair"])
    assert (pair.pref_set, pair.run, pair.chosen, pair.rejected) == (pref_set, build, "good", "bad")
    assert set(pref_set.pairs.values_list("id", flat=True)) == {old["pair"]}

    assert Queue.objects.get(pk=old["queue"]).suggestion_run == run

    # the database is at the latest state and usable: new rows in the moved tables get fresh ids
    assert not MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
    fresh = Selection.objects.create(name="after-move", status="ready")
    assert fresh.pk > old["selection2"]
