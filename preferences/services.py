"""The one write path for preferences: sets, build runs, votes, reviews, exports, diversification.

Keyword-only `entity_action` functions under transaction.atomic, each calling the audit log.
Heavy work runs in jobs (preferences/handlers.py), which store their batches through the
`*_store` functions here.
"""
from __future__ import annotations

import random
from typing import Any, Iterable

from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext

from medstudio.audit.services import audit_log

from .models import Action, BuildFailure, BuildRun, DiversifyRun, Origin, PairStatus, PreferenceExport, PreferencePair, ReviewRound, RunStatus, Verdict, VoteRun
from medstudio.handoffs.models import PreferenceSet
from .pipeline.judge import ItemError, Usage


class PreferenceError(ValueError):
    """Bad input from a curator; the message is shown as is."""


# Which dataset kinds each builder reads (the from-scores builder also reads a JSONL file).
BUILDER_KINDS = {
    Origin.OBJECTIVE: {"mcq"},
    Origin.SUBJECTIVE: {"qa", "dialogue"},
    Origin.SAMPLED: {"qa", "dialogue"},
    Origin.FROM_SCORES: {"qa", "dialogue", "document", "pair", "mcq"},
}
CHAT_BUILDERS = {Origin.SUBJECTIVE, Origin.SAMPLED}


# ----------------------------------------------------------------------------------------- sets


def preference_set_create(*, user, name: str, description: str = "") -> PreferenceSet:
    """Create an empty preference set (a platform entity: written by the platform's service)."""
    from medstudio.handoffs import services as handoffs

    try:
        return handoffs.preference_set_create(user=user, name=name, description=description)
    except handoffs.HandoffError as exc:
        raise PreferenceError(str(exc)) from exc


def _user(user):
    return user if getattr(user, "is_authenticated", False) else None


# ------------------------------------------------------------------------------- chat backends


def _backend_name(params: dict, *, settings_url: str) -> str:
    """The registry backend a chat job should use: the one the form named; else the registry's
    default, unless the form gives a URL or a stage-specific setting does (MEDSTUDIO_PREF_JUDGE_URL).
    Like medstudio.backends.resolve.chat_params, a marked default wins over the generic
    MEDSTUDIO_CHAT_URL, so what an admin marks in the UI is what runs."""
    name = str(params.get("backend") or "").strip()
    if name or params.get("base_url") or settings_url:
        return name
    from medstudio.backends.selectors import default_backend_name

    return default_backend_name()


def _resolve_chat(params: dict, *, settings_url: str, models: dict[str, list[str]]) -> dict:
    """Put the registry backend's resolved endpoints into the job params (never a key).

    models: role -> model names ("" = the backend's model). The result has params["backend"] and
    params["chat"][role] = [chat_params, ...] so the worker needs no database to build clients, and
    a later edit of the backend does not change what a launched (or resumed) job talks to.
    Without a backend the params are returned as they were (the URL / settings path).
    """
    from medstudio.backends.resolve import BackendChoiceError, chat_params

    name = _backend_name(params, settings_url=settings_url)
    if not name:
        return params
    try:
        # chat_params refuses a backend together with a base URL; one server, several models.
        chat = {role: [chat_params(backend=name, base_url=params.get("base_url") or "", model=m or "") for m in names]
                for role, names in models.items()}
    except BackendChoiceError as exc:
        raise PreferenceError(str(exc)) from None
    return {**params, "backend": name, "chat": chat}


# --------------------------------------------------------------------------------------- builds


