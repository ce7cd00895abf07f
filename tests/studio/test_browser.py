"""A curator moves a threshold, sees the count change without a reload, saves the recipe, applies it, exports."""
from __future__ import annotations

import pytest

from curation.studio.models import SelectionExport
from medstudio.handoffs.models import Selection

from .test_flow import kept_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_curator_thresholds_saves_applies_and_exports(live_server, page, scored):
    qa, docs = scored
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "curator1")
    page.fill("#id_password", "pw-curator")
    page.click("button[type=submit]")

    page.goto(f"{live_server.url}/studio/")
    page.check(f"input[name=ds][value='{qa.pk}']")
    page.click("text=Open studio")
    page.wait_for_selector("#hist-t_rater [data-chart-ready='1'] canvas")
    before = page.locator("#kept-records").inner_text()
    assert before == f"{qa.n_records:,}"
    page.evaluate("window.marker = 'same page'")

    # drag the rater's minimum slider: the number box follows and the counts update in place
    page.locator("input[name='smin.t_rater']").fill("2.5")
    t = float(page.locator("input[name='min.t_rater']").input_value())  # the slider snaps to its step
    assert abs(t - 2.5) < 0.05
    expected = len(kept_ids([qa], {"bounds": [{"scorer": "t_rater", "min": t}]}))
    assert expected < qa.n_records
    page.wait_for_function(f"document.querySelector('#kept-records').innerText === '{expected:,}'")
    # The histogram is redrawn with the bound as a red markLine (the chart's option, read from ECharts).
    page.wait_for_function("""() => { const el = document.querySelector('#hist-t_rater [data-chart-ready="1"]');
      const ch = el && echarts.getInstanceByDom(el); const ml = ch && ch.getOption().series[0].markLine;
      return ml && ml.data.length === 1; }""")
    mark = page.evaluate("""echarts.getInstanceByDom(document.querySelector('#hist-t_rater [data-chart]'))
      .getOption().series[0].markLine.data[0].xAxis""")
    assert abs(mark - t) < 1e-9
    # then tick a filter: counts shrink again
    page.check("input[name='flag.t_rules']")
    expected2 = len(kept_ids([qa], {"bounds": [{"scorer": "t_rater", "min": t}], "flags": ["t_rules"]}))
    assert expected2 < expected
    page.wait_for_function(f"document.querySelector('#kept-records').innerText === '{expected2:,}'")
    page.wait_for_selector("#samples h4")
    assert page.evaluate("window.marker") == "same page"

    page.fill("input[name=recipe_name]", "browser-recipe")
    page.click("text=Save version")
    page.wait_for_selector("#saved-link")
    assert "browser-recipe v1" in page.locator("#saved-link").inner_text()
    assert page.evaluate("window.marker") == "same page"

    page.click("text=Apply (freeze a selection)")
    page.wait_for_selector("#sel-records")
    sel = Selection.objects.get(recipe_version__recipe__name="browser-recipe")
    assert page.locator("#sel-status").inner_text() == "ready"
    assert page.locator("#sel-records").inner_text() == f"{expected2:,}" == f"{sel.n_records:,}"

    page.select_option("select[name=format]", "messages")
    page.click("button:has-text('Export')")
    page.wait_for_selector(".export-file")
    export = SelectionExport.objects.get(selection=sel)
    assert export.status == "succeeded" and export.n_written == expected2
    with page.expect_download() as dl:
        page.click(f"a.export-file:has-text('{export.files[0]}')")
    assert dl.value.suggested_filename == export.files[0]
