"""The {% echart %} tag: escaped option JSON, unique element ids, library served from static."""

import json
import re

from django.contrib.staticfiles import finders
from django.template import Context, Template


def render(option, extra=""):
    return Template("{% echart o " + extra + " %}").render(Context({"o": option}))


def test_option_is_escaped_json_and_ids_are_unique():
    hostile = {"series": [{"type": "line", "name": "</script><b>x", "data": [1, 2]}]}
    first, second = render(hostile, 'kind="curves" height="300px"'), render(hostile)
    assert "</script><b>" not in first
    ids = re.findall(r'data-chart="([^"]+)"', first + second)
    assert len(ids) == 2 and ids[0] != ids[1]
    payload = re.search(r'<script id="%s-option" type="application/json">(.*?)</script>' % ids[0], first)
    assert json.loads(payload.group(1)) == hostile
    assert 'data-chart-kind="curves"' in first and "height:300px" in first


def test_echarts_is_served_from_static_files():
    assert finders.find("vendor/echarts/echarts.min.js"), "run `make setup` (npm ci installs ECharts)"
    assert finders.find("charts.js")
