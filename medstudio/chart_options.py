"""ECharts option builders shared by the stages' pages (drawn by static/charts.js via {% echart %}).

Each function returns a plain dict (an ECharts option) built from numbers and names; the tag
escapes it into the page as JSON. Keep them small: a page adds its own touches to the dict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

PALETTE = ["#0f766e", "#b45309", "#1d4ed8", "#be123c", "#7c3aed", "#0891b2", "#65a30d", "#db2777", "#64748b"]
THRESHOLD = "#dc2626"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def curves(title: str, series: Mapping[str, Sequence[tuple[float, float]]], *, x_name: str = "step",
           dashed: Iterable[str] = ()) -> dict:
    """Line curves over a value x axis (one series per name; names in `dashed` are drawn dashed)."""
    dashed = set(dashed)
    out = []
    for i, (name, pts) in enumerate(series.items()):
        data = [[x, y] for x, y in pts if _finite(y)]
        out.append({"name": name, "type": "line", "data": data, "showSymbol": len(data) <= 1, "symbolSize": 5,
                    "lineStyle": {"width": 1.5, "type": "dashed" if name in dashed else "solid"},
                    "color": PALETTE[i % len(PALETTE)], "emphasis": {"focus": "series"}})
    option = {
        "title": {"text": title, "left": 0, "top": 0, "textStyle": {"fontSize": 13}},
        # The legend sits under the title (it scrolls when several runs are overlaid).
        "legend": {"type": "scroll", "top": 22, "left": 0, "right": 0},
        "grid": {"left": 8, "right": 16, "top": 56, "bottom": 44, "containLabel": True},
        "xAxis": {"type": "value", "name": x_name, "nameLocation": "middle", "nameGap": 22, "min": "dataMin", "max": "dataMax"},
        "yAxis": {"type": "value", "scale": True},
        "series": out,
    }
    if not any(s["data"] for s in out):
        option["graphic"] = [{"type": "text", "left": "center", "top": "middle", "style": {"text": "no data yet", "fill": "#6b7280"}}]
    return option


def histogram(lo: float, hi: float, series: Mapping[str, Sequence[int]], *, title: str = "",
              marks: Sequence[tuple[float, str]] = (), dropped: Sequence[tuple[float | None, float | None]] = (),
              x_name: str = "") -> dict:
    """Stacked equal-width bins from lo to hi, one series per label (counts per bin).

    `marks` are thresholds drawn as vertical markLines (value, label); `dropped` are (from, to)
    ranges shaded as what a bound drops (None = the axis end).
    """
    names = list(series)
    bins = len(series[names[0]]) if names else 0
    width = ((hi - lo) / bins) if bins and hi > lo else 1.0
    out = []
    for j, name in enumerate(names):
        data = [[lo + width * (i + 0.5), n] for i, n in enumerate(series[name])]
        out.append({"name": name, "type": "bar", "stack": "all", "data": data, "barWidth": "96%",
                    "barCategoryGap": 0, "color": PALETTE[j % len(PALETTE)]})
    if out:
        first = out[0]
        if marks:
            first["markLine"] = {"symbol": "none", "silent": True, "animation": False,
                                 "lineStyle": {"color": THRESHOLD, "width": 2, "type": "solid"},
                                 "label": {"formatter": "{b}", "color": THRESHOLD},
                                 "data": [{"xAxis": v, "name": label} for v, label in marks]}
        if dropped:
            first["markArea"] = {"silent": True, "itemStyle": {"color": "rgba(0,0,0,0.08)"},
                                 "data": [[{"xAxis": lo if a is None else a}, {"xAxis": hi if b is None else b}] for a, b in dropped]}
    span = hi - lo if hi > lo else 1.0
    return {
        "title": {"text": title, "textStyle": {"fontSize": 13}} if title else {"show": False},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"show": len(names) > 1, "type": "scroll", "bottom": 0},
        "grid": {"left": 8, "right": 16, "top": 28 if title else 16, "bottom": 28 if len(names) > 1 else 8, "containLabel": True},
        # The axis spans the values exactly; its end labels (e.g. 0.0161) are left out, the ticks read better.
        "xAxis": {"type": "value", "min": lo, "max": lo + span, "name": x_name, "splitLine": {"show": False},
                  "axisLabel": {"showMinLabel": False, "showMaxLabel": False}},
        "yAxis": {"type": "value", "minInterval": 1},
        "series": out,
    }


def bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str = "", stacked: bool = True,
         horizontal: bool = False, value_name: str = "") -> dict:
    """Bars per category, one series per name (stacked unless told otherwise)."""
    cat = {"type": "category", "data": list(categories), "axisLabel": {"interval": 0, "overflow": "truncate", "width": 160}}
    val = {"type": "value", "name": value_name}
    out = [{"name": n, "type": "bar", "data": list(v), "color": PALETTE[j % len(PALETTE)],
            "emphasis": {"focus": "series"}, **({"stack": "all"} if stacked else {})} for j, (n, v) in enumerate(series.items())]
    if horizontal:
        cat["inverse"] = True
    return {
        "title": {"text": title, "textStyle": {"fontSize": 13}} if title else {"show": False},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"show": len(out) > 1, "type": "scroll", "bottom": 0},
        "grid": {"left": 8, "right": 24, "top": 28 if title else 12, "bottom": 36 if len(out) > 1 else 8, "containLabel": True},
        "xAxis": val if horizontal else cat, "yAxis": cat if horizontal else val,
        "series": out,
    }


def heatmap(names: Sequence[str], matrix: Sequence[Sequence[float | None]], *, title: str = "",
            lo: float = -1.0, hi: float = 1.0) -> dict:
    """A square agreement matrix (rows and columns = names), red (lo) .. white .. teal (hi), values written in."""
    data = [[j, i, round(v, 3)] for i, row in enumerate(matrix) for j, v in enumerate(row) if _finite(v)]
    label = {"interval": 0, "overflow": "break", "width": 140}
    return {
        "title": {"text": title, "textStyle": {"fontSize": 13}} if title else {"show": False},
        "tooltip": {"position": "top"},
        "grid": {"left": 8, "right": 16, "top": 28 if title else 8, "bottom": 56, "containLabel": True},
        "xAxis": {"type": "category", "data": list(names), "axisLabel": {**label, "rotate": 30 if len(names) > 3 else 0},
                  "splitArea": {"show": True}},
        "yAxis": {"type": "category", "data": list(names), "inverse": True, "axisLabel": label, "splitArea": {"show": True}},
        "visualMap": {"min": lo, "max": hi, "calculable": True, "orient": "horizontal", "left": "center", "bottom": 0,
                      "itemHeight": 120, "inRange": {"color": ["#b91c1c", "#ffffff", "#0f766e"]}},
        "series": [{"type": "heatmap", "name": title, "data": data, "label": {"show": True, "formatter": "{@[2]}"},
                    "emphasis": {"itemStyle": {"borderColor": "#1d2430", "borderWidth": 1}}}],
    }


def heatmap_height(n: int) -> str:
    """A height that gives each of n rows room for its label and value."""
    return f"{max(220, 110 + 52 * n)}px"
