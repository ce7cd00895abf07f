"""Evaluation jobs: MCQ benchmarks, judged consultations, memorisation audits.

Each job walks the dataset's records in id order in bounded batches; a batch's EvalItems and the
cursor commit together, so a resumed job neither redoes nor loses work. A failed generation or judge
call marks its item (output null / error set), never the job. Heavy libraries load inside the
generator and embedder objects, not here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext_noop

from medstudio.datasets.models import Record
from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind
from medstudio.jobs.errors import failure, known_failure

# Failures shown translated on the job page (medstudio/jobs/errors.py reads the params back).
RUN_DELETED = known_failure(gettext_noop("the evaluation run was deleted"))
STORE_DELETED = known_failure(gettext_noop("the high-risk store was deleted"))
STORE_FILES_GONE = known_failure(gettext_noop("the store files are gone from %(path)s; run the memorisation audit again"))

from training.pipeline import evaluation as ev
from training.pipeline import memorization as mem
from training.pipeline.rouge import rouge_l

from . import selectors, services
from .models import EvalItem, EvalRun, EvalStatus, MemorizationHit


def _generator(run: EvalRun) -> ev.Generator:
    spec = dict(run.model_spec)
    if spec.get("backend") == "openai" and spec.get("base_url") and spec.get("model"):
        from medstudio.backends.resolve import chat_client

        # Keys live in the environment, never in the run row: the variable a registry backend names
        # (api_key_env, stored at launch), else MEDSTUDIO_CHAT_API_KEY for a spec given by URL.
        return ev.EndpointGenerator(chat_client(spec, require_key=True), max_workers=int(spec.get("max_workers", 4)))
    try:
        return ev.make_generator(spec)
    except ev.GeneratorUnavailable as exc:
        raise JobFailed(str(exc)) from None


def _gen_params(run: EvalRun, seed: int) -> ev.GenParams:
    p = run.params
    return ev.GenParams(max_new_tokens=int(p.get("max_new_tokens", 256)), temperature=float(p.get("temperature", 0.0)),
                        top_p=float(p.get("top_p", 1.0)), seed=int(seed))


def _generate(gen: ev.Generator, prompts: list, params: ev.GenParams) -> list[ev.Generation]:
    try:
        outs = gen.generate(prompts, params)
    except ev.GeneratorUnavailable as exc:
        raise JobFailed(str(exc)) from None
    except Exception as exc:
        from medstudio.inference.errors import BackendUnavailable, ModelNotAvailable

        if isinstance(exc, (ModelNotAvailable, BackendUnavailable)):
            raise JobFailed(str(exc)) from None
        raise
    if len(outs) != len(prompts):
        raise JobFailed(f"backend returned {len(outs)} outputs for {len(prompts)} prompts")
    return outs


def _records(run: EvalRun):
    qs = Record.objects.filter(dataset_id=run.dataset_id).order_by("id")
    limit = run.params.get("limit")
    if limit:
        ids = list(qs.values_list("id", flat=True)[: int(limit)])
        qs = qs.filter(id__lte=ids[-1]) if ids else qs.none()
    return qs


def _run_job(ctx: JobContext, body: Callable[[EvalRun, JobContext], dict]) -> dict:
    run = EvalRun.objects.filter(pk=ctx.params["run_id"]).select_related("dataset").first()
    if run is None:
        raise JobFailed(failure(RUN_DELETED))
    if run.status == EvalStatus.SUCCEEDED:
        return {"run_id": run.pk, "already": "succeeded"}
    services.eval_run_set_status(run=run, status=EvalStatus.RUNNING)
    try:
        summary = body(run, ctx)
    except JobCancelled:
        services.eval_run_set_status(run=run, status=EvalStatus.CANCELLED)
        raise
    except JobFailed as exc:
        services.eval_run_set_status(run=run, status=EvalStatus.FAILED, error=str(exc))
        raise
    except Exception as exc:
        services.eval_run_set_status(run=run, status=EvalStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    services.eval_run_set_status(run=run, status=EvalStatus.SUCCEEDED, summary=summary)
    return {"run_id": run.pk, **{k: v for k, v in summary.items() if k in ("overall", "rate", "n_items", "flagged")}}


def _without_nul(items: list[EvalItem]) -> list[EvalItem]:
    """PostgreSQL text columns refuse NUL (0x00), and a model's output can hold one (tiny or broken
    models do): drop the NULs so the batch stores instead of failing the job (found by the fault tests)."""
    from django.db import models

    names = [f.attname for f in EvalItem._meta.concrete_fields if isinstance(f, (models.CharField, models.TextField))]
    for item in items:
        for name in names:
            value = getattr(item, name)
            if isinstance(value, str) and "\x00" in value:
                setattr(item, name, value.replace("\x00", ""))
    return items


def _loop(run: EvalRun, ctx: JobContext, per_seed: bool,
          work: Callable[[list[Record], int], list[EvalItem]]) -> None:
    """Walk (seed, record batch) pairs from the cursor; `work` returns the batch's unsaved items."""
    seeds = (run.params.get("seeds") or [0]) if per_seed else (run.params.get("seeds") or [0])[:1]
    qs = _records(run)
    n = qs.count()
    total = n * len(seeds)
    cur = ctx.cursor or {"seed_idx": 0, "after_id": 0, "done": 0}
    done = cur["done"]
    ctx.progress(done=done, total=total)
    bs = int(run.params.get("batch_size", 16))
    for si in range(cur["seed_idx"], len(seeds)):
        after = cur["after_id"] if si == cur["seed_idx"] else 0
        while True:
            batch = list(qs.filter(id__gt=after)[:bs])
            if not batch:
                break
            items = work(batch, seeds[si])
            after = batch[-1].id
            done += len(batch)
            with transaction.atomic():
                # ignore_conflicts: a batch re-run after a crash between commit and ack adds nothing twice
                EvalItem.objects.bulk_create(_without_nul(items), ignore_conflicts=True)
                ctx.progress(done=done, total=total, cursor={"seed_idx": si, "after_id": after, "done": done})
        cur = {"seed_idx": si + 1, "after_id": 0, "done": done}


