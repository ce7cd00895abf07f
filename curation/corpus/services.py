"""Write paths for corpora: register (manifest + counts), start a run, retry failed shards, sample."""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext

from curation.pipeline.corpus.score import SCORERS, make_scorer, shard_key
from curation.pipeline.corpus.shards import ShardError, filesystem, list_shards, count_docs
from medstudio.audit.services import audit_log

from .models import Corpus, CorpusRun, CorpusShard


def output_root() -> str:
    return getattr(settings, "CORPUS_OUTPUT", "") or os.environ.get("MEDSTUDIO_CORPUS_OUTPUT") or str(
        Path(settings.VAR_DIR) / "corpus")


@transaction.atomic
def corpus_register(*, actor, name: str, uri: str, text_field: str = "text", id_field: str = "id",
                    lang_field: str = "lang", source_field: str = "source", output_uri: str = "",
                    turns_field: str = "") -> Corpus:
    """Register (or re-scan) a corpus: list its shards and count each one from its metadata."""
    if not name or not uri:
        raise ValueError(gettext("a corpus needs a name and a URI"))
    try:
        fs, found = list_shards(uri)
    except ShardError as exc:
        raise ValueError(str(exc)) from exc
    except Exception as exc:
        raise ValueError(f"{uri}: {type(exc).__name__}: {exc}") from exc
    if not found:
        raise ValueError(gettext("%(uri)s: no Parquet or JSONL (.jsonl, .jsonl.gz, .jsonl.zst) shard found") % {"uri": uri})
    _, root = filesystem(uri)
    corpus, _ = Corpus.objects.update_or_create(
        name=name, defaults=dict(uri=uri, text_field=text_field, id_field=id_field, lang_field=lang_field,
                                 source_field=source_field, turns_field=turns_field, output_uri=output_uri, created_by=actor if getattr(actor, "is_authenticated", False) else None))
    known = {s.key: s for s in corpus.shards.all()}
    rows = []
    for path, fmt, size in found:
        key = shard_key(root, path)
        old = known.pop(key, None)
        if old is not None and old.size_bytes == size and old.n_docs is not None:
            rows.append(old)  # counted once: a JSONL shard is not re-read when it has not changed
            continue
        try:
            n, err = count_docs(fs, path, fmt), ""
        except ShardError as exc:
            n, err = None, str(exc)
        if old is not None:
            old.path, old.fmt, old.n_docs, old.size_bytes, old.error = path, fmt, n, size, err
            old.save()
            rows.append(old)
        else:
            rows.append(CorpusShard.objects.create(corpus=corpus, key=key, path=path, fmt=fmt, n_docs=n,
                                                   size_bytes=size, error=err))
    CorpusShard.objects.filter(pk__in=[s.pk for s in known.values()]).delete()
    corpus.n_shards = len(rows)
    corpus.n_docs = sum(s.n_docs or 0 for s in rows)
    corpus.size_bytes = sum(s.size_bytes for s in rows)
    corpus.save(update_fields=["n_shards", "n_docs", "size_bytes"])
    audit_log(actor=actor, action="corpus.register", target=corpus,
              data={"uri": uri, "shards": corpus.n_shards, "documents": corpus.n_docs})
    return corpus


def _benchmarks(params: dict) -> list:
    from curation.scoring import benchmark_datasets

    benches, missing = benchmark_datasets(params.get("benchmarks"))
    if missing:
        raise ValueError(gettext("decontam: no dataset named %(names)s") % {"names": ", ".join(sorted(missing))})
    if not benches:
        raise ValueError(gettext("decontam: no benchmark dataset to check against: flag one as benchmark on its "
                                 "dataset page, or pass decontam.benchmarks=[names]"))
    return sorted(benches, key=lambda d: d.name)


