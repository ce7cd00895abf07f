"""Reads for evaluation: run summaries, leaderboards (with an SVG chart's geometry), comparisons."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from training.pipeline import evaluation as ev
from training.pipeline.extraction import Extraction
from training.pipeline.rouge import win_tie_loss

from .models import EvalItem, EvalKind, EvalRun, EvalStatus, MemorizationHit


def runs(*, kind: str | None = None, dataset_id: int | None = None) -> QuerySet[EvalRun]:
    qs = EvalRun.objects.select_related("dataset", "job", "created_by")
    if kind:
        qs = qs.filter(kind=kind)
    if dataset_id:
        qs = qs.filter(dataset_id=dataset_id)
    return qs


def items(*, run: EvalRun, only: str = "", seed: int | None = None) -> QuerySet[EvalItem]:
    qs = run.items.select_related("record")
    if seed is not None:
        qs = qs.filter(seed=seed)
    if only == "wrong":
        qs = qs.filter(correct=False)
    elif only == "invalid":
        qs = qs.filter(extracted__isnull=True, output__isnull=False)
    elif only == "failed":
        qs = qs.exclude(error="")
    elif only == "flagged":
        qs = qs.filter(detail__flagged=True)
    return qs


def mcq_summary(run: EvalRun) -> dict[str, Any]:
    """Accuracy per seed from the stored items, then mean and spread over seeds (docs/METHODS.md 5)."""
    by_seed: dict[int, list[ev.McqVerdict]] = defaultdict(list)
    rows = run.items.values_list("seed", "record_id", "subset", "extracted", "extraction_method", "correct", "output")
    for seed, rid, subset, letters, method, correct, output in rows.iterator():
        by_seed[seed].append(ev.McqVerdict(rid, subset, Extraction(letters, method), bool(correct), output is None))
    tables = {seed: ev.accuracy_table(v) for seed, v in sorted(by_seed.items())}
    agg = ev.aggregate_seeds(list(tables.values()))
    agg["per_seed"] = {str(s): t["overall"] for s, t in tables.items()}
    agg["subject_n"] = {s: t["n"] for s, t in (next(iter(tables.values()))["per_subject"].items() if tables else [])}
    methods = run.items.values("extraction_method").annotate(n=Count("id")).order_by("-n")
    agg["extraction_methods"] = {m["extraction_method"] or "-": m["n"] for m in methods}
    return agg


def invalid_extractions(*, runs, examples: int = 3) -> list[dict[str, Any]]:
    """Invalid MCQ answers (a reply came back but no option could be read from it) per (model, subject),
    highest rate first, each with up to `examples` raw replies to read. Rates are over all items of the
    group, as the summary's invalid_rate is; failed generations are counted apart, not as invalid."""
    base = EvalItem.objects.filter(run__in=runs)
    invalid_q = Q(extracted__isnull=True, output__isnull=False)
    rows = (base.values("run__model_name", "subset")
            .annotate(n=Count("id"), invalid=Count("id", filter=invalid_q), failed=Count("id", filter=Q(output__isnull=True)))
            .order_by("run__model_name", "subset"))
    groups = []
    for r in rows:
        g = {"model": r["run__model_name"], "subject": r["subset"] or "-", "n": r["n"], "invalid": r["invalid"],
             "failed": r["failed"], "rate": r["invalid"] / r["n"] if r["n"] else 0.0, "examples": []}
        if r["invalid"] and examples:
            g["examples"] = list(base.filter(invalid_q, run__model_name=r["run__model_name"], subset=r["subset"])
                                 .order_by("id").values("id", "run_id", "record_id", "seed", "output", "extraction_method")[:examples])
        groups.append(g)
    groups.sort(key=lambda g: (-g["rate"], g["model"], g["subject"]))
    return groups


def consultation_summary(run: EvalRun) -> dict[str, Any]:
    rows = [(turn, scores) for turn, scores in run.items.values_list("turn", "judge_scores")]
    agg = run.items.aggregate(n=Count("id"), rouge=Avg("rouge_l"), failed=Count("id", filter=Q(output__isnull=True)),
                              judged=Count("id", filter=Q(judge_scores__isnull=False)))
    return {"n_items": agg["n"], "failed": agg["failed"], "judged": agg["judged"], "mean_rouge_l": agg["rouge"],
            "per_turn": ev.per_turn_table(rows)}


