"""Importing this module registers curation's job handlers and scorers.

Part 1 blocks (rules, pii, minhash, decontam) and the PII redaction job. The computation lives in
curation/pipeline/ (plain Python); here we only load rows, call it and store the results.
"""
from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy, gettext_noop

import curation.scoring  # noqa: F401  (registers the curation.score job handler)
from curation.scoring import scores_write
from curation.scorer_params import DECONTAM_PARAMS, MINHASH_PARAMS, PII_PARAMS, RULE_PARAMS
from medstudio.handoffs.scorers import register_scorer
from curation.services import duplicate_clusters_write, scorer_run_summary_set
from medstudio.jobs.context import JobContext, JobFailed
from medstudio.jobs.registry import job_handler, register_job_kind
from medstudio.jobs.errors import failure, known_failure

# Failures shown translated on the job page (medstudio/jobs/errors.py reads the params back).
NO_DATASET = known_failure(gettext_noop("No dataset named %(names)s."))
NO_BENCHMARK = known_failure(gettext_noop("No benchmark dataset to check against: flag one as benchmark on its dataset page, "
                                          "or pass benchmarks=[names]."))
SOURCE_GONE = known_failure(gettext_noop("The source or the target dataset was deleted."))


BATCH = 1000


def _block_params(params: dict) -> dict:
    # "version" is the framework's, not a block setting
    return {k: v for k, v in (params or {}).items() if k != "version"}


# --------------------------------------------------------------------------- rules


def _rules_factory(params: dict):
    from curation.pipeline.rules import RuleConfig, RulesScorer

    return RulesScorer(RuleConfig.from_params(_block_params(params)))


# --------------------------------------------------------------------------- pii


def _pii_factory(params: dict):
    from curation.pipeline.pii import PII_TYPES, PiiScorer

    p = _block_params(params)
    unknown = set(p) - {"types", "max_hits", "phone_region"}
    if unknown:
        raise ValueError(f"unknown pii settings {sorted(unknown)}; known: types, max_hits, phone_region")
    types = p.get("types", list(PII_TYPES))
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    return PiiScorer(types=types, max_hits=int(p.get("max_hits", 0)), phone_region=str(p.get("phone_region", "CN")))


# --------------------------------------------------------------------------- minhash

_MINHASH_OWN = {"datasets", "per_source", "policy", "keep_scorer_run"}