def _check_build(builder: str, dataset, selection_id, path: str, params: dict) -> None:
    if builder not in Origin.values:
        raise PreferenceError(gettext("Unknown builder %(builder)s; use one of %(items)s.") % {"builder": repr(builder), "items": ', '.join(Origin.values)})
    sources = [x for x in (dataset, selection_id, path) if x]
    if len(sources) != 1:
        raise PreferenceError(gettext("Give exactly one source: a dataset, a selection or a file."))
    if path and builder != Origin.FROM_SCORES:
        raise PreferenceError(gettext("Only the from-scores builder reads a file; import other data as a dataset."))
    if dataset is not None and dataset.kind not in BUILDER_KINDS[builder]:
        raise PreferenceError(
            f"The {builder} builder needs a {' or '.join(sorted(BUILDER_KINDS[builder]))} dataset; "
            f"{dataset.name} holds {dataset.kind} records."
        )
    if path:
        from pathlib import Path

        if not Path(path).is_file():
            raise PreferenceError(gettext("No such file: %(path)s") % {"path": path})
    if builder == Origin.FROM_SCORES:
        try:
            if float(params.get("min_gap", 1.0)) < 0:
                raise PreferenceError(gettext("The minimum score gap cannot be negative."))
        except (TypeError, ValueError):
            raise PreferenceError(gettext("The minimum score gap must be a number.")) from None
    if builder == Origin.SAMPLED:
        n = int(params.get("n", 4))
        if n < 2 or n > 16:
            raise PreferenceError(gettext("Sampled pairs need between 2 and 16 answers per prompt."))
        if not params.get("judges"):
            raise PreferenceError(gettext("Sampled pairs need at least one judge model."))
    if builder in CHAT_BUILDERS:
        from . import conf

        if not (params.get("chat") or params.get("base_url") or conf.chat_url()):
            raise PreferenceError(gettext("No chat server configured: pick a model backend, set MEDSTUDIO_CHAT_URL or give a base URL."))


@transaction.atomic
def build_start(
    *, user, pref_set: PreferenceSet, builder: str, dataset=None, selection_id: int | None = None, path: str = "",
    params: dict | None = None, enqueue: bool = True,
) -> BuildRun:
    """Create a build run and launch its job (pairs land in `pref_set`)."""
    from medstudio.jobs.services import job_create

    params = dict(params or {})
    if builder in CHAT_BUILDERS:
        from . import conf

        judges = [params.get("judge") or ""] if builder == Origin.SUBJECTIVE else list(params.get("judges") or [""])
        params = _resolve_chat(params, settings_url="",
                               models={"generator": [params.get("generator") or ""], "judges": judges})
        if params.get("chat") and builder == Origin.SAMPLED:
            # With a backend an empty judge list means its own model; name it for the run page.
            params["judges"] = [j["model"] for j in params["chat"]["judges"]]
    _check_build(builder, dataset, selection_id, path, params)
    run = BuildRun.objects.create(pref_set=pref_set, builder=builder, dataset=dataset, selection_id=selection_id,
                                  path=path, params=params, created_by=_user(user))
    audit_log(actor=user, action="preferences.build_start", target=run,
              data={"set": pref_set.pk, "builder": builder, "dataset": getattr(dataset, "pk", None),
                    "selection": selection_id, "path": path, "params": _public(params)})
    job = job_create(kind="preferences.build", params={"run_id": run.pk}, user=user,
                     queue="gpu" if builder in CHAT_BUILDERS else "cpu", enqueue=enqueue)
    BuildRun.objects.filter(pk=run.pk, job__isnull=True).update(job=job)
    run.refresh_from_db()
    return run


@transaction.atomic
def build_resume(*, user, run: BuildRun, enqueue: bool = True) -> BuildRun:
    """Start a new job for a stopped run; it continues after the last stored item."""
    from medstudio.jobs.services import job_create

    run = BuildRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in (RunStatus.PAUSED, RunStatus.FAILED):
        raise PreferenceError(gettext("Only a stopped run can be resumed (this one is %(get_status_display)s).") % {"get_status_display": run.get_status_display().lower()})
    BuildRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED, error="")
    audit_log(actor=user, action="preferences.build_resume", target=run, data={"after": run.after})
    job = job_create(kind="preferences.build", params={"run_id": run.pk}, user=user,
                     queue="gpu" if run.builder in CHAT_BUILDERS else "cpu", enqueue=enqueue)
    BuildRun.objects.filter(pk=run.pk).update(job=job)
    run.refresh_from_db()
    return run


def _public(params: dict) -> dict:
    return {k: ("***" if "key" in k.lower() else v) for k, v in params.items()}


