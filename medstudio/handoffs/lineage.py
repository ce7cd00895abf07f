"""Lineage: the graph from any model back to the labels and datasets it came from.

Node ids are ``"<kind>:<pk>"``. Whoever owns a kind of object (and its page) registers a resolver
for it: ``resolver(pk) -> (node, upstream_ids)`` or None when the object is gone. The node is a
dict with at least ``type`` (model, run, dataset, selection, mixture, preference_set,
recipe_version, scorer_run, queue), ``name`` and ``url``; upstream ids are the node ids it was
made from. The walk itself knows no stage: the platform registers its own entities (datasets,
queues, selections, mixtures, recipe versions, scorer runs; their pages are found by URL name),
curation maps a scorer run's model reference to its rater/classifier model, preferences
registers its sets, training its models and runs. An edge ``[a, b]`` means b was made from a.
"""
from __future__ import annotations

from typing import Callable

Resolver = Callable[[int], "tuple[dict, list[str]] | None"]
_RESOLVERS: dict[str, Resolver] = {}

MAX_NODES = 500  # a safety bound against a pathological graph; real lineages have tens of nodes


def register_node(kind: str, resolver: Resolver) -> None:
    _RESOLVERS[kind] = resolver


def node_id(kind: str, pk) -> str:
    return f"{kind}:{pk}"


def node(nid: str) -> dict | None:
    """One node (its name and page), without walking further."""
    kind, _, pk = nid.partition(":")
    resolver = _RESOLVERS.get(kind)
    found = resolver(int(pk)) if resolver and pk.isdigit() else None
    return {"id": nid, **found[0]} if found else None


def graph(start: str) -> dict:
    """Walk upstream from `start` (breadth first); {"nodes": [...], "edges": [[from, to], ...]}."""
    nodes: dict[str, dict] = {}
    edges: set[tuple[str, str]] = set()
    todo = [start]
    while todo and len(nodes) < MAX_NODES:
        nid = todo.pop(0)
        if nid in nodes:
            continue
        kind, _, pk = nid.partition(":")
        resolver = _RESOLVERS.get(kind)
        found = resolver(int(pk)) if resolver and pk.isdigit() else None
        if found is None:
            nodes[nid] = {"id": nid, "type": kind, "name": f"{kind} #{pk} (gone)", "url": "", "missing": True}
            continue
        node, upstream = found
        nodes[nid] = {"id": nid, **node}
        for up in upstream:
            edges.add((up, nid))
            if up not in nodes:
                todo.append(up)
    return {"nodes": list(nodes.values()), "edges": sorted([list(e) for e in edges])}


def layered(g: dict) -> list[list[dict]]:
    """Nodes in columns for drawing: the start node on the right, each node one column left of its
    furthest-left consumer (longest path to the start), so every edge points right and a source
    sits next to what used it; inside a column nodes are ordered by where their consumers are
    (barycentre), which keeps most edges from crossing."""
    ids = [n["id"] for n in g["nodes"]]
    downs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in g["edges"]:
        if a in downs and b in downs:
            downs[a].append(b)
    dist: dict[str, int] = {}

    def d(i: str, seen=()) -> int:
        if i in dist:
            return dist[i]
        if i in seen:  # a cycle would be a bug upstream; draw it rather than recurse forever
            return 0
        dist[i] = 1 + max((d(c, (*seen, i)) for c in downs[i]), default=-1)
        return dist[i]

    for i in ids:
        d(i)
    width = max(dist.values(), default=0)
    cols: dict[int, list[dict]] = {}
    for n in g["nodes"]:
        cols.setdefault(width - dist[n["id"]], []).append(n)
    order: dict[str, float] = {}
    out: list[list[dict]] = []
    for k in sorted(cols, reverse=True):
        def key(n):
            ys = [order[c] for c in downs[n["id"]] if c in order]
            return (sum(ys) / len(ys) if ys else 0.0, n["type"], n["name"])

        col = sorted(cols[k], key=key)
        for i, n in enumerate(col):
            order[n["id"]] = i - (len(col) - 1) / 2
        out.append(col)
    return out[::-1]


# --- platform nodes ---------------------------------------------------------------------------