def _minhash_corpus(ctx: JobContext, run, records_qs) -> dict:
    """Near-duplicate clusters over the run's dataset (+ params.datasets), stored as clusters + scores.

    Sketching is recomputed on resume (it is cheap and deterministic); what was written is not:
    clusters are written once, then scores in batches with the cursor in the same transaction.
    """
    import numpy as np

    from curation.models import DuplicateCluster
    from medstudio.handoffs.models import Score, ScorerRun
    from curation.pipeline.base import ScoreResult
    from curation.pipeline.minhash import KEEP_POLICIES, MinHashConfig, NearDupFinder, shingle_sets, sketch
    from medstudio.datasets.models import Dataset, Record

    p = _block_params(run.params)
    try:
        cfg = MinHashConfig.from_params({k: v for k, v in p.items() if k not in _MINHASH_OWN})
    except (TypeError, ValueError) as exc:
        raise JobFailed(f"Bad MinHash settings: {exc}") from exc
    policy = p.get("policy", "first")
    if policy not in KEEP_POLICIES:
        raise JobFailed(f"Unknown keep policy {policy!r}; choose one of {', '.join(KEEP_POLICIES)}.")
    names = p.get("datasets") or []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    extra = list(Dataset.objects.filter(name__in=names).exclude(pk=run.dataset_id))
    missing = set(names) - {d.name for d in extra} - {run.dataset.name}
    if missing:
        raise JobFailed(failure(NO_DATASET, names=", ".join(sorted(missing))))
    datasets = [run.dataset] + extra
    ds_name = {d.pk: d.name for d in datasets}
    per_source = bool(p.get("per_source", False))

    score_of: dict | None = None
    if policy == "score":
        ref = p.get("keep_scorer_run")
        src_run = ScorerRun.objects.filter(pk=ref).first() if str(ref or "").isdigit() else None
        if src_run is None:
            raise JobFailed("Policy 'score' needs keep_scorer_run = the id of a finished scorer run.")

    qs = Record.objects.filter(dataset__in=datasets).order_by("id")
    total = qs.count()
    ctx.log(f"MinHash over {total} records of {', '.join(ds_name.values())}: {cfg.num_perm} perms, "
            f"{cfg.bands} bands x {cfg.rows} rows, threshold {cfg.threshold}, policy {policy}.")
    ids: list[int] = []
    sources: list[str] = []
    lengths: list[int] = []
    sig_chunks = []
    after = 0
    while True:
        batch = list(qs.filter(id__gt=after).values_list("id", "text", "dataset_id", "source")[:BATCH])
        if not batch:
            break
        sig, counts = sketch([b[1] for b in batch], cfg)
        sig_chunks.append(sig)
        for (rid, _t, dsid, src), c in zip(batch, counts):
            ids.append(rid)
            lengths.append(int(c))
            sources.append(f"{ds_name[dsid]}/{src}" if per_source else ds_name[dsid])
        after = batch[-1][0]
        ctx.progress(total=total, done=len(ids) // 2)  # sketching = first half of the bar
    if not ids:
        return {"records": 0, "clusters": 0}
    sig = np.vstack(sig_chunks)
    index_of = {rid: i for i, rid in enumerate(ids)}
    if policy == "score":
        score_of = {index_of[rid]: v for rid, v in
                    Score.objects.filter(run=src_run, record_id__in=ids).values_list("record_id", "value")}

    def grams_of(indices: list[int]) -> dict[int, "np.ndarray"]:
        texts = dict(Record.objects.filter(id__in=[ids[i] for i in indices]).values_list("id", "text"))
        gs = shingle_sets([texts[ids[i]] for i in indices], cfg)
        return dict(zip(indices, gs))

    multi_source = len(set(sources)) > 1
    result = NearDupFinder(cfg).dedup(sig, grams_of, sources=sources if multi_source else None, policy=policy,
                                      lengths=lengths, scores=score_of)
    clusters = result.clusters()
    ctx.log(f"{result.n_candidates} candidate pairs, {len(result.pairs)} verified, {len(clusters)} clusters, "
            f"{len(result.dropped())} records dropped.")

    cursor = ctx.cursor if isinstance(ctx.cursor, dict) else {}
    if not cursor.get("clusters_written"):
        with transaction.atomic():
            best: dict[int, float] = {}
            for (a, _b), sim in result.pairs.items():
                cid = result.decisions[a].cluster
                best[cid] = max(best.get(cid, 0.0), sim)
            duplicate_clusters_write(run=run, clusters=[
                {"keeper_id": ids[cid], "member_ids": [ids[cid]] + [ids[m] for m in members if m != cid],
                 "stage": ("dataset" if not multi_source
                           else "source" if len({sources[m] for m in members}) == 1 else "merged"),
                 "max_similarity": round(best.get(cid, 0.0), 4)}
                for cid, members in clusters.items()])
            cursor = {"clusters_written": True, "after": 0}
            ctx.progress(cursor=cursor)
    cluster_pk = dict(DuplicateCluster.objects.filter(run=run).values_list("keeper_id", "pk"))
    start = int(cursor.get("after", 0))
    for lo in range(start, len(ids), BATCH):
        rows = []
        for i in range(lo, min(lo + BATCH, len(ids))):
            d = result.decisions.get(i)
            if d is None:
                rows.append((ids[i], ScoreResult(value=0.0, keep=True, detail={})))
                continue
            # "dataset": one source only, so there are no per-source and merged stages
            detail = {"cluster": cluster_pk.get(ids[d.cluster]), "stage": d.stage if multi_source else "dataset",
                      "duplicate_of": ids[d.duplicate_of] if d.duplicate_of is not None else None}
            rows.append((ids[i], ScoreResult(value=round(d.similarity, 4), keep=d.keep,
                                             reason="" if d.keep else "near_duplicate", detail=detail)))
        with transaction.atomic():
            scores_write(run=run, rows=rows)
            # sketching filled the first half; writing fills the rest and ends at exactly `total`
            written = lo + len(rows)
            ctx.progress(done=total if written >= len(ids) else total // 2 + written * (total - total // 2) // len(ids), cursor={"clusters_written": True, "after": lo + len(rows)})
    summary = {"records": len(ids), "clusters": len(clusters), "dropped": len(result.dropped()),
               "candidate_pairs": result.n_candidates, "verified_pairs": len(result.pairs),
               "datasets": list(ds_name.values()), "policy": policy, "per_source": per_source,
               "config": {"num_perm": cfg.num_perm, "bands": cfg.bands, "rows": cfg.rows, "threshold": cfg.threshold,
                          "ngram_zh": cfg.ngram_zh, "ngram_en": cfg.ngram_en, "verify": cfg.verify}}
    scorer_run_summary_set(run=run, summary=summary)
    return summary


# --------------------------------------------------------------------------- decontam


def _decontam_corpus(ctx: JobContext, run, records_qs) -> dict:
    """Index every benchmark dataset's items, then scan the run's records in resumable batches."""
    from medstudio.handoffs.models import ScorerRun
    from curation.pipeline.decontam import BenchmarkIndex, DecontamConfig, DecontamScorer
    from curation.scoring import benchmark_datasets, record_view
    from medstudio.datasets.models import Record

    p = _block_params(run.params)
    unknown = set(p) - set(DecontamConfig.__dataclass_fields__) - {"benchmarks"}
    if unknown:
        raise JobFailed(f"Unknown decontam settings {sorted(unknown)}.")
    try:
        cfg = DecontamConfig.from_params(p)
    except (TypeError, ValueError) as exc:
        raise JobFailed(f"Bad decontam settings: {exc}") from exc
    benches, missing = benchmark_datasets(p.get("benchmarks"), exclude_pk=run.dataset_id)
    if missing:
        raise JobFailed(failure(NO_DATASET, names=", ".join(sorted(missing))))
    if not benches:
        raise JobFailed(failure(NO_BENCHMARK))
    index = BenchmarkIndex(cfg)
    for b in benches:
        for rid, ext, content in Record.objects.filter(dataset=b).values_list("id", "external_id", "content").iterator(chunk_size=2000):
            index.add_record({"dataset": b.name, "dataset_id": b.pk, "record_id": rid, "external_id": ext}, content, b.kind)
    ctx.log(f"Indexed {index.n_items} items of {', '.join(b.name for b in benches)} "
            f"({cfg.ngram_en}-word / {cfg.ngram_zh}-character n-grams).")
    scorer = DecontamScorer(index)
    kind = run.dataset.kind
    after = (ctx.cursor or {}).get("after_id", 0)
    total = records_qs.count()
    done = records_qs.filter(id__lte=after).count() if after else 0
    ctx.progress(total=total, done=done)
    while True:
        batch = list(records_qs.filter(id__gt=after)[:BATCH])
        if not batch:
            break
        results = scorer.score_batch([record_view(r, kind) for r in batch])
        after = batch[-1].pk
        done += len(batch)
        with transaction.atomic():
            scores_write(run=run, rows=[(r.pk, res) for r, res in zip(batch, results)])
            ctx.progress(done=done, cursor={"after_id": after})
    with transaction.atomic():
        # Shards finish in any order: lock the run so the last writer counts every committed batch
        # of every shard, and the summary shows run-wide figures, not this shard's.
        run = ScorerRun.objects.select_for_update().get(pk=run.pk)
        summary = {"benchmarks": [b.name for b in benches], "benchmark_items": index.n_items,
                   "contaminated": run.scores.filter(keep=False).count(), "records": run.scores.count(),
                   "config": {"ngram_en": cfg.ngram_en, "ngram_zh": cfg.ngram_zh, "min_item_tokens": cfg.min_item_tokens}}
        scorer_run_summary_set(run=run, summary=summary)
    return {**summary, "shard_records": total}


# --------------------------------------------------------------------------- redaction


@job_handler("curation.pii_redact", queue="cpu", description="Write a PII-redacted copy of a dataset as a new dataset.")
def pii_redact_job(ctx: JobContext) -> dict:
    from curation.pipeline.pii import redact_content
    from medstudio.datasets.formats import NormalizedRecord, flatten_text
    from medstudio.datasets.models import Dataset, Record
    from medstudio.datasets.services import dataset_refresh_stats, records_insert
    from medstudio.datasets.text import content_hash, count_tokens

    p = ctx.params
    source = Dataset.objects.filter(pk=p["dataset_id"]).first()
    target = Dataset.objects.filter(pk=p["target_id"]).first()
    if source is None or target is None:
        raise JobFailed(failure(SOURCE_GONE))
    types = p.get("types") or None
    cursor = ctx.cursor or {"after_id": 0, "counts": {}, "changed": 0}
    after, counts, changed = cursor["after_id"], dict(cursor["counts"]), cursor["changed"]
    qs = Record.objects.filter(dataset=source).order_by("id")
    total = qs.count()
    done = qs.filter(id__lte=after).count() if after else 0
    while True:
        batch = list(qs.filter(id__gt=after)[:BATCH])
        if not batch:
            break
        rows = []
        for r in batch:
            content, c = redact_content(r.content, types) if types else redact_content(r.content)
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            changed += bool(c)
            text = flatten_text(source.kind, content)
            rows.append(NormalizedRecord(external_id=r.external_id, lang=r.lang, source=r.source, subset=r.subset,
                                         content=content, text=text, n_tokens=count_tokens(text),
                                         text_hash=content_hash(content)))
        after = batch[-1].pk
        done += len(batch)
        with transaction.atomic():
            records_insert(dataset=target, rows=rows)
            ctx.progress(done=done, total=total, cursor={"after_id": after, "counts": counts, "changed": changed})
    dataset_refresh_stats(dataset=target)
    ctx.log(f"Redacted {sum(counts.values())} spans in {changed} of {total} records into {target.name}.")
    return {"target_id": target.pk, "target": target.name, "records": total, "records_changed": changed, "counts": counts}


# --------------------------------------------------------------------------- registry

register_scorer(
    "rules", _rules_factory, queue="cpu",
    description=gettext_lazy("Gopher/C4/FineWeb-style rule filters (length, symbols, repetition, non-text, toxic words, PII); "
                "reason = first failing rule."),
    params_schema={"min_tokens": 50, "min_tokens_sft": 8, "max_special_char_ratio": 0.3, "max_toxic_hits": 0,
                   "max_pii_hits": 0, "disabled": []},
    params=RULE_PARAMS,
)
register_scorer(
    "pii", _pii_factory, queue="cpu",
    description=gettext_lazy("Personal information: e-mail, phones (CN + international), resident IDs (mod 11-2), bank cards "
                "(Luhn), IPs, personal URLs; value = number of spans."),
    params_schema={"types": ["email", "phone", "cn_id", "bank_card", "ip", "personal_url"], "max_hits": 0,
                   "phone_region": "CN"},
    params=PII_PARAMS,
)
register_scorer(
    "minhash", corpus_handler=_minhash_corpus, queue="cpu",
    description=gettext_lazy("MinHash-LSH near-duplicates (rensa); clusters stored; keep first|longest|score. "
                "datasets=[...] adds datasets (per dataset, then merged)."),
    params_schema={"num_perm": 128, "bands": 32, "threshold": 0.8, "ngram_zh": 5, "ngram_en": 5, "policy": "first",
                   "datasets": [], "per_source": False, "keep_scorer_run": None},
    params=MINHASH_PARAMS,
)
register_scorer(
    "decontam", corpus_handler=_decontam_corpus, queue="cpu", shardable=True,
    description=gettext_lazy("Flag records sharing a long n-gram (13 words / 20 characters) with an item of a benchmark dataset."),
    params_schema={"benchmarks": [], "ngram_en": 13, "ngram_zh": 20, "min_item_tokens": 8, "max_hits": 0},
    params=DECONTAM_PARAMS,
)


def _redact_links(job):
    from django.urls import reverse
    ds = (job.result or {}).get("target_id")
    return [(gettext_noop("Open the redacted dataset"), reverse("datasets:detail", args=[ds]))] if ds else []


register_job_kind("curation.pii_redact", label=gettext_noop("PII redaction"), result_links=_redact_links)


def _corpus_run_links(job):
    from django.urls import reverse

    from .corpus.models import CorpusRun

    run_id = (job.result or {}).get("run_id") or (job.params or {}).get("run_id")
    corpus = CorpusRun.objects.filter(pk=run_id).values_list("corpus_id", flat=True).first() if run_id else None
    return [(gettext_noop("Open the corpus and its run results"), reverse("curation:corpus_detail", args=[corpus]))] if corpus else []


def _corpus_dedup_links(job):
    from django.urls import reverse

    corpus = (job.params or {}).get("corpus_id")
    return [(gettext_noop("Open the corpus"), reverse("curation:corpus_detail", args=[corpus]))] if corpus else []


# The corpus jobs' handlers live in curation/corpus/handlers.py; their labels sit with the stage's others.
register_job_kind("curation.corpus_run", label=gettext_noop("Corpus scoring run (Ray)"), result_links=_corpus_run_links)
register_job_kind("curation.corpus_dedup", label=gettext_noop("Corpus deduplication (Ray)"), result_links=_corpus_dedup_links)
