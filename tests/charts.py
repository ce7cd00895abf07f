"""Read the ECharts options a page embeds through {% echart %} (medstudio/charts.py)."""
import json
import re

_OPTION = re.compile(r'<div class="chart" data-chart="([^"]+)"[^>]*aria-label="([^"]*)"[^>]*>.*?</div>'
                     r'<script id="\1-option" type="application/json">(.*?)</script>', re.S)


def chart_options(html: str) -> dict[str, dict]:
    """{aria label: option} for every chart on the page (a later chart with the same label wins)."""
    import html as html_lib

    return {html_lib.unescape(label): json.loads(payload) for _, label, payload in _OPTION.findall(html)}
