"""The scorer run page draws its score values as a histogram (kept / dropped stacked, the threshold a
markLine), and its drop reasons as bars with the table's counts."""
import pytest
from django.urls import reverse

from medstudio.handoffs.models import Score, ScorerRun
from tests.charts import chart_options


@pytest.mark.django_db
def test_value_histogram_with_threshold(make_dataset, client_for):
    ds = make_dataset("docs", "document", [{"id": f"d{i}", "text": f"record number {i} about fever"} for i in range(40)])
    run = ScorerRun.objects.create(dataset=ds, scorer="minhash", status="succeeded",
                                   summary={"config": {"threshold": 0.8}})
    recs = list(ds.records.order_by("pk"))
    Score.objects.bulk_create([Score(run=run, record=r, value=i / 39, keep=i / 39 < 0.8, reason="" if i / 39 < 0.8 else "duplicate")
                               for i, r in enumerate(recs)])
    html = client_for("curator").get(reverse("curation:run_detail", args=[run.pk])).content.decode()
    charts = chart_options(html)
    values = charts["score values, kept and dropped"]
    by_name = {s["name"]: s for s in values["series"]}
    assert set(by_name) == {"kept", "dropped"}
    assert sum(n for _, n in by_name["kept"]["data"]) == 32 and sum(n for _, n in by_name["dropped"]["data"]) == 8
    assert values["series"][0]["markLine"]["data"] == [{"xAxis": 0.8, "name": "threshold 0.8"}]
    reasons = charts["drops by reason"]
    assert reasons["yAxis"]["data"] == ["duplicate"] and reasons["series"][0]["data"] == [8]