def memorization_summary(run: EvalRun) -> dict[str, Any]:
    agg = run.items.aggregate(n=Count("id"), scored=Count("id", filter=Q(rouge_l__isnull=False)),
                              flagged=Count("id", filter=Q(detail__flagged=True)))
    return {"n_items": agg["n"], "scored": agg["scored"], "failed": agg["n"] - agg["scored"], "flagged": agg["flagged"],
            "rate": agg["flagged"] / agg["scored"] if agg["scored"] else None,
            "threshold": run.params.get("rouge_threshold")}


def hits(*, run: EvalRun | None = None, status: str = "") -> QuerySet[MemorizationHit]:
    qs = MemorizationHit.objects.select_related("record", "record__dataset", "item", "run")
    if run is not None:
        qs = qs.filter(run=run)
    if status:
        qs = qs.filter(status=status)
    return qs


# ------------------------------------------------------------------------------------------------
PALETTE = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#319795", "#4a5568"]


def leaderboard(*, dataset_id: int) -> dict[str, Any]:
    """Latest succeeded MCQ run per model on one benchmark, best first, with per-subject accuracy."""
    latest: dict[str, EvalRun] = {}
    for run in runs(kind=EvalKind.MCQ, dataset_id=dataset_id).filter(status=EvalStatus.SUCCEEDED).order_by("-created_at"):
        latest.setdefault(run.model_name, run)
    rows = sorted(latest.values(), key=lambda r: -(r.summary.get("overall", {}).get("mean") or 0))
    subjects = sorted({s for r in rows for s in r.summary.get("per_subject", {})})
    table = [{
        "run": r, "model": r.model_name, "color": PALETTE[i % len(PALETTE)],
        "mean": r.summary["overall"]["mean"], "std": r.summary["overall"]["std"], "n_runs": r.summary.get("n_runs"),
        "invalid": (r.summary.get("invalid_rate") or {}).get("mean"),
        "subjects": [(r.summary["per_subject"].get(s) or {}).get("mean") for s in subjects],
    } for i, r in enumerate(rows)]
    return {"rows": table, "subjects": subjects, "chart": _chart(table, subjects)}


def _chart(rows: list[dict], subjects: list[str]) -> dict[str, Any]:
    """Geometry of a grouped horizontal bar chart (one group per subject, one bar per model), drawn
    as inline SVG by the template: no JavaScript and no CDN."""
    label_w, plot_w, bar_h, gap = 190, 460, 12, 10
    groups = []
    y = 24
    for si, subj in enumerate(subjects):
        bars = []
        for ri, row in enumerate(rows):
            acc = row["subjects"][si]
            bars.append({"y": y + ri * bar_h, "w": round((acc or 0) * plot_w, 1), "color": row["color"],
                         "label": "-" if acc is None else f"{acc:.1%}", "model": row["model"]})
        h = max(1, len(rows)) * bar_h
        groups.append({"subject": subj, "y": y, "label_y": y + h / 2 + 4, "bars": bars})
        y += h + gap
    ticks = [{"x": label_w + plot_w * t / 4, "label": f"{int(t * 25)}%"} for t in range(5)]
    return {"width": label_w + plot_w + 60, "height": y + 10, "label_w": label_w, "plot_w": plot_w,
            "bar_h": bar_h - 2, "groups": groups, "ticks": ticks}


