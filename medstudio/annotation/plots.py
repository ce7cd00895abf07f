"""Small server-side SVG plots for the agreement pages (no JavaScript, no CDN: works offline)."""
from __future__ import annotations

from html import escape

from django.utils.safestring import SafeString, mark_safe


def _color(v: float | None) -> str:
    """-1..1 -> red..white..teal; None -> grey."""
    if v is None:
        return "#f3f4f6"
    v = max(-1.0, min(1.0, v))
    if v >= 0:
        r, g, b = (int(255 - (255 - c) * v) for c in (15, 118, 110))
    else:
        r, g, b = (int(255 - (255 - c) * -v) for c in (185, 28, 28))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(names: list[str], matrix: list[list[float | None]], *, title: str = "") -> SafeString:
    n = len(names)
    cell, left, top = 46, 150, 20
    w, h = left + cell * n + 10, top + cell * n + 80
    out = [f'<svg class="chart heatmap" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
           f'aria-label="{escape(title)}">']
    for i, row in enumerate(matrix):
        y = top + i * cell
        out.append(f'<text x="{left - 6}" y="{y + cell / 2 + 3}" text-anchor="end">{escape(names[i][:22])}</text>')
        for j, v in enumerate(row):
            x = left + j * cell
            label = "" if v is None else f"{v:.2f}"
            out.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{_color(v)}">'
                       f'<title>{escape(names[i])} / {escape(names[j])}: {label or "n/a"}</title></rect>')
            if label:
                dark = v is not None and abs(v) > 0.6
                out.append(f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 3}" text-anchor="middle" '
                           f'style="fill:{"#fff" if dark else "#1d2430"}">{label}</text>')
    for j, name in enumerate(names):
        x = left + j * cell + cell / 2
        y = top + n * cell + 8
        out.append(f'<text x="{x}" y="{y}" transform="rotate(40 {x} {y})">{escape(name[:22])}</text>')
    out.append("</svg>")
    return mark_safe("".join(out))


def histogram(counts: list[tuple[str, int]], *, title: str = "", width: int = 420, height: int = 160) -> SafeString:
    """Bars of (label, count), e.g. the spread between two ratings per item."""
    if not counts:
        return mark_safe("")
    peak = max(c for _, c in counts) or 1
    left, bottom = 30, 24
    bw = (width - left - 10) / len(counts)
    out = [f'<svg class="chart histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{escape(title)}">']
    for i, (label, c) in enumerate(counts):
        bh = (height - bottom - 14) * c / peak
        x = left + i * bw
        y = height - bottom - bh
        out.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bw - 4:.1f}" height="{bh:.1f}" fill="#0f766e">'
                   f'<title>{escape(label)}: {c}</title></rect>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{c}</text>')
    out.append("</svg>")
    return mark_safe("".join(out))
