"""Studio histograms as ECharts options (drawn by static/charts.js): stacked bins per series
(all, or per language/source), each bound a red markLine and the range it drops shaded."""
from __future__ import annotations

from medstudio.chart_options import bars, histogram


def histogram_option(hist: dict, lo_mark: float | None = None, hi_mark: float | None = None) -> dict | None:
    """None when the scorer has no values (the page says so instead of drawing an empty chart)."""
    series = hist.get("series") or {}
    lo, hi = hist.get("lo"), hist.get("hi")
    if lo is None or not series:
        return None
    marks, dropped = [], []
    if lo_mark is not None:
        marks.append((lo_mark, f"min {lo_mark:g}"))
        dropped.append((None, lo_mark))
    if hi_mark is not None:
        marks.append((hi_mark, f"max {hi_mark:g}"))
        dropped.append((hi_mark, None))
    option = histogram(lo, hi if hi > lo else lo + 1.0, series, marks=marks, dropped=dropped)
    if lo_mark is not None and lo_mark < lo or hi_mark is not None and hi_mark > hi:
        # Keep a bound set outside the values' range on the axis.
        option["xAxis"]["min"] = min(lo, lo_mark if lo_mark is not None else lo)
        option["xAxis"]["max"] = max(hi, hi_mark if hi_mark is not None else hi)
    return option


def plan_option(plan: dict, names: dict[str, str] | None = None) -> dict | None:
    """A mixture plan as stacked bars: planned tokens per (category, language), one stack per source."""
    cells = (plan or {}).get("cells") or []
    if not cells:
        return None
    names = names or {}
    keys = sorted({(c["category"], c["lang"]) for c in cells})
    sources = sorted({str(c["source"]) for c in cells})
    series = {names.get(s, f"selection #{s}"): [0.0] * len(keys) for s in sources}
    for c in cells:
        label = names.get(str(c["source"]), f"selection #{c['source']}")
        series[label][keys.index((c["category"], c["lang"]))] += round(float(c["planned"]))
    option = bars([f"{cat} · {lang}" for cat, lang in keys], series, value_name="tokens")
    # Beside each planned stack, what the sources hold (grey): a taller planned bar is up-sampled.
    available = [0] * len(keys)
    for c in cells:
        available[keys.index((c["category"], c["lang"]))] += int(c["available"])
    option["series"].append({"name": "available", "type": "bar", "stack": "available", "data": available,
                             "color": "#cbd5e1", "emphasis": {"focus": "series"}})
    option["legend"]["show"] = True
    option["grid"]["bottom"] = 36
    for s in option["series"]:
        s["barMaxWidth"] = 64
    return option