def check_scorers(scorers: dict[str, dict]) -> dict[str, dict]:
    """Validate every scorer's params and pin what must mean the same for every shard (the model
    version, the benchmark datasets); returns the params the run stores (and its output folder hashes)."""
    from curation.pipeline.decontam import DecontamConfig

    out = {}
    for name, params in scorers.items():
        params = dict(params or {})
        if name not in SCORERS:
            raise ValueError(gettext("unknown corpus scorer %(name)s; known: %(known)s")
                             % {"name": repr(name), "known": ", ".join(SCORERS)})
        if name == "decontam":
            unknown = set(params) - set(DecontamConfig.__dataclass_fields__) - {"benchmarks"}
            if unknown:
                raise ValueError(gettext("decontam: unknown settings %(keys)s") % {"keys": sorted(unknown)})
            try:
                DecontamConfig.from_params(params)
            except (TypeError, ValueError) as exc:
                raise ValueError(gettext("decontam: bad settings: %(exc)s") % {"exc": exc}) from exc
            params["benchmarks"] = [d.name for d in _benchmarks(params)]
        elif name in ("domain", "datarater"):
            from curation.modelscorers.scorers import rater_factory

            rater_factory(name)(params)  # pins model_version / model / target_label; no ready model: ValueError
        elif name in ("confilter", "deita"):
            from medstudio.inference.errors import ModelNotAvailable
            from medstudio.inference.resolve import resolve_local_model

            if name == "deita" and params.get("mode", "lm") != "lm":
                raise ValueError(gettext("deita on a corpus runs its scorer models (mode lm), not a chat judge"))
            keys = ({"model": "MEDSTUDIO_SCORING_LM"} if name == "confilter" else
                    {"complexity_model": "MEDSTUDIO_DEITA_COMPLEXITY_MODEL", "quality_model": "MEDSTUDIO_DEITA_QUALITY_MODEL"})
            for key, setting in keys.items():
                try:  # pinned as a local directory: every shard (and worker) loads the same model
                    params[key] = resolve_local_model(str(params.get(key) or getattr(settings, setting, "")), setting)
                except ModelNotAvailable as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        elif name == "minhash":  # run after the shard scorers, across shards (curation/pipeline/corpus/minhash_pass.py)
            from curation.pipeline.corpus.minhash_pass import PARAMS

            unknown = set(params) - set(PARAMS)
            if unknown:
                raise ValueError(gettext("minhash: unknown settings %(keys)s") % {"keys": sorted(unknown)})
            try:
                if "threshold" in params and not 0 < float(params["threshold"]) <= 1:
                    raise ValueError(gettext("threshold must be in (0, 1]"))
                if int(params.get("partitions", 0)) < 0:
                    raise ValueError(gettext("partitions must be 0 (automatic) or more"))
                if any(int(params[k]) < 1 for k in ("pairs_per_verify", "sigs_per_round") if k in params):
                    raise ValueError(gettext("pairs_per_verify and sigs_per_round must be 1 or more"))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"minhash: {exc}") from exc
        else:
            make_scorer(name, params)
        out[name] = params
    return out


def runtime_scorers(run: CorpusRun) -> dict[str, dict]:
    """The run's scorers as the Ray workers need them: each model's directory, and decontam's
    benchmark index built once here and written beside the score files."""
    from curation.modelscorers.selectors import ready_model
    from curation.pipeline.corpus.score import write_index
    from curation.pipeline.decontam import BenchmarkIndex, DecontamConfig
    from medstudio.datasets.models import Record

    out = {}
    for name, params in run.scorers.items():
        params = dict(params)
        if name in ("domain", "datarater"):
            model = ready_model(name, params.get("model_version"))
            if model is None or not model.path:
                raise ValueError(gettext("%(name)s model version %(version)s is no longer ready: train one on the "
                                         "Model scorers page (/modelscorers/)")
                                 % {"name": name, "version": params.get("model_version")})
            params["model_path"] = model.path
        elif name == "decontam":
            index = BenchmarkIndex(DecontamConfig.from_params(params))
            for b in _benchmarks(params):
                for rid, ext, content in Record.objects.filter(dataset=b).values_list(
                        "id", "external_id", "content").iterator(chunk_size=2000):
                    index.add_record({"dataset": b.name, "record_id": rid, "external_id": ext}, content, b.kind)
            params["index_path"] = f"{run.out_dir.rstrip('/')}/_decontam/index-run{run.pk}.pkl"
            params["benchmark_items"] = index.n_items
            write_index(index, params["index_path"])
        out[name] = params
    return out