def compare(*, a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """Pairwise win/tie/loss of A over B on the items both answered: from individual judge scores and
    from ROUGE-L against the references (docs/METHODS.md 5)."""
    def load(run):
        rows = run.items.values_list("record_id", "turn", "judge_scores", "rouge_l")
        return {(rid, t): (s, rl) for rid, t, s, rl in rows}

    da, db = load(a), load(b)
    keys = [k for k in da if k in db]
    judged = ev.pairwise_from_scores({k: da[k][0] for k in keys}, {k: db[k][0] for k in keys})
    # ROUGE-L was stored per item at generation time (character-tokenised for Chinese)
    rouge = win_tie_loss([da[k][1] for k in keys], [db[k][1] for k in keys]).as_dict()
    per_turn: dict[int, dict] = {}
    for turn in sorted({k[1] for k in keys}):
        tk = [k for k in keys if k[1] == turn]
        per_turn[turn] = ev.pairwise_from_scores({k: da[k][0] for k in tk}, {k: db[k][0] for k in tk})["mean"]
    return {"n_shared": len(keys), "judged": judged, "rouge": rouge, "per_turn": per_turn}


def memorised_record_ids(*, dataset_id: int | None = None, status: str = "exclude") -> QuerySet:
    """Ids of records curators marked for exclusion after a memorisation audit: the hook a selection
    or recipe uses to leave them out of the next training set."""
    qs = MemorizationHit.objects.filter(status=status)
    if dataset_id is not None:
        qs = qs.filter(record__dataset_id=dataset_id)
    return qs.values_list("record_id", flat=True).distinct()


def harness_leaderboard() -> dict[str, Any]:
    """Latest succeeded lm-eval run per model: accuracy per harness task (the harness's `acc`), in the
    same shape as the MCQ leaderboard so both scorers read alike."""
    latest: dict[str, EvalRun] = {}
    for run in EvalRun.objects.filter(kind=EvalKind.HARNESS, status=EvalStatus.SUCCEEDED).order_by("-created_at"):
        latest.setdefault(run.model_name, run)
    rows = sorted(latest.values(), key=lambda r: -((r.summary.get("overall") or {}).get("mean") or 0))
    tasks = sorted({t for r in rows for t in (r.summary.get("per_subject") or {})})
    return {"tasks": tasks, "rows": [{
        "run": r, "model": r.model_name, "mean": (r.summary.get("overall") or {}).get("mean"),
        "tasks": [((r.summary.get("per_subject") or {}).get(t) or {}).get("mean") for t in tasks],
    } for r in rows]}


def harness_tasks() -> list[dict[str, Any]]:
    """The curated lm-eval tasks and whether this installation has a local copy of each."""
    from training.pipeline import harness

    from .services import eval_datasets_dir

    return harness.local_tasks(eval_datasets_dir())


def judge_clinician_agreement(review) -> list[dict[str, Any]]:
    """Per aspect (and the overall score against the judge's mean): quadratic-weighted kappa between
    the judge and the clinicians' median rating, Krippendorff's ordinal alpha with the judge as one
    more rater, and n (replies with both a judge score and at least one clinician label)."""
    import statistics

    from medstudio.annotation import agreement as ag
    from medstudio.annotation.models import Label

    if review.queue_id is None:
        return []
    item_of = {}
    for rid, ext in review.dataset.records.values_list("id", "external_id") if review.dataset_id else []:
        if ext.startswith("evalitem-"):
            item_of[rid] = int(ext.split("-", 1)[1])
    judge = dict(EvalItem.objects.filter(pk__in=item_of.values()).values_list("id", "judge_scores"))
    human: dict[int, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for rid, annotator, values in Label.objects.filter(queue_id=review.queue_id, source="human").values_list(
            "record_id", "annotator", "values"):
        for a, v in (values.get("aspects") or {}).items():
            human[rid][a][annotator] = v
        if values.get("score") is not None:
            human[rid]["overall"][annotator] = values["score"]
    out = []
    for aspect in (*ev.ASPECTS, "overall"):
        ratings: dict[int, dict[str, float]] = {}
        xs, ys = [], []
        for rid, per in human.items():
            scores = judge.get(item_of.get(rid)) or {}
            j = ev.mean_score(scores) if aspect == "overall" else scores.get(aspect)
            if j is None or not per.get(aspect):
                continue
            ratings[rid] = {"judge": round(j), **per[aspect]}
            xs.append(round(j))
            ys.append(round(statistics.median(per[aspect].values())))
        out.append({"aspect": aspect, "n": len(xs),
                    "kappa": ag.cohen_kappa(xs, ys, weights="quadratic") if xs else None,
                    "alpha": ag.krippendorff_alpha(ratings, level="ordinal") if ratings else None,
                    "exact": (sum(x == y for x, y in zip(xs, ys)) / len(xs)) if xs else None})
    return out
