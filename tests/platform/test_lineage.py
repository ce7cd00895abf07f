"""The lineage walk: from a model through its run and data to the scorer runs, the rater model
that scored, the clinician queue whose consensus labels trained it, and the source datasets."""
import pytest

from curation.modelscorers.models import TrainedModel
from medstudio.annotation.models import Question, Queue
from medstudio.datasets.models import Dataset
from medstudio.handoffs import lineage
from medstudio.handoffs.models import Recipe, RecipeVersion, ScorerRun, Selection
from training.models import ModelRef, TrainingRun

pytestmark = pytest.mark.django_db


def test_walk_reaches_the_labels_behind_a_rater(client_for):
    labelled = Dataset.objects.create(name="rated-sample", kind="document")
    corpus = Dataset.objects.create(name="corpus", kind="document", parent=None)
    queue = Queue.objects.create(name="quality round 1", dataset=labelled,
                                 question=Question.objects.create(name="quality", kind="rating"))
    rater = TrainedModel.objects.create(kind="datarater", version=3, params={"source": {"queue_id": queue.pk}},
                                        status="ready", n_labelled=40, n_agreed=31)
    run = ScorerRun.objects.create(dataset=corpus, scorer="datarater", model_ref="datarater:v3", status="succeeded")
    rules = ScorerRun.objects.create(dataset=corpus, scorer="rules", status="succeeded")
    version = RecipeVersion.objects.create(recipe=Recipe.objects.create(name="cpt"), number=1, conditions={})
    version.datasets.set([corpus])
    sel = Selection.objects.create(name="kept", recipe_version=version, status="ready", content_hash="c" * 64)
    sel.datasets.set([corpus])
    sel.scorer_runs.set([run, rules])
    base = ModelRef.objects.create(name="base", path="/m/base")
    tr = TrainingRun.objects.create(name="cpt", stage="cpt-stable", spec={}, base_model=base,
                                    data_ref={"type": "selection", "id": sel.pk, "sha256": "d" * 64})
    final = ModelRef.objects.create(name="cpt-final", path="/m/cpt", kind="final", parent=base, run=tr)

    g = lineage.graph(lineage.node_id("model", final.pk))
    by_id = {n["id"]: n for n in g["nodes"]}
    edges = {tuple(e) for e in g["edges"]}
    chain = [("model", final.pk), ("run", tr.pk), ("selection", sel.pk), ("scorer_run", run.pk), ("rater", rater.pk),
             ("queue", queue.pk), ("dataset", labelled.pk)]
    ids = [lineage.node_id(k, pk) for k, pk in chain]
    for down, up in zip(ids, ids[1:]):
        assert (up, down) in edges, (up, down)
    assert by_id[ids[4]]["type"] == "model" and by_id[ids[4]]["labels"]["agreed (trained on)"] == 31
    assert by_id[ids[2]]["hash"] == "c" * 64 and by_id[ids[1]]["data_sha256"] == "d" * 64
    assert (lineage.node_id("recipe_version", version.pk), ids[2]) in edges
    assert (lineage.node_id("model", base.pk), ids[1]) in edges
    assert {n["type"] for n in g["nodes"]} == {"model", "run", "selection", "scorer_run", "recipe_version", "queue", "dataset"}
    # Every node links to a page the curator can open.
    c = client_for("curator")
    for n in g["nodes"]:
        assert n["url"] and c.get(n["url"]).status_code == 200, n


def test_a_deleted_object_is_shown_as_gone_not_an_error():
    base = ModelRef.objects.create(name="b", path="/m/b")
    tr = TrainingRun.objects.create(name="r", stage="sft", spec={}, base_model=base, data_ref={"type": "selection", "id": 999})
    m = ModelRef.objects.create(name="m", path="/m/m", run=tr)
    g = lineage.graph(lineage.node_id("model", m.pk))
    gone = [n for n in g["nodes"] if n.get("missing")]
    assert [n["id"] for n in gone] == ["selection:999"]