def page_url(name: str, *args, query: str = "") -> str:
    """The URL of a named page, or "" when that page is not installed (a node without a link)."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(name, args=args) + (f"?{query}" if query else "")
    except NoReverseMatch:
        return ""



def _dataset(pk: int):
    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.filter(pk=pk).first()
    if ds is None:
        return None
    ups = [node_id("dataset", ds.parent_id)] if ds.parent_id else []
    return {"type": "dataset", "name": ds.name, "url": page_url("datasets:detail", ds.pk), "kind": ds.kind,
            "n_records": ds.n_records}, ups


def _queue(pk: int):
    from medstudio.annotation.models import Queue

    q = Queue.objects.select_related("question").filter(pk=pk).first()
    if q is None:
        return None
    return {"type": "queue", "name": q.name, "url": page_url("annotation:queue_detail", q.pk),
            "question": q.question.name if q.question_id else ""}, [node_id("dataset", q.dataset_id)]


def _selection(pk: int):
    from .models import Selection

    sel = Selection.objects.filter(pk=pk).first()
    if sel is None:
        return None
    ups = [node_id("dataset", i) for i in sel.datasets.values_list("id", flat=True)]
    ups += [node_id("scorer_run", i) for i in sel.scorer_runs.values_list("id", flat=True)]
    if sel.recipe_version_id:
        ups.append(node_id("recipe_version", sel.recipe_version_id))
    return {"type": "selection", "name": sel.name, "url": page_url("studio:selection", sel.pk), "hash": sel.content_hash,
            "n_records": sel.n_records}, ups


def _mixture(pk: int):
    from .models import Mixture

    mix = Mixture.objects.filter(pk=pk).first()
    if mix is None:
        return None
    ups = [node_id("selection", i) for i in mix.parts.values_list("selection_id", flat=True)]
    # dataset sources not frozen yet (the mixture was not drawn): the dataset and recipe version themselves
    for src in mix.sources or []:
        if isinstance(src, dict) and src.get("dataset") and not src.get("selection"):
            ups.append(node_id("dataset", int(src["dataset"])))
            if src.get("recipe_version"):
                ups.append(node_id("recipe_version", int(src["recipe_version"])))
    return {"type": "mixture", "name": mix.name, "url": page_url("studio:mixture", mix.pk), "stage": mix.stage,
            "targets": mix.targets}, ups


def _recipe_version(pk: int):
    from .models import RecipeVersion

    v = RecipeVersion.objects.select_related("recipe").filter(pk=pk).first()
    if v is None:
        return None
    return {"type": "recipe_version", "name": str(v), "url": page_url("studio:recipe", v.recipe_id), "conditions": v.conditions}, \
        [node_id("dataset", i) for i in v.datasets.values_list("id", flat=True)]


# Scorer runs whose model is a trained version name it as "<kind>:v<version>"; the stage that
# trains such models maps that reference to a node (curation registers "rater").
ModelRefResolver = Callable[[str], "str | None"]
_MODEL_REFS: list[ModelRefResolver] = []


def register_model_ref(resolver: ModelRefResolver) -> None:
    _MODEL_REFS.append(resolver)


def _scorer_run(pk: int):
    from .models import ScorerRun

    run = ScorerRun.objects.filter(pk=pk).first()
    if run is None:
        return None
    ups = [node_id("dataset", run.dataset_id)]
    for resolve in _MODEL_REFS:
        hit = resolve(run.model_ref) if run.model_ref else None
        if hit:
            ups.append(hit)
            break
    return {"type": "scorer_run", "name": f"{run.scorer} v{run.version} #{run.pk}", "url": page_url("curation:run_detail", run.pk),
            "model_ref": run.model_ref, "status": run.status}, ups


for _kind, _fn in (("dataset", _dataset), ("queue", _queue), ("selection", _selection), ("mixture", _mixture),
                   ("recipe_version", _recipe_version), ("scorer_run", _scorer_run)):
    register_node(_kind, _fn)


COLORS = {"model": "#2f6fb0", "run": "#7a4fb5", "dataset": "#3a8a4a", "selection": "#b07a2f", "mixture": "#b0452f",
          "preference_set": "#a8326e", "recipe_version": "#6b6b2f", "scorer_run": "#2f8a8a", "queue": "#555"}


def layout(g: dict, *, col_w: int = 210, row_h: int = 58, box_w: int = 180, box_h: int = 40) -> dict:
    """Coordinates for an SVG drawing of `g`: boxes per column, edges as cubic curves between them."""
    cols = layered(g)
    pos, boxes = {}, []
    height = max((len(c) for c in cols), default=1) * row_h + 10
    for ci, col in enumerate(cols):
        top = (height - len(col) * row_h) / 2
        for ri, n in enumerate(col):
            x, y = 10 + ci * col_w, top + ri * row_h + 5
            pos[n["id"]] = (x, y)
            label = n["name"] if len(n["name"]) <= 26 else n["name"][:25] + "…"
            boxes.append({**n, "x": x, "y": y, "w": box_w, "h": box_h, "label": label, "color": COLORS.get(n["type"], "#444"),
                          "type_label": n["type"].replace("_", " "), "tx": x + 8, "ty1": y + 15, "ty2": y + 31})
    lines = []
    for a, b in g["edges"]:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            x1, y1, y2 = x1 + box_w, y1 + box_h / 2, y2 + box_h / 2
            mid = (x1 + x2) / 2
            lines.append(f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}")
    return {"boxes": boxes, "paths": lines, "width": 20 + len(cols) * col_w, "height": height + 10}
