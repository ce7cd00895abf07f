"""Writes for evaluation: start and repeat runs, store items, review memorisation hits, save stores."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from medstudio.audit.services import audit_log
from medstudio.backends.selectors import default_backend_name
from medstudio.datasets.models import Dataset

from .models import EvalKind, EvalRun, EvalStatus, HighRiskStore, HitStatus, MemorizationHit

# Dataset kinds each evaluation can read.
KINDS_FOR = {
    EvalKind.MCQ: {"mcq"},
    EvalKind.CONSULTATION: {"qa", "dialogue"},
    EvalKind.MEMORIZATION: {"document", "qa", "dialogue", "mcq", "pair"},
}
BACKENDS = ("transformers", "vllm", "openai")

# docs/METHODS.md 5 (MCQ: 0-shot, mean of 3 runs) and SF-Med appendix B (0.8 / 0.8); all editable per run.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    EvalKind.MCQ: {"seeds": [0, 1, 2], "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 128, "batch_size": 16},
    EvalKind.CONSULTATION: {"seeds": [0], "temperature": 0.0, "max_new_tokens": 512, "batch_size": 8},
    EvalKind.MEMORIZATION: {"seeds": [0], "temperature": 0.0, "max_new_tokens": 128, "batch_size": 16,
                            "rouge_threshold": 0.8, "cosine_threshold": 0.8, "prefix_ratio": 0.5,
                            "max_prefix_units": 256, "max_suffix_units": 96},
}


class EvalConfigError(ValueError):
    """A run cannot be started as asked; the message says what to change (and `field`, when set,
    names the launch form's field to change)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def _preflight(spec: dict[str, Any], dataset: Dataset | None) -> None:
    """Before a run exists: the local model loads (config + tokenizer) and the dataset has records."""
    from training.pipeline.preflight import check_model

    if dataset is not None and not dataset.n_records:
        raise EvalConfigError(gettext("dataset %(name)s has no records: import some or choose another")
                              % {"name": repr(dataset.name)}, field="dataset")
    if (spec.get("backend") or "").lower() in ("transformers", "vllm") and spec.get("path"):
        problems = check_model(str(spec["path"]), translate=gettext)
        if problems:
            raise EvalConfigError(gettext("model path %(path)s: %(problems)s; choose a registered model or fix the path")
                                  % {"path": repr(spec["path"]), "problems": "; ".join(problems)}, field="path")


def _resolve_endpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """An "openai" spec that names a registry backend (`chat_backend`) gets the backend's URL, model,
    key variable, timeout and retries stored in it, so the run is repeatable and the worker needs no
    database. With neither a backend nor a URL the registry's default backend is used, if there is
    one (before, such a spec was refused). A spec with a URL is kept as it is: a repeat passes the
    stored, already resolved spec back here and must get exactly the same endpoint."""
    from medstudio.backends.resolve import BackendChoiceError, chat_params

    spec = dict(spec)
    name = spec.pop("chat_backend", None) or ""
    if (spec.get("backend") or "").lower() != "openai":
        if name:
            raise EvalConfigError(gettext("a model backend is an OpenAI-compatible endpoint: use backend openai"))
        return spec
    name = name or ("" if spec.get("base_url") else default_backend_name())
    if not name:
        return spec
    try:
        p = chat_params(backend=name, base_url=spec.get("base_url") or "", model=spec.get("model") or "")
    except BackendChoiceError as exc:
        raise EvalConfigError(str(exc)) from None
    return {**spec, "base_url": p["base_url"], "model": p["model"], "model_backend": p["backend"],
            "api_key_env": p["api_key_env"], "timeout": p["timeout"], "max_retries": p["max_retries"],
            "max_workers": p["concurrency"]}


def _resolve_judge(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The consultation judge's registry backend, resolved into params["judge"] (never a key).

    A judge given by URL is left as before; otherwise the registry's default backend judges, ahead
    of MEDSTUDIO_CHAT_URL (read by the worker), as in medstudio.backends.resolve.chat_params."""
    from medstudio.backends.resolve import BackendChoiceError, chat_params

    params = dict(params or {})
    judge = dict(params.get("judge") or {})
    name = judge.pop("chat_backend", None) or ""
    if not name and kind == EvalKind.CONSULTATION and not judge.get("base_url"):
        name = default_backend_name()
    if not name:
        return params
    try:
        p = chat_params(backend=name, base_url=judge.get("base_url") or "", model=judge.get("model") or "")
    except BackendChoiceError as exc:
        raise EvalConfigError(str(exc)) from None
    return {**params, "judge": {**judge, **p}}


def _check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    backend = (spec.get("backend") or "").lower()
    if backend not in BACKENDS:
        raise EvalConfigError(gettext("backend must be one of %(items)s") % {"items": ', '.join(BACKENDS)})
    if backend in ("transformers", "vllm") and not spec.get("path"):
        raise EvalConfigError(gettext("backend %(backend)s needs a local model path: choose a registered model or give "
                                      "a path") % {"backend": backend}, field="path")
    if backend == "openai" and not (spec.get("base_url") and spec.get("model")):
        raise EvalConfigError(gettext("backend openai needs a base URL and a model name: pick a model backend (an admin "
                                      "registers them under Backends) or give both"), field="base_url")
    if "api_key" in spec:
        raise EvalConfigError(gettext("API keys are not stored with runs; set MEDSTUDIO_CHAT_API_KEY on the workers "
                                      "(or the variable a model backend names)"))
    return {k: v for k, v in spec.items() if v not in (None, "")}


@transaction.atomic
def eval_run_start(*, user, kind: str, dataset: Dataset, model_name: str, model_spec: dict[str, Any],
                   params: dict[str, Any] | None = None, repeat_of: EvalRun | None = None, model_ref=None,
                   enqueue: bool = True) -> EvalRun:
    """Create an evaluation run and its job (enqueued on commit). A registry `model_ref` fills the
    local path (and the leaderboard name) when they are not given."""
    from medstudio.jobs.services import job_create

    if kind not in KINDS_FOR:
        raise EvalConfigError(gettext("unknown evaluation kind %(kind)s") % {"kind": repr(kind)})
    if dataset.kind not in KINDS_FOR[kind]:
        raise EvalConfigError(gettext("a %(kind)s evaluation needs a dataset of kind %(kinds)s, not %(actual)s") % {
            "kind": kind, "kinds": gettext(" or ").join(sorted(KINDS_FOR[kind])), "actual": dataset.kind})
    if model_ref is not None:
        model_spec = {"backend": "transformers", **{k: v for k, v in model_spec.items() if v}}
        model_spec.setdefault("path", model_ref.path)
        model_name = model_name or model_ref.name
    spec = _check_spec(_resolve_endpoint(model_spec))
    _preflight(spec, dataset)
    params = _resolve_judge(kind, params or {})
    merged = {**DEFAULT_PARAMS[kind], **{k: v for k, v in params.items() if v is not None}}
    seeds = merged.get("seeds") or [0]
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise EvalConfigError(gettext("seeds must be a list of integers"))
    for key in ("rouge_threshold", "cosine_threshold"):
        if key in merged and not 0 <= float(merged[key]) <= 1:
            raise EvalConfigError(gettext("%(key)s must lie between 0 and 1") % {"key": key})
    run = EvalRun.objects.create(kind=kind, dataset=dataset, model_name=model_name.strip() or spec.get("path") or spec.get("model", "model"),
                                 model_spec=spec, params=merged, created_by=user, repeat_of=repeat_of,
                                 model_ref=model_ref)
    job = job_create(kind=f"evaluation.{kind}", params={"run_id": run.pk, "dataset_id": dataset.pk}, user=user, enqueue=enqueue)
    EvalRun.objects.filter(pk=run.pk).update(job=job)
    run.job = job
    audit_log(actor=user, action="evaluation.run_start", target=run,
              data={"kind": kind, "dataset": dataset.pk, "model": run.model_name, "spec": spec, "params": merged})
    return run


def eval_run_repeat(*, user, run: EvalRun) -> EvalRun:
    """Run again with exactly the same model, data and settings (repeatability)."""
    if run.kind == EvalKind.HARNESS:
        return harness_run_start(user=user, tasks=run.params.get("tasks") or [], model_name=run.model_name,
                                 model_spec=run.model_spec, params=run.params)
    return eval_run_start(user=user, kind=run.kind, dataset=run.dataset, model_name=run.model_name,
                          model_spec=run.model_spec, params=run.params, repeat_of=run, model_ref=run.model_ref)


def eval_run_set_status(*, run: EvalRun, status: str, summary: dict | None = None, error: str = "") -> None:
    """Called by the job handler (the actor is the job's creator, already audited at start)."""
    fields: dict[str, Any] = {"status": status, "error": error}
    if summary is not None:
        fields["summary"] = summary
    if status in (EvalStatus.SUCCEEDED, EvalStatus.FAILED, EvalStatus.CANCELLED):
        fields["finished_at"] = timezone.now()
    EvalRun.objects.filter(pk=run.pk).update(**fields)
    for k, v in fields.items():
        setattr(run, k, v)


@transaction.atomic
def memorization_hit_review(*, user, hit: MemorizationHit, status: str) -> MemorizationHit:
    """A curator decides what a memorised record means: exclude it from training, or accept it."""
    if status not in HitStatus.values:
        raise EvalConfigError(gettext("unknown status %(status)s") % {"status": repr(status)})
    before = hit.status
    hit.status = status
    hit.reviewed_by = user
    hit.reviewed_at = timezone.now()
    hit.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    audit_log(actor=user, action="evaluation.hit_review", target=hit,
              data={"record": hit.record_id, "run": hit.run_id, "from": before, "to": status})
    return hit


@transaction.atomic
def high_risk_store_record(*, run: EvalRun, path: str, embedding_model: str, threshold: float, n_entries: int) -> HighRiskStore:
    store, _ = HighRiskStore.objects.update_or_create(
        run=run, defaults={"path": path, "embedding_model": embedding_model, "threshold": threshold, "n_entries": n_entries})
    audit_log(actor=run.created_by, action="evaluation.high_risk_store_save", target=store,
              data={"path": path, "n_entries": n_entries, "threshold": threshold})
    return store


def high_risk_check_start(*, user, store: HighRiskStore, prompt: str, threshold: float | None = None):
    """Check a prompt against a high-risk store in a job (embedding needs the encoder, a worker's job)."""
    from medstudio.jobs.services import job_create

    if not prompt.strip():
        raise EvalConfigError(gettext("the prompt to check is empty"))
    if threshold is not None and not 0 <= threshold <= 1:
        raise EvalConfigError(gettext("the cosine threshold must lie between 0 and 1"))
    params = {"store_id": store.pk, "prompt": prompt, "run_id": store.run_id}
    if threshold is not None:
        params["threshold"] = threshold
    return job_create(kind="evaluation.risk_check", params=params, user=user)


# ------------------------------------------------------------------------------------------------
# lm-evaluation-harness runs (training/pipeline/harness.py)
HARNESS_DEFAULTS: dict[str, Any] = {"num_fewshot": 0, "limit": None, "batch_size": 1, "apply_chat_template": False,
                                    "seed": 0, "device": "cpu"}


def eval_datasets_dir():
    """Where local copies of harness tasks live: settings.MEDSTUDIO_EVAL_DATASETS_DIR (env of the same
    name), else VAR_DIR/eval_datasets."""
    import os
    from pathlib import Path

    from django.conf import settings

    return Path(getattr(settings, "MEDSTUDIO_EVAL_DATASETS_DIR", None)
                or os.environ.get("MEDSTUDIO_EVAL_DATASETS_DIR") or Path(settings.VAR_DIR) / "eval_datasets")


@transaction.atomic
def harness_run_start(*, user, tasks: list[str], model_name: str, model_spec: dict[str, Any],
                      params: dict[str, Any] | None = None, enqueue: bool = True) -> EvalRun:
    """An lm-eval run of curated tasks that have a local copy; its job runs in the worker."""
    from medstudio.jobs.services import job_create
    from training.pipeline import harness

    tasks = [t for t in dict.fromkeys(tasks or []) if t]
    if not tasks:
        raise EvalConfigError(gettext("pick at least one lm-eval task"))
    unknown = [t for t in tasks if t not in harness.CURATED_BY_NAME]
    if unknown:
        raise EvalConfigError(gettext("not a curated lm-eval task: %(items)s") % {"items": ', '.join(unknown)})
    local = {t["name"]: t for t in harness.local_tasks(eval_datasets_dir())}
    missing = [t for t in tasks if not local[t]["available"]]
    if missing:
        raise EvalConfigError(gettext("no local copy of %(tasks)s under %(folder)s (workers read tasks offline; save "
                                      "them there with save_to_disk)") % {"tasks": ", ".join(missing),
                                                                          "folder": eval_datasets_dir()})
    spec = _check_spec(_resolve_endpoint(model_spec))
    merged = {**HARNESS_DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}, "tasks": tasks}
    run = EvalRun.objects.create(kind=EvalKind.HARNESS, source="lm-eval", dataset=None,
                                 model_name=model_name.strip() or spec.get("path") or spec.get("model", "model"),
                                 model_spec=spec, params=merged, created_by=user)
    job = job_create(kind="evaluation.harness", params={"run_id": run.pk}, user=user, enqueue=enqueue)
    EvalRun.objects.filter(pk=run.pk).update(job=job)
    run.job = job
    audit_log(actor=user, action="evaluation.run_start", target=run,
              data={"kind": "harness", "tasks": tasks, "model": run.model_name, "spec": spec, "params": merged})
    return run


# ------------------------------------------------------------------------------------------------
# Judge against clinicians (docs/METHODS.md 5.5)
JUDGE_REVIEW_INSTRUCTIONS = (
    "Read the consultation and rate only the LAST assistant reply, 1 (poor) to 5 (excellent): an overall score, "
    "then fluency, relevance, completeness and proficiency. The scores are compared with an automatic judge's.")


@transaction.atomic
def clinician_review_send(*, user, run: EvalRun, n: int = 30, seed: int = 0, annotators_per_item: int = 1,
                          assignees=()) -> "ClinicianReview":
    """Sample judge-scored replies of a consultation run into a rating queue for clinicians.

    Each reply becomes a dialogue record (the history the model saw + its reply as the last turn;
    external id "evalitem-<id>") of a new dataset; the queue asks the four consultation aspects on
    the judge's 1-5 scale. The judge's scores are not shown to the clinicians."""
    import random

    from medstudio.annotation import services as ann
    from medstudio.datasets.formats import RowError, normalize_row
    from medstudio.datasets.models import Dataset, Kind
    from medstudio.datasets.services import dataset_create, dataset_refresh_stats, records_insert

    from .models import ClinicianReview

    if run.kind != EvalKind.CONSULTATION:
        raise EvalConfigError(gettext("only consultation runs have judge scores to check against clinicians"))
    ids = list(run.items.filter(judge_scores__isnull=False, output__isnull=False).values_list("id", flat=True))
    if not ids:
        raise EvalConfigError(gettext("this run has no judge-scored replies yet"))
    if not 1 <= int(n) <= 2000:
        raise EvalConfigError(gettext("sample between 1 and 2000 replies"))
    ids = sorted(random.Random(seed).sample(ids, min(int(n), len(ids))))
    k = run.clinician_reviews.count() + 1
    name = f"Eval #{run.pk} {run.model_name} · clinician check {k}"
    if Dataset.objects.filter(name=name).exists():
        raise EvalConfigError(gettext("a dataset named %(name)s already exists") % {"name": repr(name)})
    dataset = dataset_create(actor=user, name=name, kind=Kind.DIALOGUE,
                             description=f"Judge-scored replies of evaluation run #{run.pk}, for clinician review.",
                             data={"from_eval_run": run.pk})
    rows = []
    for it in run.items.filter(pk__in=ids).select_related("record").order_by("id"):
        history = [{"role": m["role"], "content": m["content"]} for m in (it.prompt or []) if m.get("role") in ("user", "assistant")]
        raw = {"id": f"evalitem-{it.pk}", "turns": history + [{"role": "assistant", "content": it.output}],
               "lang": it.record.lang or "zh"}
        try:
            rows.append(normalize_row(raw, "dialogue"))
        except RowError as exc:
            raise EvalConfigError(gettext("reply #%(it_id)s cannot be reviewed: %(exc)s") % {"it_id": it.pk, "exc": exc}) from None
    records_insert(dataset=dataset, rows=rows)
    dataset_refresh_stats(dataset=dataset)
    # A clinician check is a helper dataset, listed under the benchmark the run evaluated.
    from medstudio.datasets.helpers import dataset_mark_helper

    dataset_mark_helper(dataset=dataset, role="judge_review", owner=run.dataset, actor=user)
    question = ann.question_create(user=user, name=f"Judge check: eval #{run.pk}", kind="rating",
                                   schema={"scale": [1, 5], "aspects": list(ev_aspects()), "aspects_required": True},
                                   instructions=JUDGE_REVIEW_INSTRUCTIONS)
    try:
        queue = ann.queue_create(user=user, name=name, dataset=dataset, question=question,
                                 annotators_per_item=annotators_per_item, assignees=assignees, method="all", seed=seed)
    except ann.AnnotationError as exc:
        raise EvalConfigError(str(exc)) from None
    review = ClinicianReview.objects.create(run=run, dataset=dataset, queue=queue, n_items=len(rows), seed=seed,
                                            created_by=user if getattr(user, "pk", None) else None)
    audit_log(actor=user, action="evaluation.clinician_review_send", target=run,
              data={"queue": queue.pk, "items": len(rows), "seed": seed})
    return review


def ev_aspects() -> tuple[str, ...]:
    from training.pipeline.evaluation import ASPECTS

    return ASPECTS