def run_key(scorers: dict[str, dict]) -> str:
    """Same scorers and params, same output folder: that is what makes a re-run resume. The
    dedup's sizing settings (minhash_pass.SIZING) change memory, not results: not in the key."""
    from curation.pipeline.corpus.minhash_pass import SIZING

    keyed = {n: ({k: v for k, v in p.items() if k not in SIZING} if n == "minhash" else p) for n, p in scorers.items()}
    blob = json.dumps(keyed, sort_keys=True)
    return "-".join(sorted(scorers)) + "-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def corpus_run_start(*, actor, corpus: Corpus, scorers: dict[str, dict], workers: int = 1,
                     only: list[str] | None = None, enqueue: bool = True) -> CorpusRun:
    from medstudio.jobs.services import job_create

    if not scorers:
        raise ValueError(gettext("name at least one scorer (%(known)s)") % {"known": ", ".join(SCORERS)})
    scorers = check_scorers(scorers)  # unknown scorer, bad params, missing model: refused before anything runs
    out_dir = f"{(corpus.output_uri or output_root() + '/' + corpus.name).rstrip('/')}/{run_key(scorers)}"
    with transaction.atomic():
        run = CorpusRun.objects.create(corpus=corpus, scorers=scorers, workers=max(1, int(workers)), out_dir=out_dir,
                                       created_by=actor if getattr(actor, "is_authenticated", False) else None)
        job = job_create(kind="curation.corpus_run", params={"run_id": run.pk, "only": list(only or [])}, user=actor,
                         total=corpus.n_shards if not only else len(only), enqueue=enqueue)
        CorpusRun.objects.filter(pk=run.pk).update(job=job)
        run.job = job
        audit_log(actor=actor, action="corpus.run", target=run, data={"corpus": corpus.name, "scorers": scorers,
                                                                      "workers": workers, "only": only or []})
    run.refresh_from_db()
    return run


def corpus_run_retry_failed(*, actor, run: CorpusRun, enqueue: bool = True) -> CorpusRun:
    """A new run on the failed shards only (the same output folder: the done ones are untouched)."""
    failed = [f["shard"] for f in (run.aggregates or {}).get("failed", [])]
    if not failed:
        raise ValueError(gettext("this run has no failed shard"))
    return corpus_run_start(actor=actor, corpus=run.corpus, scorers=run.scorers, workers=run.workers,
                            only=failed, enqueue=enqueue)


def random_sample(*, corpus: Corpus, n: int = 20, seed: int = 0) -> list[dict]:
    """n documents drawn uniformly over the corpus (by shard counts), read from their shards."""
    from curation.pipeline.corpus.shards import Mapping, sample_docs

    shards = [s for s in corpus.shards.all() if s.n_docs]
    total = sum(s.n_docs for s in shards)
    if not total:
        return []
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(total), min(n, total)))
    fs, _ = filesystem(corpus.uri)
    out, start, i = [], 0, 0
    for s in shards:
        rows = []
        while i < len(picks) and picks[i] < start + s.n_docs:
            rows.append(picks[i] - start)
            i += 1
        if rows:
            try:
                out.extend({**d, "shard": s.key} for d in sample_docs((fs, s.path, s.fmt), Mapping.from_dict(corpus.mapping), rows))
            except ShardError as exc:
                out.append({"shard": s.key, "error": str(exc)})
        start += s.n_docs
    return out