@transaction.atomic
def build_batch_store(*, run: BuildRun, results: list[tuple[int, Any, Any]], usage: Usage, after: int,
                      prices: dict | None = None) -> BuildRun:
    """Store one batch: pairs and per-item failures, counters, usage; move the resume point.

    results: (item_key, record_id or None, list[Pair] | ItemError). Unique (run, item, n) makes a
    re-stored batch (a crash between commit and ack) a no-op instead of a duplicate.
    """
    pairs, failures = [], []
    n_pairs = n_ties = n_failed = 0
    for key, record_id, res in results:
        if isinstance(res, ItemError):
            failures.append(BuildFailure(run=run, item_key=key, record_id=record_id, reason=res.reason[:2000],
                                         raw=(res.raw or "")[:5000]))
            n_failed += 1
            continue
        for i, p in enumerate(res):
            pairs.append(PreferencePair(
                pref_set_id=run.pref_set_id, run=run, item_key=key, n=i, record_id=record_id, origin=p.origin,
                prompt_turns=p.prompt_turns, chosen=p.chosen, rejected=p.rejected, status=p.status,
                chosen_score=p.chosen_score, rejected_score=p.rejected_score,
                provenance={**p.provenance, "source_id": p.record_id if record_id is None else record_id},
            ))
            n_ties += p.status == PairStatus.TIE
            n_pairs += p.status != PairStatus.TIE
    PreferencePair.objects.bulk_create(pairs, ignore_conflicts=True)
    BuildFailure.objects.bulk_create(failures, ignore_conflicts=True)
    total = Usage.from_dict(BuildRun.objects.filter(pk=run.pk).values_list("usage", flat=True).first())
    total.merge(usage)
    BuildRun.objects.filter(pk=run.pk).update(
        after=after, n_done=F("n_done") + len(results), n_pairs=F("n_pairs") + n_pairs, n_ties=F("n_ties") + n_ties,
        n_failed=F("n_failed") + n_failed, usage=total.to_dict(), cost_usd=total.cost(prices),
    )
    run.refresh_from_db()
    return run


@transaction.atomic
def build_status_set(*, run: BuildRun, status: str, error: str = "") -> BuildRun:
    """Mark a run running / paused (backend down) / done / failed."""
    BuildRun.objects.filter(pk=run.pk).update(status=status, error=error[:5000])
    run.refresh_from_db()
    if status in (RunStatus.DONE, RunStatus.PAUSED, RunStatus.FAILED):
        audit_log(actor=run.created_by, action=f"preferences.build_{status}", target=run,
                  data={"pairs": run.n_pairs, "ties": run.n_ties, "failed": run.n_failed, "error": error[:500],
                        "usage": {k: v for k, v in run.usage.items() if k != "by_model"}, "cost_usd": run.cost_usd})
    return run


# ---------------------------------------------------------------------------------------- votes


@transaction.atomic
def vote_start(*, user, pref_set: PreferenceSet, method: str, params: dict | None = None, flip_frac: float = 0.1,
               drop_frac: float = 0.1, enqueue: bool = True) -> VoteRun:
    """Launch reward-model (or judge) voting over the set's ordered pairs."""
    from medstudio.jobs.services import job_create

    params = dict(params or {})
    if method not in dict(VoteRun.METHODS):
        raise PreferenceError(gettext("Unknown voting method %(method)s.") % {"method": repr(method)})
    _check_fracs(flip_frac, drop_frac)
    n = PreferencePair.objects.filter(pref_set=pref_set, status=PairStatus.OK).count()
    if n < 2:
        raise PreferenceError(gettext("Voting needs at least two ordered pairs in the set."))
    if method == "reward_models" and int(params.get("k", 1)) < 1:
        raise PreferenceError(gettext("K must be at least 1."))
    if method == "judges":
        from . import conf

        params = _resolve_chat(params, settings_url=conf.pref_judge_url(), models={"judges": list(params.get("judges") or [""])})
        if params.get("chat"):
            params["judges"] = [j["model"] for j in params["chat"]["judges"]]
    if method == "judges" and not params.get("judges"):
        raise PreferenceError(gettext("Judge voting needs at least one judge model."))
    vote = VoteRun.objects.create(pref_set=pref_set, method=method, params=params, flip_frac=flip_frac,
                                  drop_frac=drop_frac, created_by=_user(user))
    audit_log(actor=user, action="preferences.vote_start", target=vote,
              data={"set": pref_set.pk, "method": method, "params": _public(params), "flip": flip_frac, "drop": drop_frac})
    job = job_create(kind="preferences.vote", params={"vote_id": vote.pk}, user=user,
                     queue="training" if method == "reward_models" else "gpu", enqueue=enqueue)
    VoteRun.objects.filter(pk=vote.pk, job__isnull=True).update(job=job)
    vote.refresh_from_db()
    return vote


