"""Preference jobs: build, vote, export, diversify. Thin adapters: load rows, call the pure
pipeline in bounded batches, store each batch with its resume point through services.

Heavy libraries (torch, transformers, trl) load inside the reward-model step only.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

from django.db import transaction
from django.utils.translation import gettext_noop

from medstudio.jobs.context import JobCancelled, JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind

from . import conf, services
from .models import BuildRun, DiversifyRun, Origin, PairStatus, PreferencePair, RunStatus, VoteRun
from medstudio.handoffs.models import PreferenceSet
from .pipeline import builders
from .pipeline.judge import ItemError, Usage


def _chat(base_url: str, model: str):
    """A client for a URL + model from the form or the MEDSTUDIO_PREF_* / MEDSTUDIO_CHAT_* settings.

    No api_key_env: chat_client then uses MEDSTUDIO_CHAT_API_KEY, the key this path always used;
    the preferences timeout and retries apply as they always did."""
    from medstudio.backends.resolve import chat_client

    return chat_client({"base_url": base_url, "model": model, "api_key_env": ""}, timeout=conf.chat_timeout(),
                       max_retries=conf.chat_max_retries())


def _registry_chat(params: dict):
    """A client for endpoint params resolved at launch from a registry backend (services._resolve_chat).

    The backend's key variable, timeout and retries apply, unless MEDSTUDIO_PREF_CHAT_* set them on purpose."""
    from medstudio.backends.resolve import BackendChoiceError, chat_client

    try:
        return chat_client(params, require_key=True, **conf.chat_overrides())
    except BackendChoiceError as exc:
        raise JobFailed(str(exc)) from None


def _workers(params: dict) -> int:
    """Calls in flight: the registry backend's concurrency when the run names one (the smallest, if
    generator and judges differ), else MEDSTUDIO_PREF_MAX_WORKERS."""
    from medstudio.backends.resolve import concurrency

    resolved = [c for role in (params.get("chat") or {}).values() for c in role]
    return min(concurrency(c) for c in resolved) if resolved else conf.max_workers()


def _builder_fn(run: BuildRun):
    """`make(usage) -> build(record)`: backends are made once per job, usage is counted per batch."""
    p = run.params
    seed = p.get("seed", 0)
    if run.builder == Origin.OBJECTIVE:
        return lambda usage: lambda rec: builders.objective_pair(rec, seed=seed)
    if run.builder == Origin.FROM_SCORES:
        aspects = p.get("aspects") or None
        return lambda usage: lambda rec: builders.from_scores_pairs(
            rec, min_gap=float(p.get("min_gap", 1.0)), aspects=aspects, mode=p.get("mode", "best_worst"))
    gen_params = {"temperature": float(p.get("temperature", 0.7))}
    judge_params = {"temperature": 0.0}
    if p.get("chat"):  # a registry backend, resolved when the run was launched
        gen = _registry_chat(p["chat"]["generator"][0])
        judges = [_registry_chat(j) for j in p["chat"]["judges"]]
    else:
        url = p.get("base_url") or conf.chat_url()
        judge_url = p.get("judge_url") or conf.judge_url() or url
        gen = _chat(url, p.get("generator") or conf.chat_model())
        if run.builder == Origin.SUBJECTIVE:
            judges = [_chat(judge_url, p.get("judge") or conf.judge_models()[0])]
        else:
            judges = [_chat(judge_url, m) for m in p.get("judges") or conf.judge_models()]
    if run.builder == Origin.SUBJECTIVE:
        judge = judges[0]
        return lambda usage: lambda rec: builders.subjective_pair(
            rec, gen, judge, usage, both_orders=bool(p.get("both_orders")), gen_params=gen_params,
            judge_params=judge_params)
    return lambda usage: lambda rec: builders.sampled_pair(
        rec, gen, judges, usage, n=int(p.get("n", 4)), seed=seed, gen_params=gen_params, judge_params=judge_params)


