"""Model comparison (issue 15 point 4): the data and the ECharts options of the comparison page,
built in Python (drawn by static/charts.js through {% echart %}), plus its CSV rows.

For each picked model the latest finished run is used: MCQ on the chosen benchmark (accuracy per
subject, mean over seeds with min-max), consultation on the chosen consultation set (judge mean per
turn, and win/tie/loss of every other model against the first one, from judge scores and ROUGE-L).
"""
from __future__ import annotations

from typing import Any

from .models import EvalKind, EvalRun, EvalStatus
from .selectors import PALETTE, compare

WTL_COLORS = {"win": "#2f855a", "tie": "#a0aec0", "loss": "#c53030"}


def _latest(kind: str, dataset_id: int | None, models: list[str]) -> dict[str, EvalRun]:
    out: dict[str, EvalRun] = {}
    if dataset_id is None:
        return out
    qs = EvalRun.objects.filter(kind=kind, dataset_id=dataset_id, status=EvalStatus.SUCCEEDED,
                                model_name__in=models).order_by("-created_at")
    for run in qs:
        out.setdefault(run.model_name, run)
    return out


def model_names() -> list[str]:
    return sorted(set(EvalRun.objects.filter(status=EvalStatus.SUCCEEDED, kind__in=[EvalKind.MCQ, EvalKind.CONSULTATION])
                      .values_list("model_name", flat=True)))


def comparison(*, models: list[str], mcq_dataset_id: int | None, consult_dataset_id: int | None) -> dict[str, Any]:
    mcq = _latest(EvalKind.MCQ, mcq_dataset_id, models)
    con = _latest(EvalKind.CONSULTATION, consult_dataset_id, models)
    subjects = sorted({s for r in mcq.values() for s in (r.summary.get("per_subject") or {})})
    accuracy = []
    for m in models:
        if m not in mcq:
            continue
        per = mcq[m].summary.get("per_subject") or {}
        accuracy.append({"model": m, "run": mcq[m].pk, "subjects": [
            {"subject": s, **{k: (per.get(s) or {}).get(k) for k in ("mean", "std", "min", "max")},
             "n_runs": len((per.get(s) or {}).get("runs") or [])} for s in subjects]})
    turns = []
    for m in models:
        if m not in con:
            continue
        rows = [t for t in (con[m].summary.get("per_turn") or []) if t.get("turn") != "all"]
        turns.append({"model": m, "run": con[m].pk, "points": [(t["turn"], t.get("mean"), t.get("n")) for t in rows]})
    pairs = []
    present = [m for m in models if m in con]
    for other in present[1:]:
        c = compare(a=con[other], b=con[present[0]])
        pairs.append({"a": other, "b": present[0], "n": c["n_shared"], "judged": c["judged"]["mean"], "rouge": c["rouge"]})
    return {"models": models, "subjects": subjects, "accuracy": accuracy, "turns": turns, "pairs": pairs}


def accuracy_option(data: dict[str, Any]) -> dict[str, Any]:
    """Grouped bars (mean accuracy over seeds) with the min-max spread over seeds as a whisker (a
    boxplot series whose box collapses onto the mean), one colour per model."""
    subjects = data["subjects"]
    series: list[dict[str, Any]] = []
    for i, row in enumerate(data["accuracy"]):
        color = PALETTE[i % len(PALETTE)]
        series.append({"name": row["model"], "type": "bar", "itemStyle": {"color": color, "opacity": 0.75},
                       "data": [None if s["mean"] is None else round(s["mean"], 4) for s in row["subjects"]]})
        series.append({"name": row["model"], "type": "boxplot", "itemStyle": {"color": "transparent", "borderColor": "#1a202c"},
                       "boxWidth": [2, 6], "tooltip": {"show": False},
                       "data": [[s["min"], s["mean"], s["mean"], s["mean"], s["max"]] if s["mean"] is not None else []
                                for s in row["subjects"]]})
    return {"tooltip": {"trigger": "axis"},
            "legend": {"top": 0, "type": "scroll"},
            "grid": {"left": 48, "right": 16, "top": 36, "bottom": 90},
            "xAxis": {"type": "category", "data": subjects, "axisLabel": {"rotate": 30, "interval": 0}},
            "yAxis": {"type": "value", "min": 0, "max": 1, "name": "accuracy"},
            "series": series}


def turns_option(data: dict[str, Any]) -> dict[str, Any]:
    turns = sorted({t for row in data["turns"] for t, _, _ in row["points"]})
    series = []
    for i, row in enumerate(data["turns"]):
        by = {t: v for t, v, _ in row["points"]}
        series.append({"name": row["model"], "type": "line", "connectNulls": False, "symbolSize": 7,
                       "itemStyle": {"color": PALETTE[i % len(PALETTE)]},
                       "data": [None if by.get(t) is None else round(by[t], 3) for t in turns]})
    return {"tooltip": {"trigger": "axis"}, "legend": {"top": 0, "type": "scroll"},
            "grid": {"left": 48, "right": 16, "top": 36, "bottom": 36},
            "xAxis": {"type": "category", "name": "turn", "data": [str(t) for t in turns]},
            "yAxis": {"type": "value", "min": 1, "max": 5, "name": "judge mean (1-5)"}, "series": series}


def wtl_option(data: dict[str, Any]) -> dict[str, Any]:
    """Horizontal stacked bars: one judge row and one ROUGE-L row per pair (model vs the first model)."""
    labels, rows = [], []
    for p in data["pairs"]:
        for basis, res in (("judge", p["judged"]), ("ROUGE-L", p["rouge"])):
            labels.append(f"{p['a']} vs {p['b']} ({basis})")
            rows.append(res)
    series = [{"name": k, "type": "bar", "stack": "wtl", "itemStyle": {"color": c},
               "label": {"show": True, "formatter": "{c}"},
               "data": [r.get(k) or None for r in rows]} for k, c in WTL_COLORS.items()]
    return {"tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}}, "legend": {"top": 0},
            "grid": {"left": 8, "right": 16, "top": 30, "bottom": 24, "containLabel": True},
            "xAxis": {"type": "value", "name": "items"}, "yAxis": {"type": "category", "data": labels, "inverse": True},
            "series": series}


def csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    """Long format: section, model, key, value columns, so one file holds all three charts."""
    out: list[list[Any]] = [["section", "model", "other", "key", "mean", "std", "min", "max", "n"]]
    for row in data["accuracy"]:
        for s in row["subjects"]:
            out.append(["mcq_accuracy", row["model"], "", s["subject"], s["mean"], s["std"], s["min"], s["max"], s["n_runs"]])
    for row in data["turns"]:
        for t, v, n in row["points"]:
            out.append(["consultation_turn", row["model"], "", t, v, "", "", "", n])
    for p in data["pairs"]:
        for basis, res in (("judge", p["judged"]), ("rouge_l", p["rouge"])):
            for k in ("win", "tie", "loss"):
                out.append([f"win_tie_loss_{basis}", p["a"], p["b"], k, res.get(k), "", "", "", res.get("n")])
    return out
