"""Pipeline-board steps of training (CPT-stable, CPT-boost, SFT, DPO) and evaluation.

Each step follows the chain: the CPT-stable run on the board's mixture, the CPT-boost run from
that model, and so on; its form is the New-run form pre-filled with the previous model and data.
"""
from __future__ import annotations

from django.urls import reverse

from medstudio.handoffs.board import Step, register_step
from medstudio.handoffs.models import Mixture, Selection

from .models import RunStatus, TrainingRun


def _run_artefact(run: TrainingRun | None) -> dict | None:
    if run is None:
        return None
    final = run.checkpoints.filter(is_final=True).select_related("model_ref").first() if run.status == RunStatus.SUCCEEDED else None
    return {"name": run.name, "url": reverse("training:run_detail", args=[run.pk]), "status": run.status, "run_id": run.pk,
            "model_id": final.model_ref_id if final else None, "model_name": final.model_ref.name if final and final.model_ref else "",
            "base_id": run.base_model_id, "ready": bool(final and final.model_ref_id)}


def _latest(stage: str, **filters) -> TrainingRun | None:
    return TrainingRun.objects.filter(stage=stage, **filters).order_by("-id").first()


def _from_model(stage: str, prev_key: str):
    def current(chain: dict):
        prev = chain.get(prev_key)
        if not prev or not prev.get("model_id"):
            return None
        return _run_artefact(_latest(stage, base_model_id=prev["model_id"]))
    return current


def _cpt_stable(chain: dict):
    mix = chain.get("mix")
    if mix:
        return _run_artefact(_latest("cpt-stable", data_ref__type="mixture", data_ref__id=mix["id"]))
    return None


def _form(stage: str, **params) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"stage": stage, **params}.items() if v not in (None, ""))
    return reverse("training:run_new") + "?" + q


def _model(chain: dict, key: str):
    return (chain.get(key) or {}).get("model_id")


def _boost_mixture() -> str:
    mix = Mixture.objects.filter(status="succeeded", stage="boost").order_by("-id").first()
    return f"mixture:{mix.pk}" if mix else ""


def _sft_selection() -> str:
    for sel in Selection.objects.filter(status=Selection.Status.READY).prefetch_related("datasets").order_by("-id")[:50]:
        kinds = {d.kind for d in sel.datasets.all()}
        if kinds and kinds <= {"qa", "dialogue"}:
            return f"selection:{sel.pk}"
    return ""


register_step(Step("cpt-stable", "CPT-stable", 40, _cpt_stable,
                   lambda c: _form("cpt-stable", data=(c.get("mix") or {}).get("ref")),
                   "Continued pre-training on the Stable mixture."))
register_step(Step("cpt-boost", "CPT-boost", 50, _from_model("cpt-boost", "cpt-stable"),
                   lambda c: _form("cpt-boost", base=_model(c, "cpt-stable"), data=_boost_mixture()),
                   "Continued pre-training on the Boost mixture, from the Stable model."))
register_step(Step("sft", "SFT", 60, _from_model("sft", "cpt-boost"),
                   lambda c: _form("sft", base=_model(c, "cpt-boost"), data=_sft_selection()),
                   "Supervised fine-tuning on a QA or dialogue selection."))


def _dpo(chain: dict):
    sft, pairs = chain.get("sft"), chain.get("pairs")
    if not sft or not sft.get("model_id"):
        return None
    filters = {"base_model_id": sft["model_id"]}
    if pairs:
        filters.update(data_ref__type="preference_set", data_ref__id=pairs["id"])
    return _run_artefact(_latest("dpo", **filters))


register_step(Step("dpo", "DPO", 80, _dpo,
                   lambda c: _form("dpo", base=_model(c, "sft"), merge_base=(c.get("sft") or {}).get("base_id"),
                                   data=(c.get("pairs") or {}).get("ref")),
                   "Preference optimisation with online merging, from the SFT model."))


def _evaluate(chain: dict):
    from .evaluation.models import EvalRun

    model_id = _model(chain, "dpo")
    run = EvalRun.objects.filter(model_ref_id=model_id).order_by("-id").first() if model_id else None
    if run is None:
        return None
    return {"name": f"{run.get_kind_display()} #{run.pk}", "url": reverse("evaluation:run", args=[run.pk]), "status": run.status}


register_step(Step("evaluate", "Evaluate", 90, _evaluate,
                   lambda c: reverse("evaluation:run_new") + (f"?model_ref={_model(c, 'dpo')}" if _model(c, "dpo") else ""),
                   "Benchmarks, consultation judge and the memorisation audit."))