def _check_fracs(flip_frac: float, drop_frac: float) -> None:
    if not (0 <= flip_frac <= 1 and 0 <= drop_frac <= 1 and flip_frac + drop_frac <= 1):
        raise PreferenceError(gettext("Flip and drop fractions must lie between 0 and 1 and sum to at most 1."))


@transaction.atomic
def vote_details_store(*, vote: VoteRun, details: dict[int, dict], state: dict | None = None, usage: Usage | None = None,
                       prices: dict | None = None) -> None:
    """Store per-voter scores of some pairs (pair id -> {"chosen": [...], "rejected": [...]})."""
    pairs = list(PreferencePair.objects.filter(pk__in=list(details)))
    for p in pairs:
        p.vote_detail = details[p.pk]
        p.vote = vote
    PreferencePair.objects.bulk_update(pairs, ["vote_detail", "vote"], batch_size=500)
    fields: dict[str, Any] = {}
    if state is not None:
        fields["state"] = state
    if usage is not None:
        total = Usage.from_dict(VoteRun.objects.filter(pk=vote.pk).values_list("usage", flat=True).first())
        total.merge(usage)
        fields.update(usage=total.to_dict(), cost_usd=total.cost(prices))
    if fields:
        VoteRun.objects.filter(pk=vote.pk).update(**fields)


@transaction.atomic
def vote_apply(*, user, vote: VoteRun, flip_frac: float | None = None, drop_frac: float | None = None) -> VoteRun:
    """(Re)compute strengths from the stored voter scores and mark each pair keep / flip / drop.

    Editing the fractions re-runs only this step; the voters are not retrained.
    """
    from .pipeline.voting import histogram, preference_strengths, select_by_strength

    flip = vote.flip_frac if flip_frac is None else float(flip_frac)
    drop = vote.drop_frac if drop_frac is None else float(drop_frac)
    _check_fracs(flip, drop)
    pairs = list(PreferencePair.objects.filter(vote=vote).order_by("id").only("id", "vote_detail"))
    if not pairs:
        raise PreferenceError(gettext("This vote has no scored pairs yet."))
    k = max(len(p.vote_detail.get("chosen", [])) for p in pairs)
    pad = lambda xs: list(xs) + [None] * (k - len(xs))  # noqa: E731
    chosen = [[pad(p.vote_detail.get("chosen", []))[i] for p in pairs] for i in range(k)]
    rejected = [[pad(p.vote_detail.get("rejected", []))[i] for p in pairs] for i in range(k)]
    strengths = preference_strengths(chosen, rejected)
    actions = select_by_strength(strengths, flip_frac=flip, drop_frac=drop)
    for p, s, a in zip(pairs, strengths, actions):
        p.strength, p.action = s, a
    PreferencePair.objects.bulk_update(pairs, ["strength", "action"], batch_size=500)
    counts = {a: actions.count(a) for a in (Action.KEEP, Action.FLIP, Action.DROP, Action.UNSCORED)}
    summary = {"n": len(pairs), "k": k, "counts": counts, "histogram": histogram(strengths, bins=24)}
    VoteRun.objects.filter(pk=vote.pk).update(flip_frac=flip, drop_frac=drop, summary=summary, status=RunStatus.DONE)
    audit_log(actor=user, action="preferences.vote_apply", target=vote, data={"flip": flip, "drop": drop, "counts": counts})
    vote.refresh_from_db()
    return vote