# ------------------------------------------------------------------------------------------------
@job_handler("evaluation.mcq", queue="gpu", description="MCQ benchmark: 0-shot accuracy over seeds")
def mcq_job(ctx: JobContext) -> dict:
    return _run_job(ctx, _mcq)


def _mcq(run: EvalRun, ctx: JobContext) -> dict:
    gen = _generator(run)

    def work(batch: list[Record], seed: int) -> list[EvalItem]:
        prompts = [ev.mcq_messages(r.content, lang=r.lang, subject=r.subset) for r in batch]
        outs = _generate(gen, prompts, _gen_params(run, seed))
        items = [ev.McqItem(r.pk, r.subset, r.content.get("options") or {}, str(r.content.get("answer") or "")) for r in batch]
        verdicts = ev.mcq_verdicts(items, [o.text for o in outs])
        return [
            EvalItem(run=run, record=r, seed=seed, subset=r.subset, prompt=p, prompt_text=o.prompt_text, output=o.text,
                     error=o.error, reference=str(r.content.get("answer") or ""), extracted=v.extraction.letters,
                     extraction_method=v.extraction.method, correct=v.correct)
            for r, p, o, v in zip(batch, prompts, outs, verdicts)
        ]

    _loop(run, ctx, True, work)
    summary = selectors.mcq_summary(run)
    ctx.log(f"accuracy {summary['overall']['mean']:.4f} ± {summary['overall']['std']:.4f} over {summary['n_runs']} seed(s)")
    return summary


# ------------------------------------------------------------------------------------------------
@job_handler("evaluation.consultation", queue="gpu", description="Consultation: generate, judge 1-5 on four aspects, ROUGE-L")
def consultation_job(ctx: JobContext) -> dict:
    return _run_job(ctx, _consultation)


