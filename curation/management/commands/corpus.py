"""`corpus add | run | dedup | counts | freeze | sample | list`: register shard corpora, score and
deduplicate them on Ray, count and freeze thresholds over their score files, sample them."""
import json

from django.core.management.base import BaseCommand, CommandError

from curation.corpus import services
from curation.corpus.models import Corpus
from medstudio.jobs.models import JobStatus
from medstudio.jobs.services import job_run_here


def _corpus(name: str) -> Corpus:
    c = Corpus.objects.filter(name=name).first()
    if c is None:
        raise CommandError(f"No corpus named {name!r} (register it with `corpus add NAME URI`).")
    return c


class Command(BaseCommand):
    help = "Corpora of Parquet/JSONL shards: add NAME URI, run NAME --scorer S, sample NAME --n N --dataset DS, list."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Register (or re-scan) a corpus.")
        add.add_argument("name")
        add.add_argument("uri")
        for f in ("text", "id", "lang", "source"):
            add.add_argument(f"--{f}-field", default=f)
        add.add_argument("--turns-field", default="", help="Dialogue corpora: the field with the turns ([{role, content}])")
        add.add_argument("--output-uri", default="", help="Where score files go (default MEDSTUDIO_CORPUS_OUTPUT/NAME).")
        run = sub.add_parser("run", help="Score a corpus on Ray; blocks until the end.")
        run.add_argument("name")
        run.add_argument("--scorer", action="append", required=True,
                         help="rules | pii | decontam | domain | datarater | deita | confilter | minhash (repeatable; minhash marks near-duplicates across shards after the others; the model scorers use the newest ready trained version unless --param S.model_version=N)")
        run.add_argument("--param", action="append", default=[], help="SCORER.key=value (JSON value), repeatable")
        run.add_argument("--workers", type=int, default=1)
        run.add_argument("--only", action="append", default=[], help="Shard key to (re)score alone, repeatable")
        run.add_argument("--retry-failed", action="store_true", help="Re-run only the latest run's failed shards")
        run.add_argument("--json", action="store_true")
        sample = sub.add_parser("sample", help="A stratified sample (source x lang) as a normal dataset.")
        sample.add_argument("name")
        sample.add_argument("--n", type=int, default=2000)
        sample.add_argument("--dataset", required=True)
        sample.add_argument("--seed", type=int, default=0)
        sample.add_argument("--kept-only", action="store_true", help="Only documents the latest run kept")
        dedup = sub.add_parser("dedup", help="MinHash-LSH near-duplicates on Ray (within sources, then across).")
        dedup.add_argument("name")
        dedup.add_argument("--partitions", type=int, default=0,
                           help="bucket partitions; 0 (default): one per 50,000 documents, which bounds a task's memory")
        dedup.add_argument("--threshold", type=float, default=0.8)
        dedup.add_argument("--across-only", action="store_true", help="skip the within-source pass")
        dedup.add_argument("--json", action="store_true")
        for verb, text in (("counts", "Kept documents per language and source under conditions (score files, DuckDB)."),
                           ("freeze", "Freeze the documents kept under conditions: kept ids per shard + manifest.")):
            p = sub.add_parser(verb, help=text)
            p.add_argument("name")
            p.add_argument("--where", action="append", default=[], help="'COLUMN OP VALUE', e.g. 'rules_value >= 0.5'")
            p.add_argument("--json", action="store_true")
            if verb == "freeze":
                p.add_argument("--as", dest="selection", required=True, help="name of the frozen selection")
        sub.add_parser("list", help="Registered corpora.")

    def handle(self, *args, **o):
        return getattr(self, f"_{o['action']}")(o)

    def _list(self, o):
        for c in Corpus.objects.all():
            self.stdout.write(f"{c.name}\t{c.uri}\t{c.n_shards} shards\t{c.n_docs} docs")

    def _add(self, o):
        try:
            c = services.corpus_register(actor=None, name=o["name"], uri=o["uri"], text_field=o["text_field"],
                                         id_field=o["id_field"], lang_field=o["lang_field"],
                                         source_field=o["source_field"], output_uri=o["output_uri"],
                                         turns_field=o["turns_field"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        bad = list(c.shards.exclude(error=""))
        self.stdout.write(f"Corpus {c.name}: {c.n_shards} shard(s), {c.n_docs} document(s), {c.size_bytes} bytes.")
        for s in bad:
            self.stderr.write(f"shard {s.key}: cannot be counted: {s.error}")

    def _run(self, o):
        c = _corpus(o["name"])
        scorers = {s: {} for s in o["scorer"]}
        for raw in o["param"]:
            key, _, value = raw.partition("=")
            scorer, _, field = key.partition(".")
            if not field or scorer not in scorers:
                raise CommandError(f"--param takes SCORER.key=value for a --scorer given, got {raw!r}")
            try:
                scorers[scorer][field] = json.loads(value)
            except json.JSONDecodeError:
                scorers[scorer][field] = value
        only = o["only"]
        if o["retry_failed"]:
            last = c.runs.first()
            if last is None:
                raise CommandError("no earlier run to retry")
            only = [f["shard"] for f in (last.aggregates or {}).get("failed", [])]
            scorers = last.scorers
            if not only:
                raise CommandError(f"run {last.pk} has no failed shard")
        try:
            run = services.corpus_run_start(actor=None, corpus=c, scorers=scorers, workers=o["workers"], only=only,
                                            enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        job_run_here(job_id=run.job_id)
        run.refresh_from_db()
        job = run.job
        job.refresh_from_db()
        res = job.result or {}
        if o["json"]:
            self.stdout.write(json.dumps({"run": run.pk, "job": job.pk, "status": job.status, "error": job.error,
                                          "out_dir": run.out_dir, **{k: v for k, v in res.items()}}, ensure_ascii=False))
        else:
            self.stdout.write(f"Corpus run {run.pk} (job {job.pk}) on {c.name}: {job.status}; "
                              f"{res.get('shards_done', 0)}/{res.get('shards_total', 0)} shards "
                              f"({res.get('shards_skipped', 0)} skipped, {res.get('shards_failed', 0)} failed), "
                              f"{res.get('docs_per_s', 0)} docs/s. Score files: {run.out_dir}")
            for s, a in (res.get("scorers") or {}).items():
                reasons = ", ".join(f"{r}={n}" for r, n in list(a["reasons"].items())[:8]) or "-"
                self.stdout.write(f"  {s}: documents={a['documents']} kept={a['kept']} dropped={a['dropped']} reasons: {reasons}")
            for f in res.get("failed_shards") or []:
                self.stderr.write(f"  failed shard {f['shard']}: {f['reason']}")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"corpus run {job.status}: {job.error[:2000]}")

    def _sample(self, o):
        c = _corpus(o["name"])
        try:
            job = services.corpus_sample_to_dataset(actor=None, corpus=c, n=o["n"], dataset=o["dataset"],
                                                    seed=o["seed"], kept_only=o["kept_only"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"import {job.status}: {job.error}")
        self.stdout.write(f"Dataset {o['dataset']}: {job.result.get('inserted', 0)} new document(s) from corpus {c.name}.")

    def _dedup(self, o):
        c = _corpus(o["name"])
        try:
            job = services.corpus_dedup_start(actor=None, corpus=c, partitions=o["partitions"],
                                              threshold=o["threshold"], by_source=not o["across_only"], enqueue=False)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        job_run_here(job_id=job.pk)
        job.refresh_from_db()
        res = job.result or {}
        if o["json"]:
            self.stdout.write(json.dumps({"job": job.pk, "status": job.status, "error": job.error, **res}, ensure_ascii=False))
        else:
            self.stdout.write(f"Dedup of {c.name} (job {job.pk}): {job.status}; kept {res.get('kept', 0)} of "
                              f"{res.get('documents', 0)} documents, {res.get('dropped', 0)} near-duplicates in "
                              f"{res.get('clusters', 0)} clusters (passes: {', '.join(res.get('passes', []))}). "
                              f"Decisions: {res.get('out_dir', '')}/_dedup/")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"dedup {job.status}: {job.error[:2000]}")

    def _conditions(self, o):
        from curation.pipeline.corpus.studio import Condition, StudioError

        try:
            return [Condition.parse(w) for w in o["where"]]
        except StudioError as exc:
            raise CommandError(str(exc)) from exc

    def _counts(self, o):
        from curation.pipeline.corpus.studio import StudioError, counts

        c = _corpus(o["name"])
        try:
            out = counts(services.corpus_score_dir(c), self._conditions(o))
        except (StudioError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if o["json"]:
            self.stdout.write(json.dumps(out, ensure_ascii=False))
            return
        self.stdout.write(f"{c.name}: kept {out['kept']} of {out['docs']} documents ({out['kept_chars']} characters) "
                          f"in {out['seconds']:.3f} s")
        for b in out["by"]:
            self.stdout.write(f"  {b['lang'] or '-'}\t{b['source'] or '-'}\t{b['kept']}/{b['docs']}\t{b['kept_chars']} chars")

    def _freeze(self, o):
        from curation.pipeline.corpus.studio import StudioError

        c = _corpus(o["name"])
        try:
            job = services.corpus_freeze_start(actor=None, corpus=c, conditions=o["where"], name=o["selection"],
                                               enqueue=False)
        except (StudioError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        job_run_here(job_id=job.pk)
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"freeze {job.status}: {job.error[:2000]}")
        res = job.result
        if o["json"]:
            self.stdout.write(json.dumps(res, ensure_ascii=False))
        else:
            self.stdout.write(f"Frozen selection {o['selection']}: {res['kept']} of {res['docs']} documents "
                              f"from {res['shards']} shard(s). Manifest: {res['dest']}/manifest.json. "
                              f"Train on it as corpus_selection:{o['selection']}.")
