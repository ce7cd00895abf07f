"""Inline SVG line charts drawn server-side (no JavaScript library, no CDN: pages work offline)."""
from __future__ import annotations

import math
from html import escape

COLORS = ("#0f766e", "#b45309", "#1d4ed8", "#be123c", "#7c3aed")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    return f"{v:.2e}" if a < 1e-3 or a >= 1e5 else f"{v:.4g}"


def line_chart(title: str, series: dict[str, list[tuple[int, float]]], width: int = 420, height: int = 180) -> str:
    """One SVG with a polyline per series (x = step), min/max labels and a legend."""
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    head = f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
    head += f'<text x="4" y="12">{escape(title)}</text>'
    if not pts:
        return head + f'<text x="{width // 2 - 30}" y="{height // 2}">no data yet</text></svg>'
    left, right, top, bottom = 56, 8, 20, 22
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    sx = (width - left - right) / (x1 - x0)
    sy = (height - top - bottom) / (y1 - y0)
    out = [head,
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#e5e7eb"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#e5e7eb"/>',
           f'<text x="2" y="{top + 8}">{_fmt(y1)}</text><text x="2" y="{height - bottom}">{_fmt(y0)}</text>',
           f'<text x="{left}" y="{height - 6}">step {x0}</text><text x="{width - right - 60}" y="{height - 6}">step {x1}</text>']
    for i, (name, s) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{left + (x - x0) * sx:.1f},{height - bottom - (y - y0) * sy:.1f}" for x, y in s if math.isfinite(y))
        if len(s) == 1:
            x, y = s[0]
            out.append(f'<circle cx="{left + (x - x0) * sx:.1f}" cy="{height - bottom - (y - y0) * sy:.1f}" r="2.5" fill="{color}"/>')
        else:
            out.append(f'<polyline data-series="{escape(name)}" fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
        out.append(f'<text x="{left + 8 + 110 * i}" y="{top + 10}" style="fill:{color}">{escape(name)} {_fmt(s[-1][1])}</text>')
    out.append("</svg>")
    return "".join(out)