@transaction.atomic
def vote_status_set(*, vote: VoteRun, status: str, error: str = "") -> VoteRun:
    VoteRun.objects.filter(pk=vote.pk).update(status=status, error=error[:5000])
    vote.refresh_from_db()
    if status in (RunStatus.PAUSED, RunStatus.FAILED):
        audit_log(actor=vote.created_by, action=f"preferences.vote_{status}", target=vote, data={"error": error[:500]})
    return vote


@transaction.atomic
def vote_resume(*, user, vote: VoteRun) -> VoteRun:
    from medstudio.jobs.services import job_create

    if vote.status not in (RunStatus.PAUSED, RunStatus.FAILED):
        raise PreferenceError(gettext("Only a stopped vote can be resumed."))
    VoteRun.objects.filter(pk=vote.pk).update(status=RunStatus.QUEUED, error="")
    audit_log(actor=user, action="preferences.vote_resume", target=vote)
    job = job_create(kind="preferences.vote", params={"vote_id": vote.pk}, user=user,
                     queue="training" if vote.method == "reward_models" else "gpu")
    VoteRun.objects.filter(pk=vote.pk).update(job=job)
    vote.refresh_from_db()
    return vote


# --------------------------------------------------------------------------------------- review


@transaction.atomic
def review_send(*, user, pref_set: PreferenceSet, n: int | None = None, seed: int = 0, origin: str = "",
                include_ties: bool = True, annotators_per_item: int = 1, assignees: Iterable = ()) -> ReviewRound:
    """Send pairs to a clinician preference queue (annotation engine): random sample, random A/B order.

    The pairs become records of a new pair dataset (external id "pair-<id>") that the queue serves.
    """
    from medstudio.annotation import services as ann
    from medstudio.datasets.formats import RowError, normalize_row
    from medstudio.datasets.models import Dataset, Kind
    from medstudio.datasets.services import dataset_create, dataset_refresh_stats, records_insert

    qs = PreferencePair.objects.filter(pref_set=pref_set)
    if origin:
        qs = qs.filter(origin=origin)
    if not include_ties:
        qs = qs.filter(status=PairStatus.OK)
    ids = list(qs.values_list("id", flat=True))
    if not ids:
        raise PreferenceError(gettext("No pairs to review (check the origin filter)."))
    if n:
        ids = sorted(random.Random(seed).sample(ids, min(int(n), len(ids))))
    k = ReviewRound.objects.filter(pref_set=pref_set).count() + 1
    name = f"{pref_set.name} · review {k}"
    if Dataset.objects.filter(name=name).exists():
        raise PreferenceError(gettext("A dataset named %(name)s already exists.") % {"name": repr(name)})
    dataset = dataset_create(actor=user, name=name, kind=Kind.PAIR,
                             description=f"Pairs of preference set {pref_set.name} sent to clinician review.",
                             data={"from_preference_set": pref_set.pk})
    rows = []
    for p in PreferencePair.objects.filter(pk__in=ids).select_related("record").order_by("id"):
        raw = {"id": f"pair-{p.pk}", "prompt_turns": p.prompt_turns, "chosen": p.chosen, "rejected": p.rejected,
               "lang": getattr(p.record, "lang", None) or None, "origin": p.origin}
        if not raw["lang"]:
            raw.pop("lang")
        try:
            rows.append(normalize_row(raw, "pair"))
        except RowError as exc:
            raise PreferenceError(gettext("Pair #%(p_id)s cannot be reviewed: %(exc)s") % {"p_id": p.pk, "exc": exc}) from None
    records_insert(dataset=dataset, rows=rows)
    dataset_refresh_stats(dataset=dataset)
    # A review round is a helper dataset: listed under the dataset the pairs' prompts came from.
    from collections import Counter

    from medstudio.datasets.helpers import dataset_mark_helper

    owners = Counter(PreferencePair.objects.filter(pk__in=ids, record__isnull=False).values_list("record__dataset_id", flat=True))
    owner_id = owners.most_common(1)[0][0] if owners else (
        BuildRun.objects.filter(pref_set=pref_set, dataset__isnull=False).values_list("dataset_id", flat=True).first())
    dataset_mark_helper(dataset=dataset, role="preference_review", owner=Dataset.objects.filter(pk=owner_id).first(), actor=user)
    question = ann.question_create(
        user=user, name=f"Preference review: {pref_set.name}", kind="preference",
        instructions="Read both answers. Rate fluency, relevance, completeness and proficiency, then pick the "
                     "better answer, or tie if neither is better.")
    try:
        queue = ann.queue_create(user=user, name=name, dataset=dataset, question=question,
                                 annotators_per_item=annotators_per_item, assignees=assignees, method="all", seed=seed)
    except ann.AnnotationError as exc:
        raise PreferenceError(str(exc)) from None
    review = ReviewRound.objects.create(pref_set=pref_set, dataset=dataset, queue=queue, n_pairs=len(rows),
                                        created_by=_user(user))
    audit_log(actor=user, action="preferences.review_send", target=review,
              data={"set": pref_set.pk, "queue": queue.pk, "pairs": len(rows), "seed": seed, "origin": origin})
    return review