def _strata_rows(corpus: Corpus, run: CorpusRun | None, kept_only: bool) -> list[tuple[str, str, str, str]]:
    """(stratum source, lang, shard key, doc id) of every candidate document: from the run's score
    files when there is one (no text read), else from the shards."""
    from curation.pipeline.corpus.shards import Mapping, iter_docs

    rows = []
    if run is not None:
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs, root = filesystem(run.out_dir)
        # the registered shards only (the sample reads its texts from them): a score file of a shard
        # added to the folder after `corpus add` is not sampled until the corpus is registered again
        registered = set(corpus.shards.filter(error="").values_list("key", flat=True))
        files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
                       if i.path.endswith(".scores.parquet"))
        for path in files:
            with fs.open_input_file(path) as fh:
                t = pq.read_table(fh, columns=["doc_id", "shard", "lang", "source", "keep"]).to_pydict()
            for d, sh, lang, src, keep in zip(t["doc_id"], t["shard"], t["lang"], t["source"], t["keep"]):
                if (keep or not kept_only) and sh in registered:
                    rows.append((src, lang, sh, d))
        return rows
    fs, _ = filesystem(corpus.uri)
    for s in corpus.shards.filter(error=""):
        for batch in iter_docs(fs, s.path, s.fmt, Mapping.from_dict(corpus.mapping)):
            rows.extend((d["source"], d["lang"], s.key, d["id"]) for d in batch)
    return rows


def stratified_pick(rows: list[tuple], n: int, seed: int = 0) -> list[tuple]:
    """n rows, each (source, lang) stratum getting its proportional share (largest remainder, at
    least one per stratum while n allows), uniformly within the stratum."""
    from collections import defaultdict

    strata = defaultdict(list)
    for r in rows:
        strata[(r[0], r[1])].append(r)
    total = len(rows)
    n = min(n, total)
    if not n:
        return []
    keys = sorted(strata)
    quota = {k: max(1, int(n * len(strata[k]) / total)) if n >= len(keys) else 0 for k in keys}
    rema = sorted(keys, key=lambda k: -(n * len(strata[k]) / total - int(n * len(strata[k]) / total)))
    i = 0
    while sum(quota.values()) < n:
        k = rema[i % len(rema)]
        if quota[k] < len(strata[k]):
            quota[k] += 1
        i += 1
    while sum(quota.values()) > n:  # the at-least-one floors overshot: trim the biggest
        k = max(keys, key=lambda k: quota[k])
        quota[k] -= 1
    rng = random.Random(seed)
    out = []
    for k in keys:
        out.extend(rng.sample(strata[k], min(quota[k], len(strata[k]))))
    return out


def corpus_sample_to_dataset(*, actor, corpus: Corpus, n: int, dataset: str, seed: int = 0,
                             kept_only: bool = False):
    """A stratified sample (by source x lang) imported as a normal `document` dataset through the
    dataset import job. Returns the import Job (run in-process)."""
    import uuid

    from curation.pipeline.corpus.shards import Mapping, iter_docs
    from medstudio.datasets.services import import_start
    from medstudio.jobs.services import job_execute
    from medstudio.jobs.models import JobStatus

    run = None
    for r in corpus.runs.select_related("job"):
        if r.job and r.job.status in (JobStatus.SUCCEEDED, JobStatus.PARTIAL) and not (r.job.params or {}).get("only"):
            run = r
            break
    picks = stratified_pick(_strata_rows(corpus, run, kept_only), n, seed)
    if not picks:
        raise ValueError(gettext("corpus %(name)s has no document to sample") % {"name": corpus.name})
    want: dict[str, set] = {}
    for _src, _lang, sh, d in picks:
        want.setdefault(sh, set()).add(d)
    fs, _ = filesystem(corpus.uri)
    folder = Path(settings.MEDIA_ROOT) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}_corpus_{corpus.pk}_sample.jsonl"
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        for s in corpus.shards.filter(key__in=list(want)):
            ids = want[s.key]
            for batch in iter_docs(fs, s.path, s.fmt, Mapping.from_dict(corpus.mapping)):
                for d in batch:
                    if d["id"] in ids:
                        fh.write(json.dumps({"id": d["id"], "source": d["source"] or corpus.name, "lang": d["lang"] or "und",
                                             "text": d["text"], "corpus_shard": s.key}, ensure_ascii=False) + "\n")
                        written += 1
    job = import_start(user=actor, path=path, fmt="jsonl", kind="document", dataset=dataset,
                       description=f"Stratified sample (source x lang) of {written} documents from corpus {corpus.name}"
                                   + (f", kept by corpus run {run.pk}" if run and kept_only else ""),
                       enqueue=False)
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    audit_log(actor=actor, action="corpus.sample", target=corpus, data={"n": written, "dataset": dataset, "seed": seed})
    return job