def _judge_backend(run: EvalRun):
    """The consultation judge: endpoint params stored at launch (a registry backend, or a URL and
    model), else MEDSTUDIO_CHAT_URL / MEDSTUDIO_CHAT_MODEL read here; None when there is none."""
    from medstudio.backends.resolve import chat_client

    judge = run.params.get("judge") or {}
    base_url = judge.get("base_url") or settings.MEDSTUDIO_CHAT_URL
    model = judge.get("model") or settings.MEDSTUDIO_CHAT_MODEL
    if not base_url:
        return None
    # Judge prompts are long: 120 s unless the backend (or the params) say otherwise.
    params = {"backend": judge.get("backend") or "", "base_url": base_url, "model": model,
              "api_key_env": judge.get("api_key_env") or "", "timeout": float(judge.get("timeout", 120)),
              "max_retries": int(judge.get("max_retries", 3))}
    return chat_client(params, require_key=True)


def _judge_workers(judge: dict) -> int:
    """Judge calls in flight: the backend's concurrency (resolved at launch), else max_workers, else 4."""
    return int(judge.get("concurrency") or judge.get("max_workers") or 4)


def _consultation(run: EvalRun, ctx: JobContext) -> dict:
    gen = _generator(run)
    judge = _judge_backend(run)
    if judge is None:
        ctx.log("no judge configured (params.judge.base_url or MEDSTUDIO_CHAT_URL): only ROUGE-L is computed", "warning")
    kind = run.dataset.kind

    def work(batch: list[Record], seed: int) -> list[EvalItem]:
        pairs = [(r, it) for r in batch for it in ev.consultation_items(r.pk, kind, r.content, lang=r.lang)]
        outs = _generate(gen, [it.messages for _, it in pairs], _gen_params(run, seed)) if pairs else []
        verdicts: list[Any] = [None] * len(pairs)
        if judge is not None:
            todo = [i for i, o in enumerate(outs) if o.text is not None]
            replies = judge.complete_many([ev.judge_messages(pairs[i][1], outs[i].text) for i in todo],
                                          max_workers=_judge_workers(run.params.get("judge") or {}), temperature=0.0)
            for i, rep in zip(todo, replies):
                verdicts[i] = rep
        items = []
        for (r, it), o, jr in zip(pairs, outs, verdicts):
            scores, jerr, jtext = None, "", ""
            if jr is not None:
                if hasattr(jr, "text"):
                    jtext = jr.text
                    try:
                        scores = ev.parse_judge_scores(jr.text)
                    except ev.JudgeParseError as exc:
                        jerr = f"judge: {exc}"
                else:
                    jerr = f"judge: {getattr(jr, 'reason', jr)}"
            items.append(EvalItem(
                run=run, record=r, seed=seed, turn=it.turn, subset=r.subset, prompt=it.messages, prompt_text=o.prompt_text,
                output=o.text, error="; ".join(e for e in (o.error, jerr) if e), reference=it.reference,
                judge_scores=scores, judge_output=jtext,
                rouge_l=None if o.text is None else rouge_l(o.text, it.reference).fmeasure,
            ))
        return items

    _loop(run, ctx, False, work)
    return selectors.consultation_summary(run)


# ------------------------------------------------------------------------------------------------
@job_handler("evaluation.memorization", queue="gpu", description="Memorisation audit (SF-Med appendix B)")
def memorization_job(ctx: JobContext) -> dict:
    return _run_job(ctx, _memorization)