@transaction.atomic
def review_sync(*, user, review: ReviewRound) -> dict[str, int]:
    """Copy clinician verdicts onto the pairs: an adjudication wins, else a strict majority of
    clinicians' winners; an even split is left unresolved (shown, not guessed)."""
    from medstudio.annotation.models import Adjudication, Label, QueueItem

    if review.queue_id is None:
        raise PreferenceError(gettext("The review queue was deleted."))
    items = {it.pk: it for it in QueueItem.objects.filter(queue_id=review.queue_id).select_related("record")}
    votes: dict[int, list[str]] = {}
    for item_id, values, annotator in Label.objects.filter(queue_id=review.queue_id, source="human").values_list(
            "item_id", "values", "annotator"):
        w = (values or {}).get("winner")
        if w in (Verdict.CHOSEN, Verdict.REJECTED, Verdict.TIE):
            votes.setdefault(item_id, []).append(w)
    adjudicated = dict(Adjudication.objects.filter(item__queue_id=review.queue_id).values_list("item_id", "value"))
    updates: dict[int, tuple[str, dict]] = {}
    unresolved = 0
    for item_id, item in items.items():
        ext = item.record.external_id
        if not ext.startswith("pair-"):
            continue
        pair_id = int(ext[5:])
        ws = votes.get(item_id, [])
        if item_id in adjudicated and adjudicated[item_id] in Verdict.values and adjudicated[item_id]:
            updates[pair_id] = (adjudicated[item_id], {"labels": ws, "adjudicated": True, "queue": review.queue_id})
            continue
        if not ws:
            continue
        top = max(set(ws), key=ws.count)
        if ws.count(top) * 2 > len(ws):
            updates[pair_id] = (top, {"labels": ws, "queue": review.queue_id})
        else:
            unresolved += 1
    pairs = list(PreferencePair.objects.filter(pk__in=list(updates), pref_set=review.pref_set))
    for p in pairs:
        p.verdict, p.verdict_detail = updates[p.pk]
    PreferencePair.objects.bulk_update(pairs, ["verdict", "verdict_detail"], batch_size=500)
    out = {"verdicts": len(pairs), "unresolved": unresolved, "items": len(items)}
    audit_log(actor=user, action="preferences.review_sync", target=review, data=out)
    return out


# --------------------------------------------------------------------------------------- export


@transaction.atomic
def export_start(*, user, pref_set: PreferenceSet):
    """Launch an export job (TRL conversational JSONL + LLaMA-Factory)."""
    from medstudio.jobs.services import job_create

    if not PreferencePair.objects.filter(pref_set=pref_set).exists():
        raise PreferenceError(gettext("The set has no pairs to export."))
    audit_log(actor=user, action="preferences.export_start", target=pref_set)
    return job_create(kind="preferences.export", params={"set_id": pref_set.pk}, user=user, queue="cpu")


