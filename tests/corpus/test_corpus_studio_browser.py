"""A curator moves a corpus threshold in the browser: the counts and the histogram's markLine update
in place (HTMX), then Freeze runs the job and the selection has exactly the count shown."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medstudio.handoffs.models import CorpusSelection
from tests.corpus.test_corpus_selection_training import _scored_corpus
from tests.browser_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_curator_sets_corpus_thresholds_and_freezes(live_server, page, tmp_path, django_user_model):
    c, _d, out = _scored_corpus(tmp_path, scorers={"rules": {}, "pii": {}})
    rows = [r for p in sorted(Path(out).glob("*.scores.parquet")) for r in pq.read_table(p).to_pylist()]
    django_user_model.objects.create_user("cur-b", password="pw-cur-b", role="curator")
    log_in(page, live_server.url, "cur-b", "pw-cur-b")

    page.goto(f"{live_server.url}/curation/corpora/{c.pk}/")
    page.click("#studio-link")
    page.wait_for_selector("#hist-rules_value [data-chart-ready='1'] canvas")
    assert page.locator("#kept-docs").inner_text() == str(len(rows))
    page.evaluate("window.marker = 'same page'")

    chars = sorted(r["n_chars"] for r in rows)[len(rows) // 2]
    page.locator("input[name='max.rules_value']").fill("0.5")
    page.locator("input[name='min_chars']").fill(str(chars))
    want = [r for r in rows if r["rules_value"] <= 0.5 and r["n_chars"] >= chars]
    assert 0 < len(want) < len(rows)
    page.wait_for_function(f"document.querySelector('#kept-docs').innerText === '{len(want)}'")
    page.wait_for_function("""() => { const el = document.querySelector('#hist-rules_value [data-chart-ready="1"]');
      const ch = el && echarts.getInstanceByDom(el); const ml = ch && ch.getOption().series[0].markLine;
      return ml && ml.data.length === 1 && ml.data[0].xAxis === 0.5; }""")
    assert page.evaluate("window.marker") == "same page"

    page.fill("input[name=selection_name]", "browser-cut")
    page.click("button:has-text('Freeze')")
    page.wait_for_url("**/jobs/*/")
    sel = CorpusSelection.objects.get(name="browser-cut")
    assert sel.n_records == len(want)
