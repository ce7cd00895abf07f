"""Agreement charts as ECharts options (drawn by static/charts.js through {% echart %})."""
from __future__ import annotations

from medstudio.chart_options import bars, heatmap as _heatmap, heatmap_height


def heatmap(names: list[str], matrix: list[list[float | None]], *, title: str = "") -> dict:
    """Pairwise agreement, -1 (red) .. 0 (white) .. 1 (teal); rows and columns labelled in full."""
    return _heatmap(names, matrix, title=title)


def heatmap_px(n: int) -> str:
    return heatmap_height(n)


def histogram(counts: list[tuple[str, int]], *, title: str = "") -> dict | None:
    """Bars of (label, count), e.g. the spread between ratings per item."""
    if not counts:
        return None
    option = bars([label for label, _ in counts], {"items": [c for _, c in counts]}, title=title, stacked=False)
    option["series"][0].update(label={"show": True, "position": "top", "formatter": "{c}"}, barMaxWidth=56)
    option["grid"]["top"] = 28  # room for the count above the tallest bar
    return option