@transaction.atomic
def export_record(*, pref_set: PreferenceSet, directory: str, summary: dict, sha256: str, job=None, user=None) -> PreferenceExport:
    export = PreferenceExport.objects.create(pref_set=pref_set, directory=directory, files=summary["files"],
                                             counts={k: v for k, v in summary.items() if k != "files"}, sha256=sha256,
                                             job=job, created_by=_user(user))
    audit_log(actor=user, action="preferences.export", target=export,
              data={"set": pref_set.pk, "n_pairs": summary["n_pairs"], "by_origin": summary["by_origin"], "sha256": sha256})
    return export


# ---------------------------------------------------------------------------------- diversify


@transaction.atomic
def diversify_start(*, user, seeds: list[str], output_name: str, source=None, params: dict | None = None) -> DiversifyRun:
    """Launch instruction diversification; with a source dataset, its records get the new instructions
    as system prompts in a new dataset `output_name`."""
    from medstudio.datasets.models import Dataset
    from medstudio.jobs.services import job_create

    from . import conf

    seeds = [s.strip() for s in seeds if s and s.strip()]
    if len(set(seeds)) < 2:
        raise PreferenceError(gettext("Give at least two distinct seed instructions, one per line."))
    output_name = (output_name or "").strip()
    if source is not None:
        if source.kind not in ("qa", "dialogue"):
            raise PreferenceError(gettext("System prompts go on SFT records (qa or dialogue), not %(kind)s.") % {"kind": source.kind})
        if not output_name:
            raise PreferenceError(gettext("Name the new dataset."))
        if Dataset.objects.filter(name=output_name).exists():
            raise PreferenceError(gettext("A dataset named %(output_name)s already exists.") % {"output_name": repr(output_name)})
    params = dict(params or {})
    params = _resolve_chat(params, settings_url="", models={"generator": [params.get("model") or ""]})
    if params.get("chat"):
        params["model"] = params["chat"]["generator"][0]["model"]
    if not (params.get("chat") or params.get("base_url") or conf.chat_url()):
        raise PreferenceError(gettext("No chat server configured: pick a model backend, set MEDSTUDIO_CHAT_URL or give a base URL."))
    run = DiversifyRun.objects.create(seeds=seeds, params=params, source=source, output_name=output_name,
                                      created_by=_user(user))
    audit_log(actor=user, action="preferences.diversify_start", target=run,
              data={"seeds": len(seeds), "source": getattr(source, "pk", None), "params": _public(params)})
    job = job_create(kind="preferences.diversify", params={"run_id": run.pk}, user=user, queue="gpu")
    DiversifyRun.objects.filter(pk=run.pk, job__isnull=True).update(job=job)
    run.refresh_from_db()
    return run


@transaction.atomic
def diversify_state_store(*, run: DiversifyRun, state: dict, usage: Usage, prices: dict | None = None) -> None:
    total = Usage.from_dict(DiversifyRun.objects.filter(pk=run.pk).values_list("usage", flat=True).first())
    total.merge(usage)
    DiversifyRun.objects.filter(pk=run.pk).update(state=state, usage=total.to_dict(), cost_usd=total.cost(prices),
                                                  status=RunStatus.RUNNING)


@transaction.atomic
def diversify_status_set(*, run: DiversifyRun, status: str, error: str = "", output=None) -> DiversifyRun:
    fields: dict[str, Any] = {"status": status, "error": error[:5000]}
    if output is not None:
        fields["output"] = output
    DiversifyRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    if status != RunStatus.RUNNING:
        audit_log(actor=run.created_by, action=f"preferences.diversify_{status}", target=run,
                  data={"accepted": len((run.state or {}).get("accepted", [])), "error": error[:500],
                        "output": getattr(output, "pk", None)})
    return run


@transaction.atomic
def diversify_resume(*, user, run: DiversifyRun) -> DiversifyRun:
    from medstudio.jobs.services import job_create

    if run.status not in (RunStatus.PAUSED, RunStatus.FAILED):
        raise PreferenceError(gettext("Only a stopped run can be resumed."))
    DiversifyRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED, error="")
    audit_log(actor=user, action="preferences.diversify_resume", target=run)
    job = job_create(kind="preferences.diversify", params={"run_id": run.pk}, user=user, queue="gpu")
    DiversifyRun.objects.filter(pk=run.pk).update(job=job)
    run.refresh_from_db()
    return run