def _memorization(run: EvalRun, ctx: JobContext) -> dict:
    gen = _generator(run)
    p = run.params
    split_kw = {"prefix_ratio": float(p.get("prefix_ratio", mem.DEFAULT_PREFIX_RATIO)),
                "max_prefix_units": p.get("max_prefix_units"), "max_suffix_units": p.get("max_suffix_units")}
    threshold = float(p.get("rouge_threshold", mem.DEFAULT_ROUGE_THRESHOLD))

    def work(batch: list[Record], seed: int) -> list[EvalItem]:
        probes = mem.make_probes([(r.pk, r.text) for r in batch], **split_kw)
        by_id = {r.pk: r for r in batch}
        outs = _generate(gen, [pr.prefix for pr in probes], _gen_params(run, seed)) if probes else []
        results = mem.judge_memorised(probes, [o.text for o in outs], threshold=threshold, errors=[o.error for o in outs])
        return [
            EvalItem(run=run, record=by_id[res.key], seed=seed, subset=by_id[res.key].subset, prompt=res.prefix,
                     prompt_text=o.prompt_text, output=res.output, error=res.error, reference=res.suffix,
                     rouge_l=res.rouge_l, correct=None, detail={"flagged": res.flagged, "threshold": threshold})
            for res, o in zip(results, outs)
        ]

    _loop(run, ctx, False, work)
    flagged = EvalItem.objects.filter(run=run, detail__flagged=True)
    with transaction.atomic():
        for item in flagged:
            MemorizationHit.objects.get_or_create(item=item, defaults={"run": run, "record_id": item.record_id, "rouge_l": item.rouge_l})
    summary = selectors.memorization_summary(run)
    summary["store"] = _build_store(run, ctx)
    ctx.log(f"memorised {summary['flagged']} of {summary['scored']} ({(summary['rate'] or 0):.2%})")
    return summary


def store_dir_for(run: EvalRun) -> Path:
    """Beside the model when it is a local directory (so it ships with it), else under MEDIA_ROOT."""
    path = run.model_spec.get("path")
    if run.model_spec.get("backend") in ("transformers", "vllm") and path and os.path.isdir(path) and os.access(path, os.W_OK):
        return Path(path) / mem.STORE_DIRNAME
    return Path(settings.MEDIA_ROOT) / "evaluation" / f"run_{run.pk}" / mem.STORE_DIRNAME


def _build_store(run: EvalRun, ctx: JobContext) -> dict:
    from medstudio.inference.embeddings import EmbeddingError, load_embedder
    from medstudio.inference.errors import ModelNotAvailable

    p = run.params
    hits = list(MemorizationHit.objects.filter(run=run).select_related("item").order_by("id"))
    ref = p.get("embedding_model") or settings.MEDSTUDIO_EMBEDDING_MODEL
    threshold = float(p.get("cosine_threshold", mem.DEFAULT_COSINE_THRESHOLD))
    try:
        embedder = load_embedder(ref, base_url=p.get("embedding_url") or settings.MEDSTUDIO_EMBEDDING_URL or None,
                                 api_key=settings.MEDSTUDIO_CHAT_API_KEY)
        store = mem.HighRiskStore.build([h.item.prompt for h in hits], [h.record_id for h in hits], embedder.encode,
                                        threshold=threshold, embedding_model=ref)
    except (ModelNotAvailable, EmbeddingError) as exc:
        ctx.log(f"high-risk store not built: {exc} (set params.embedding_model or MEDSTUDIO_EMBEDDING_MODEL)", "warning")
        return {"built": False, "reason": str(exc)}
    out = store.save(store_dir_for(run))
    services.high_risk_store_record(run=run, path=str(out), embedding_model=ref, threshold=threshold, n_entries=len(store))
    ctx.log(f"high-risk store with {len(store)} entries written to {out}")
    return {"built": True, "path": str(out), "n_entries": len(store)}


# ------------------------------------------------------------------------------------------------
@job_handler("evaluation.risk_check", queue="gpu", description="Is a prompt within the high-risk store's cosine threshold?")
def risk_check_job(ctx: JobContext) -> dict:
    """Embed one prompt with the store's encoder and check it, as a serving stack would."""
    from medstudio.inference.embeddings import EmbeddingError, load_embedder
    from medstudio.inference.errors import ModelNotAvailable

    from .models import HighRiskStore

    row = HighRiskStore.objects.select_related("run").filter(pk=ctx.params["store_id"]).first()
    if row is None:
        raise JobFailed(failure(STORE_DELETED))
    try:
        store = mem.HighRiskStore.load(row.path, threshold=ctx.params.get("threshold"))
    except FileNotFoundError:
        raise JobFailed(failure(STORE_FILES_GONE, path=row.path)) from None
    p = row.run.params
    try:
        embedder = load_embedder(row.embedding_model, base_url=p.get("embedding_url") or settings.MEDSTUDIO_EMBEDDING_URL or None,
                                 api_key=settings.MEDSTUDIO_CHAT_API_KEY)
        vec = embedder.encode([ctx.params["prompt"]])[0]
    except (ModelNotAvailable, EmbeddingError) as exc:
        raise JobFailed(str(exc)) from None
    check = store.check(vec)
    ctx.progress(done=1, total=1)
    ctx.log(f"high risk: {check.high_risk} (max cosine {check.max_cosine}, threshold {store.threshold})")
    return {"high_risk": check.high_risk, "max_cosine": check.max_cosine, "nearest_record_id": check.nearest,
            "threshold": store.threshold, "store_id": row.pk}