def corpus_dedup_start(*, actor, corpus: Corpus, partitions: int = 0, threshold: float = 0.8, by_source: bool = True,
                       enqueue: bool = True):
    """A job that removes near-duplicates from the corpus on Ray; decisions go beside the score files."""
    from medstudio.jobs.services import job_create

    if not 0 < threshold <= 1:
        raise ValueError(gettext("threshold must be in (0, 1]"))
    if partitions < 0:  # 0: one per 50,000 documents (curation/pipeline/corpus/dedup.py)
        raise ValueError(gettext("partitions must be 0 (automatic) or more"))
    out_dir = f"{(corpus.output_uri or output_root() + '/' + corpus.name).rstrip('/')}/dedup-t{threshold:g}"
    with transaction.atomic():
        job = job_create(kind="curation.corpus_dedup", user=actor, total=4, enqueue=enqueue,
                         params={"corpus_id": corpus.pk, "out_dir": out_dir, "partitions": int(partitions),
                                 "threshold": float(threshold), "by_source": bool(by_source)})
        audit_log(actor=actor, action="corpus.dedup", target=corpus,
                  data={"partitions": partitions, "threshold": threshold, "job": job.pk})
    return job


def corpus_score_dir(corpus: Corpus) -> str:
    """The newest run's score-file folder (what the corpus studio counts over)."""
    run = corpus.runs.first()
    if run is None:
        raise ValueError(gettext("corpus %(name)s has no scoring run yet: `corpus run %(name)s --scorer rules`")
                         % {"name": corpus.name})
    return run.out_dir


SELECTION_NAME = __import__("re").compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def corpus_conditions(raw: list) -> list:
    """[[column, op, value]] or 'COLUMN OP VALUE' strings -> studio Conditions (StudioError if bad)."""
    from curation.pipeline.corpus.studio import Condition

    out = []
    for c in raw:
        out.append(Condition.parse(c) if isinstance(c, str) else Condition(str(c[0]), str(c[1]), c[2]))
    return out


def corpus_freeze_start(*, actor, corpus: Corpus, conditions: list, name: str, enqueue: bool = True):
    """A job that freezes the documents the conditions keep in the newest run's score files (a
    manifest with kept ids per shard) and registers it as a frozen corpus selection for training."""
    from curation.pipeline.corpus.studio import _scan, _where, score_files
    from medstudio.jobs.services import job_create

    name = (name or "").strip()
    if not SELECTION_NAME.match(name):
        raise ValueError(gettext("name the selection with letters, digits, '.', '_' or '-' (at most 100, no spaces)"))
    score_dir = corpus_score_dir(corpus)
    conds = corpus_conditions(conditions)
    _where(conds, _scan(score_files(score_dir))[3])  # unknown column/operator: refused now (StudioError)
    with transaction.atomic():
        job = job_create(kind="curation.corpus_freeze", user=actor, total=1, enqueue=enqueue,
                         params={"corpus_id": corpus.pk, "name": name, "score_dir": score_dir,
                                 "conditions": [[c.column, c.op, c.value] for c in conds]})
        audit_log(actor=actor, action="corpus.freeze", target=corpus, data={"name": name, "job": job.pk,
                                                                             "conditions": job.params["conditions"]})
    return job