def _record_batches(run: BuildRun, after: int, size: int) -> Iterator[list[tuple[int, Any, Any]]]:
    """(item key, record id, record) in key order, after `after`, in batches (keyset paging)."""
    from medstudio.datasets.models import Record

    if run.path:
        from medstudio.datasets.formats import iter_rows

        batch = []
        for lineno, row in iter_rows(run.path, "jsonl", start_line=after):
            batch.append((lineno, None, row))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if run.dataset_id:
        qs = Record.objects.filter(dataset_id=run.dataset_id)
    else:
        from medstudio.handoffs.selectors import selection_records

        qs = selection_records(run.selection_id)
    last = after
    while True:
        rows = list(qs.filter(id__gt=last).order_by("id")[:size])
        if not rows:
            return
        yield [(r.id, r.id, r) for r in rows]
        last = rows[-1].id


def _guard_bad_lines(build):
    """File sources yield RowError for unreadable lines: those lines fail with the reader's reason."""
    from medstudio.datasets.formats import RowError

    def guarded(rec):
        if isinstance(rec, RowError):
            raise ItemError(f"bad line: {rec}")
        return build(rec)

    return guarded


def _count(run: BuildRun) -> int | None:
    from medstudio.datasets.models import Record

    if run.path:
        return None
    if run.dataset_id:
        return Record.objects.filter(dataset_id=run.dataset_id).count()
    from medstudio.handoffs.selectors import selection_records

    return selection_records(run.selection_id).count()