# ------------------------------------------------------------------------------------------------
@job_handler("evaluation.harness", queue="gpu", description="lm-evaluation-harness: curated medical tasks, offline")
def harness_job(ctx: JobContext) -> dict:
    return _run_job(ctx, _harness)


def _harness(run: EvalRun, ctx: JobContext) -> dict:
    """Run lm-eval on the run's tasks (local copies only) and keep its per-sample choices in a JSONL
    file beside the run; the summary has the MCQ leaderboard's shape (one subject per task)."""
    import json

    from training.pipeline import harness

    p = run.params
    spec = dict(run.model_spec)
    if spec.get("backend") == "openai":
        # lm-eval's API models read OPENAI_API_KEY; the key comes from the variable the backend names.
        key = os.environ.get(spec.get("api_key_env") or "MEDSTUDIO_CHAT_API_KEY", "")
        if key:
            os.environ["OPENAI_API_KEY"] = key
    try:
        model, args = harness.model_for(spec, device=str(p.get("device") or "cpu"), batch_size=int(p.get("batch_size") or 1))
        ctx.progress(done=0, total=len(p.get("tasks") or []))
        out = harness.run(tasks=list(p.get("tasks") or []), datasets_dir=services.eval_datasets_dir(), model=model,
                          model_args=args, limit=p.get("limit"), num_fewshot=p.get("num_fewshot"),
                          apply_chat_template=bool(p.get("apply_chat_template")), seed=int(p.get("seed") or 0),
                          log=ctx.log)
    except harness.HarnessUnavailable as exc:
        raise JobFailed(str(exc)) from None
    folder = Path(settings.MEDIA_ROOT) / "evaluation" / f"run_{run.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    samples_path = folder / "lm_eval_samples.jsonl"
    tmp = samples_path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in out["samples"]:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(samples_path)
    summary = harness.summary_from(out["results"])
    summary.update(samples_path=str(samples_path), versions=out.get("versions") or {},
                   examples=out["samples"][:10])
    ctx.progress(done=len(p.get("tasks") or []), total=len(p.get("tasks") or []))
    metric = summary["metric"]
    ctx.log("lm-eval done: " + ", ".join(f"{t} {m.get(metric, 0):.1%}" for t, m in out["results"].items()))
    return summary


# ------------------------------------------------------------------------------------------------
# how these job kinds read on the job pages (medstudio/jobs/registry.py)

def _eval_run_links(job):
    from django.urls import reverse

    run = (job.result or {}).get("run_id") or (job.params or {}).get("run_id")
    return [(gettext_noop("Open the evaluation run's results"), reverse("evaluation:run", args=[run]))] if run else []


register_job_kind("evaluation.mcq", label=gettext_noop("MCQ evaluation"), result_links=_eval_run_links)
register_job_kind("evaluation.consultation", label=gettext_noop("Consultation evaluation"), result_links=_eval_run_links)
register_job_kind("evaluation.memorization", label=gettext_noop("Memorization check"), result_links=_eval_run_links)
register_job_kind("evaluation.harness", label=gettext_noop("lm-eval harness run"), result_links=_eval_run_links)
register_job_kind("evaluation.risk_check", label=gettext_noop("High-risk prompt check"), result_links=_eval_run_links)
