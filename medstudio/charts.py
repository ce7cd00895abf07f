"""Charts: Apache ECharts options built in Python, drawn by static/charts.js.

Why ECharts: one library covers every chart the app needs (line curves with hover and zoom,
histograms with a marked threshold, heatmaps, stacked bars) without plugins, renders to canvas
(thousands of training steps stay fast), and resizes with its container. It is served from
static files (`make setup` installs it with npm), never from a CDN.

Usage in a template: ``{% echart option height="280px" %}`` where ``option`` is a plain dict
(an ECharts option). The option goes into the page through ``json_script`` (escaped), and
charts.js turns each ``[data-chart]`` element into a chart, also after HTMX swaps. Pages can add
behaviour per chart with ``kind`` (see ``MedCharts.kinds`` in charts.js), e.g. ``kind="curves"``
adds smoothing and a log-scale toggle.
"""

from __future__ import annotations

import itertools

from django import template
from django.utils.html import format_html, json_script

register = template.Library()
_ids = itertools.count(1)


@register.simple_tag
def echart(option: dict, height: str = "280px", kind: str = "", label: str = "") -> str:
    """Render an ECharts option as a chart element (a div plus its escaped JSON option)."""
    element_id = f"echart-{next(_ids)}"
    return format_html(
        '<div class="chart" data-chart="{}" data-chart-kind="{}" role="img" aria-label="{}" '
        'style="height:{}">{}</div>{}',
        element_id, kind, label, height,
        "Loading chart…", json_script(option, element_id + "-option"),
    )