@job_handler("preferences.build", queue="cpu", description="Build preference pairs from a dataset, selection or file.")
def build_job(ctx: JobContext) -> dict:
    run = BuildRun.objects.get(pk=ctx.params["run_id"])
    if run.status == RunStatus.DONE:
        return {"run_id": run.pk, "pairs": run.n_pairs}
    BuildRun.objects.filter(pk=run.pk).update(job=ctx.job)
    services.build_status_set(run=run, status=RunStatus.RUNNING)
    chat = run.builder in services.CHAT_BUILDERS
    size = conf.batch_size() if chat else 500
    total = _count(run)
    prices = conf.prices()
    if run.after:
        ctx.log(f"Resuming after item {run.after} ({run.n_done} done, {run.n_pairs} pairs kept).")
    make_build = _builder_fn(run)
    try:
        for batch in _record_batches(run, run.after, size):
            usage = Usage()
            build = _guard_bad_lines(make_build(usage))
            results = builders.run_items([rec for _, _, rec in batch], build, max_workers=_workers(run.params) if chat else 1,
                                         outage_retry_wait=conf.outage_retry_wait())
            done, outage = builders.settle_batch(results)
            stored = [(key, rid, res) for (key, rid, _), (_, res) in zip(batch, done)]
            with transaction.atomic():
                if stored:
                    run = services.build_batch_store(run=run, results=stored, usage=usage, after=stored[-1][0], prices=prices)
                elif usage.calls:
                    run = services.build_batch_store(run=run, results=[], usage=usage, after=run.after, prices=prices)
                ctx.progress(done=run.n_done, total=total, cursor={"after": run.after})
            for key, _, res in stored:
                if isinstance(res, ItemError):
                    ctx.log(f"item {key}: {res.reason}", "warning")
            if outage is not None:
                msg = (f"Stopped: the model backend is unavailable ({outage.reason}). {run.n_pairs} pair(s) and "
                       f"{run.n_failed} failure(s) so far are kept; resume from the preference set page.")
                services.build_status_set(run=run, status=RunStatus.PAUSED, error=msg)
                raise JobFailed(msg)
    except JobFailed:
        raise
    except JobCancelled:
        services.build_status_set(run=run, status=RunStatus.PAUSED, error="Cancelled; resume to continue.")
        raise
    except Exception as exc:
        services.build_status_set(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    run = services.build_status_set(run=run, status=RunStatus.DONE)
    ctx.log(f"Built {run.n_pairs} pair(s), {run.n_ties} tie(s) kept apart, {run.n_failed} failure(s); "
            f"{run.usage.get('prompt_tokens', 0)}+{run.usage.get('completion_tokens', 0)} tokens, ${run.cost_usd:.4f}.")
    return {"run_id": run.pk, "pairs": run.n_pairs, "ties": run.n_ties, "failed": run.n_failed, "usage": run.usage,
            "cost_usd": run.cost_usd}


# ------------------------------------------------------------------------------------------ vote


def _pair_dicts(pairs) -> list[dict]:
    return [{"prompt_turns": p.prompt_turns, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


@job_handler("preferences.vote", queue="training", description="Reward-model (or judge) voting over a preference set.")
def vote_job(ctx: JobContext) -> dict:
    vote = VoteRun.objects.get(pk=ctx.params["vote_id"])
    if vote.status == RunStatus.DONE:
        return {"vote_id": vote.pk}
    VoteRun.objects.filter(pk=vote.pk).update(job=ctx.job)
    services.vote_status_set(vote=vote, status=RunStatus.RUNNING)
    pairs_qs = PreferencePair.objects.filter(pref_set=vote.pref_set, status=PairStatus.OK).order_by("id")
    try:
        if vote.method == "reward_models":
            _vote_reward_models(ctx, vote, list(pairs_qs))
        else:
            _vote_judges(ctx, vote, pairs_qs)
    except JobFailed:
        raise
    except JobCancelled:
        services.vote_status_set(vote=vote, status=RunStatus.PAUSED, error="Cancelled; resume to continue.")
        raise
    except Exception as exc:
        services.vote_status_set(vote=vote, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    vote = services.vote_apply(user=vote.created_by, vote=vote)
    ctx.log(f"Voting done: {vote.summary.get('counts')}.")
    return {"vote_id": vote.pk, "counts": vote.summary.get("counts")}


def _vote_reward_models(ctx: JobContext, vote: VoteRun, pairs: list) -> None:
    from medstudio.inference.errors import ModelNotAvailable
    from medstudio.inference.resolve import resolve_local_model

    from .pipeline.reward import RewardSpec, score_pairs, train_reward_models

    p = vote.params
    try:
        base = resolve_local_model(p.get("base_model") or conf.reward_base_model(), "MEDSTUDIO_PREF_REWARD_BASE")
    except ModelNotAvailable as exc:
        services.vote_status_set(vote=vote, status=RunStatus.FAILED, error=str(exc))
        raise JobFailed(str(exc)) from None
    spec = RewardSpec(base_model=base, k=int(p.get("k") or conf.reward_k()), epochs=float(p.get("epochs", 1.0)),
                      learning_rate=float(p.get("learning_rate", 1e-4)), batch_size=int(p.get("batch_size", 8)),
                      max_length=int(p.get("max_length", 1024)), seed=int(p.get("seed", 0)))
    out_dir = conf.work_dir() / f"vote_{vote.pk}"
    state = dict(vote.state or {})
    # Voters trained before a crash are reused, as long as they are on this worker's disk.
    kept = []
    for path in state.get("paths", []):
        if not Path(path).is_dir():
            break
        kept.append(path)
    state["paths"] = kept
    data = _pair_dicts(pairs)
    ctx.progress(done=len(state.get("paths", [])), total=spec.k + 1)

    def saved(i: int, path: str) -> None:
        state.setdefault("paths", []).append(path)
        with transaction.atomic():
            services.vote_details_store(vote=vote, details={}, state=state)
            ctx.progress(done=i + 1, total=spec.k + 1, cursor={"models": i + 1})
        ctx.log(f"Reward model {i + 1}/{spec.k} trained.")

    paths = train_reward_models(data, spec, out_dir, done=list(kept), on_model=saved)
    chosen, rejected = [], []
    for path in paths:
        c, r = score_pairs(path, data, max_length=spec.max_length)
        chosen.append(c)
        rejected.append(r)
    details = {pair.pk: {"chosen": [chosen[k][i] for k in range(len(paths))],
                         "rejected": [rejected[k][i] for k in range(len(paths))]} for i, pair in enumerate(pairs)}
    with transaction.atomic():
        services.vote_details_store(vote=vote, details=details, state=state)
        ctx.progress(done=spec.k + 1, total=spec.k + 1)


def _vote_judges(ctx: JobContext, vote: VoteRun, pairs_qs) -> None:
    from .pipeline.judge import judge_votes

    p = vote.params
    if p.get("chat"):  # a registry backend, resolved when the vote was launched
        judges = [_registry_chat(j) for j in p["chat"]["judges"]]
    else:
        url = p.get("base_url") or conf.judge_url()
        if not url:
            raise JobFailed("No judge server configured: pick a model backend, set MEDSTUDIO_PREF_JUDGE_URL / "
                            "MEDSTUDIO_CHAT_URL or give a base URL.")
        judges = [_chat(url, m) for m in p["judges"]]
    state = dict(vote.state or {})
    after = int(state.get("after", 0))
    total = pairs_qs.count()
    done = pairs_qs.filter(id__lte=after).count()
    prices = conf.prices()
    while True:
        batch = list(pairs_qs.filter(id__gt=after)[: conf.batch_size()])
        if not batch:
            return
        usage = Usage()
        details: dict[int, dict] = {}
        outage: ItemError | None = None
        for pair in batch:
            try:
                c, r, errors = judge_votes(judges, pair.prompt_turns, pair.chosen, pair.rejected, usage,
                                           temperature=0.0)
            except ItemError as exc:
                outage = exc
                break
            details[pair.pk] = {"chosen": c, "rejected": r, "voters": p["judges"], **({"errors": errors} if errors else {})}
            after = pair.pk
        state["after"] = after
        with transaction.atomic():
            services.vote_details_store(vote=vote, details=details, state=state, usage=usage, prices=prices)
            done += len(details)
            ctx.progress(done=done, total=total, cursor={"after": after})
        if outage is not None:
            msg = f"Stopped: judge unavailable ({outage.reason}); {done} pair(s) scored are kept. Resume to continue."
            services.vote_status_set(vote=vote, status=RunStatus.PAUSED, error=msg)
            raise JobFailed(msg)


# ---------------------------------------------------------------------------------------- export


@job_handler("preferences.export", queue="cpu", description="Export a preference set (TRL + LLaMA-Factory).")
def export_job(ctx: JobContext) -> dict:
    from .pipeline.export import write_exports

    pref_set = PreferenceSet.objects.get(pk=ctx.params["set_id"])
    # An earlier attempt that died after storing its export (the files are written first) did the job:
    # a second export row for the same job would list the set twice (found by the fault tests).
    from .models import PreferenceExport

    done = PreferenceExport.objects.filter(job=ctx.job).order_by("id").first()
    if done is not None:
        return {"export_id": done.pk, **done.counts}
    directory = conf.work_dir() / "exports" / f"set{pref_set.pk}-job{ctx.job.pk}"

    def rows():
        for p in PreferencePair.objects.filter(pref_set=pref_set).order_by("id").iterator(chunk_size=1000):
            yield {"prompt_turns": p.prompt_turns, "chosen": p.chosen, "rejected": p.rejected, "origin": p.origin,
                   "status": p.status, "action": p.action, "verdict": p.verdict}

    summary = write_exports(rows(), directory, f"preferences_{pref_set.pk}")
    sha = hashlib.sha256(Path(summary["files"]["trl"]).read_bytes()).hexdigest()
    export = services.export_record(pref_set=pref_set, directory=str(directory), summary=summary, sha256=sha,
                                    job=ctx.job, user=ctx.job.created_by)
    ctx.log(f"Exported {summary['n_pairs']} pair(s): {summary['by_origin']}; left out {summary['left_out']}.")
    return {"export_id": export.pk, **{k: v for k, v in summary.items() if k != "files"}}


# ------------------------------------------------------------------------------------- diversify


@job_handler("preferences.diversify", queue="gpu", description="Instruction diversification (SF-Med).")
def diversify_job(ctx: JobContext) -> dict:
    from .pipeline.diversify import DiversifyConfig, new_state, run_round

    run = DiversifyRun.objects.get(pk=ctx.params["run_id"])
    DiversifyRun.objects.filter(pk=run.pk).update(job=ctx.job)
    services.diversify_status_set(run=run, status=RunStatus.RUNNING)
    p = run.params
    cfg = DiversifyConfig(rounds=int(p.get("rounds", 10)), keep_oldest=int(p.get("m", 20)), keep_newest=int(p.get("n", 40)),
                          swap_every=int(p.get("k", 3)), seed=int(p.get("seed", 0)))
    if p.get("chat"):  # a registry backend, resolved when the run was launched
        backend = _registry_chat(p["chat"]["generator"][0])
    else:
        backend = _chat(p.get("base_url") or conf.chat_url(), p.get("model") or conf.chat_model())
    state = run.state or new_state(run.seeds, cfg)
    prices = conf.prices()
    if state["round"]:
        ctx.log(f"Resuming at round {state['round']}.")
    # The loop of pipeline.diversify.diversify(), with the state and that round's tokens stored
    # after every round, so a stopped run resumes at the next round.
    while state["round"] < cfg.rounds:
        usage = Usage()
        try:
            entry = run_round(state, backend, cfg, usage)
        except ItemError as exc:
            # The failed call still counts in the job's usage; the state is unchanged (round not done).
            services.diversify_state_store(run=run, state=state, usage=usage, prices=prices)
            msg = f"Stopped at round {state['round']}: the chat backend is unavailable ({exc.reason}). Resume to continue."
            services.diversify_status_set(run=run, status=RunStatus.PAUSED, error=msg)
            raise JobFailed(msg) from None
        try:
            with transaction.atomic():
                services.diversify_state_store(run=run, state=state, usage=usage, prices=prices)
                ctx.progress(done=state["round"], total=cfg.rounds, cursor={"round": state["round"]})
        except JobCancelled:
            services.diversify_status_set(run=run, status=RunStatus.PAUSED, error="Cancelled; resume to continue.")
            raise
        if entry.get("error"):
            ctx.log(f"round {entry['round']}: {entry['error']}", "warning")
    accepted = state["accepted"]
    output = None
    if run.source_id and accepted:
        output = _attach(run, accepted, cfg.seed)
    elif run.source_id:
        services.diversify_status_set(run=run, status=RunStatus.FAILED, error="No instruction passed the checks.")
        raise JobFailed("No generated instruction passed the completeness and medical-term checks.")
    services.diversify_status_set(run=run, status=RunStatus.DONE, output=output)
    return {"run_id": run.pk, "accepted": len(accepted), "output_dataset": getattr(output, "pk", None)}


def _attach(run: DiversifyRun, instructions: list[str], seed: int):
    """New dataset: the source's SFT records with a generated instruction as system prompt."""
    from medstudio.datasets.formats import RowError, normalize_row
    from medstudio.datasets.models import Dataset, Record
    from medstudio.datasets.services import dataset_create, dataset_refresh_stats, records_insert

    from .pipeline.diversify import attach_instructions

    source = run.source
    with transaction.atomic():
        # A resumed run finds the dataset its first attempt created.
        output = Dataset.objects.filter(name=run.output_name).first() or dataset_create(
            actor=run.created_by, name=run.output_name, kind=source.kind, parent=source,
            description=f"{source.name} with diversified system instructions (run #{run.pk}).",
            data={"from_diversify": run.pk})
    last = 0
    while True:
        recs = list(Record.objects.filter(dataset=source, id__gt=last).order_by("id")[:1000])
        if not recs:
            break
        contents = attach_instructions([r.content for r in recs], instructions, seed=seed + recs[0].id)
        rows = []
        for r, c in zip(recs, contents):
            raw = {k: v for k, v in c.items() if k != "meta"}
            raw.update({"id": r.external_id, "lang": r.lang, "source": r.source})
            try:
                rows.append(normalize_row(raw, source.kind))
            except RowError:
                continue
        with transaction.atomic():
            records_insert(dataset=output, rows=rows)  # idempotent: a resumed run re-inserts nothing
        last = recs[-1].id
    return dataset_refresh_stats(dataset=output)


def _url(name: str, *args) -> str:
    from django.urls import reverse
    return reverse(name, args=list(args))


def _build_links(job):
    run = BuildRun.objects.filter(pk=(job.params or {}).get("run_id")).values_list("pk", "pref_set_id").first()
    return [(gettext_noop("Open the build run"), _url("preferences:run_detail", run[0])),
            (gettext_noop("Open the preference set"), _url("preferences:set_detail", run[1]))] if run else []


def _vote_links(job):
    s = VoteRun.objects.filter(pk=(job.params or {}).get("vote_id")).values_list("pref_set_id", flat=True).first()
    return [(gettext_noop("Open the preference set and its votes"), _url("preferences:set_detail", s))] if s else []


def _set_links(job):
    s = (job.params or {}).get("set_id")
    return [(gettext_noop("Open the preference set and its exports"), _url("preferences:set_detail", s))] if s else []


def _diversify_links(job):
    r = (job.params or {}).get("run_id")
    return [(gettext_noop("Open the diversification run"), _url("preferences:diversify_detail", r))] if r else []


register_job_kind("preferences.build", label=gettext_noop("Preference pair build"), result_links=_build_links)
register_job_kind("preferences.vote", label=gettext_noop("Preference vote"), result_links=_vote_links)
register_job_kind("preferences.export", label=gettext_noop("Preference set export"), result_links=_set_links)
register_job_kind("preferences.diversify", label=gettext_noop("Instruction diversification"), result_links=_diversify_links)
