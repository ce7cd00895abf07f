"""Inline SVG histograms, drawn server-side (no JavaScript library, no CDN: pages work offline)."""
from __future__ import annotations

from html import escape

PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#84cc16", "#ec4899", "#64748b"]


def histogram_svg(hist: dict, lo_mark: float | None = None, hi_mark: float | None = None,
                  width: int = 420, height: int = 140) -> str:
    """Stacked bars per series; the region a bound drops is shaded and each threshold is a red line."""
    series = hist.get("series") or {}
    lo, hi, bins = hist.get("lo"), hist.get("hi"), hist.get("bins", 30)
    name = escape(str(hist.get("scorer", "")))
    if lo is None or not series:
        return f'<svg class="hist" role="img" aria-label="{name}: no values" width="{width}" height="40"><text x="4" y="24" font-size="12">no values</text></svg>'
    span = (hi - lo) or 1.0
    pad_b, pad_t = 18, 6
    plot_h = height - pad_b - pad_t
    stacks = [sum(s[i] for s in series.values()) for i in range(bins)]
    top = max(stacks) or 1
    bw = width / bins
    parts = [f'<svg class="hist" role="img" aria-label="histogram of {name}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(bins):
        y = pad_t + plot_h
        for j, (label, counts) in enumerate(series.items()):
            n = counts[i]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            left = lo + span * i / bins
            parts.append(f'<rect x="{i * bw + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(label)} [{left:.3g}, {left + span / bins:.3g}): {n}</title></rect>')

    def x_of(v: float) -> float:
        return max(0.0, min(width, (v - lo) / span * width))

    if lo_mark is not None:
        x = x_of(lo_mark)
        parts.append(f'<rect class="dropped" x="0" y="{pad_t}" width="{x:.1f}" height="{plot_h}" fill="#000" fill-opacity="0.12"/>')
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{pad_t + plot_h}" stroke="#dc2626" stroke-width="2"/>')
    if hi_mark is not None:
        x = x_of(hi_mark)
        parts.append(f'<rect class="dropped" x="{x:.1f}" y="{pad_t}" width="{width - x:.1f}" height="{plot_h}" fill="#000" fill-opacity="0.12"/>')
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{pad_t + plot_h}" stroke="#dc2626" stroke-width="2"/>')
    parts.append(f'<text x="0" y="{height - 4}" font-size="11">{lo:.3g}</text>')
    parts.append(f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">{hi:.3g}</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 4}" font-size="11" text-anchor="middle">max bin {top}</text>')
    parts.append("</svg>")
    if len(series) > 1:
        legend = " ".join(f'<span class="small"><span style="color:{PALETTE[j % len(PALETTE)]}">&#9632;</span> {escape(k)}</span>'
                          for j, k in enumerate(series))
        parts.append(f'<div class="legend">{legend}</div>')
    return "".join(parts)
