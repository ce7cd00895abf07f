"""The pipeline board: a recipe's chain of stages, each with its current artefact and a next step.

filter/score -> select -> mix -> CPT-stable -> CPT-boost -> SFT -> preference pairs -> DPO -> evaluate

Each stage registers a `Step` (in its AppConfig.ready): `current(chain)` finds its artefact given
what the earlier steps found (so the board follows one line of descent: the runs on this
mixture, the SFT on that boost model...), and `form_url(chain)` opens its own launch form
pre-filled from the earlier artefacts (base model, data choice). The board never imports a stage.
An artefact is a dict: {"name", "url", "status", and whatever later steps read, e.g. "ref"
(the "type:id" data reference), "model_id" (the final model of a run)}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .lineage import page_url


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    order: int
    current: Callable[[dict], "dict | None"]
    form_url: Callable[[dict], str]
    help: str = ""


_STEPS: dict[str, Step] = {}


def register_step(step: Step) -> None:
    _STEPS[step.key] = step


def steps() -> list[Step]:
    return sorted(_STEPS.values(), key=lambda s: s.order)


def board(*, recipe_id: int | None = None) -> list[dict]:
    """[{step, artefact, next: {title, url} | None}] in chain order."""
    chain: dict = {"recipe": recipe_id}
    rows = []
    ordered = steps()
    for step in ordered:
        art = step.current(chain)
        chain[step.key] = art
        rows.append({"step": step, "artefact": art})
    for i, row in enumerate(rows):
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        # The next step is offered once this step has an artefact to hand on.
        art = row["artefact"]
        row["next"] = {"title": nxt.title, "url": nxt.form_url(chain)} if nxt and art and art.get("ready", True) else None
        # A step with nothing yet links to its own form, pre-filled from what came before.
        row["start"] = ordered[i].form_url(chain) if not row["artefact"] else ""
    return rows


# --- the platform's own steps: score, select, mix (their artefacts are platform entities) -------



def _recipe_datasets(chain: dict) -> list[int]:
    from .models import RecipeVersion

    if not chain.get("recipe"):
        return []
    v = RecipeVersion.objects.filter(recipe_id=chain["recipe"]).order_by("-number").first()
    return list(v.datasets.values_list("id", flat=True)) if v else []


def _score(chain: dict):
    from .models import ScorerRun

    qs = ScorerRun.objects.filter(status="succeeded")
    ds = _recipe_datasets(chain)
    if ds:
        qs = qs.filter(dataset_id__in=ds)
    run = qs.select_related("dataset").first()
    if run is None:
        return None
    n = qs.count()
    return {"name": f"{run.scorer} on {run.dataset.name}" + (f" (+{n - 1} more)" if n > 1 else ""),
            "url": page_url("curation:run_detail", run.pk), "status": run.status, "dataset_id": run.dataset_id,
            "datasets": sorted(set(qs.values_list("dataset_id", flat=True)))}


def _score_form(chain: dict) -> str:
    ds = _recipe_datasets(chain)
    return page_url("datasets:detail", ds[0]) if ds else page_url("datasets:list")


def _stable_mixture(chain: dict):
    from .models import Mixture

    qs = Mixture.objects.filter(status="succeeded", stage="stable")
    if chain.get("recipe"):
        qs = qs.filter(parts__selection__recipe_version__recipe_id=chain["recipe"])
    return qs.order_by("-id").first()


def _select(chain: dict):
    """The selection the newest Stable mixture draws from (its medical part), else the newest selection."""
    from .models import Selection

    qs = Selection.objects.filter(status=Selection.Status.READY)
    if chain.get("recipe"):
        qs = qs.filter(recipe_version__recipe_id=chain["recipe"])
    mix = _stable_mixture(chain)
    sel = None
    if mix:  # the mixture's medical part first: that is the selection the curation work is about
        parts = sorted(mix.parts.values_list("position", "category", "selection_id"), key=lambda p: (p[1] != "medical", p[0]))
        found = qs.in_bulk([sid for _, _, sid in parts])
        sel = next((found[sid] for _, _, sid in parts if sid in found), None)
    sel = sel or qs.first()
    if sel is None:
        return None
    return {"name": sel.name, "url": page_url("studio:selection", sel.pk), "status": sel.status, "id": sel.pk,
            "ref": f"selection:{sel.pk}", "hash": sel.content_hash[:12], "n": sel.n_records}


def _select_form(chain: dict) -> str:
    score = chain.get("score") or {}
    ds = score.get("datasets") or _recipe_datasets(chain)
    return page_url("studio:studio", query="&".join(f"ds={d}" for d in ds)) if ds else page_url("studio:home")


def _mix(chain: dict):
    from .models import Mixture

    qs = Mixture.objects.filter(status="succeeded", stage="stable")
    sel = chain.get("select")
    if sel:
        qs = qs.filter(parts__selection_id=sel["id"])
    mix = qs.order_by("-id").first()
    if mix is None:
        return None
    return {"name": mix.name, "url": page_url("studio:mixture", mix.pk), "status": mix.status, "id": mix.pk,
            "ref": f"mixture:{mix.pk}", "stage": mix.stage}


def _mix_form(chain: dict) -> str:
    sel = chain.get("select")
    return page_url("studio:mixture_new", query=f"stage=stable&cat.{sel['id']}=medical" if sel else "")


register_step(Step("score", "Filter and score", 10, _score, _score_form, "Rules, PII, MinHash, decontamination, model scorers."))
register_step(Step("select", "Select", 20, _select, _select_form, "Thresholds in the studio, frozen as a selection."))
register_step(Step("mix", "Mix", 30, _mix, _mix_form, "A CPT mixture planned by token budget (Stable, then Boost)."))
