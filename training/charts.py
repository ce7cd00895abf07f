"""Training curves as ECharts options (drawn by static/charts.js, kind "curves": hover, zoom,
smoothing, log scale). Other runs can be overlaid: their series are dashed and named after the run.
Pure Python (no Django, no heavy library)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from medstudio.chart_options import curves

Series = Mapping[str, Sequence[tuple[int, float]]]


def run_label(run_id: int, name: str = "") -> str:
    return f"run {run_id}" + (f" {name}" if name else "")


def curve_options(title: str, names: Sequence[str], series: Series,
                  others: Sequence[tuple[str, Series]] = ()) -> dict | None:
    """One chart: this run's metrics `names` (solid), then each other run's (dashed, "run N · metric").

    Returns None when no run has any of the metrics (the page leaves the chart out), except for
    the loss and learning-rate charts, which always show (empty until the first step is logged).
    """
    present: dict[str, Sequence[tuple[int, float]]] = {n: series[n] for n in names if n in series}
    dashed = []
    for label, other in others:
        for n in names:
            if n in other:
                key = f"{label} · {n}"
                present[key] = other[n]
                dashed.append(key)
    if not present and title not in ("Loss", "Learning rate"):
        return None
    return curves(title, present, dashed=dashed)
