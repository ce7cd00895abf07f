"""The run page's curves are ECharts options with the run's metrics (and compared runs, dashed), and
its logs show no progress-bar control codes: only the final state of each redrawn tqdm line."""
import pytest
from django.urls import reverse

from tests.charts import chart_options
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from training import services
from training.models import TrainingRun
from training.pipeline import launcher
from training.pipeline.specs import default_spec

TQDM = ("loading\n\x1b[32mINFO\x1b[0m start\n"
        "  0%|          | 0/10 [00:00<?, ?it/s]\r 50%|#####     | 5/10 [00:01<00:01]\r100%|##########| 10/10 [00:02<00:00]\n"
        "\x1b[A\x1b[2Kdone\r\n")


def test_clean_console_keeps_the_final_state_of_each_line(tmp_path):
    assert launcher.clean_console(TQDM) == "loading\nINFO start\n100%|##########| 10/10 [00:02<00:00]\ndone\n"
    (tmp_path / "train.log").write_text(TQDM)
    tail = launcher.log_tail(tmp_path / "train.log", 3)
    assert tail == "INFO start\n100%|##########| 10/10 [00:02<00:00]\ndone"


def _log(step, loss):
    return {"event": "log", "step": step, "max_steps": 10, "metrics": {"loss": loss, "learning_rate": 1e-5 * step}}


@pytest.mark.django_db
def test_curves_compare_and_clean_log(client, django_user_model, make_dataset, tmp_path, settings, tiny_llama_path):  # noqa: F811
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    django_user_model.objects.create_user(username="doc", password="pw-doc-123", role="clinician")
    ds = make_dataset("docs", "document", [{"id": "d1", "text": "Hypertension is treated with lifestyle changes."}])
    base = services.model_ref_create(actor=None, name="base-model", path=tiny_llama_path)
    runs = []
    for losses in ((3.0, 2.5, 2.0), (3.3, 2.9)):
        run = services.training_run_start(actor=None, spec=default_spec("cpt-stable", base.path, max_steps=10), base_model=base,
                                          data_ref={"type": "dataset", "id": ds.pk}, enqueue=False)
        services.run_events_record(run=run, rows=[_log(i + 1, v) for i, v in enumerate(losses)])
        runs.append(run)
    first, second = runs
    services.training_run_finish(run=TrainingRun.objects.get(pk=first.pk), status="failed", error="exited with code 1",
                                 log_tail=TQDM)
    client.force_login(django_user_model.objects.get(username="doc"))
    url = reverse("training:run_detail", args=[first.pk])
    html = client.get(url).content.decode()
    charts = chart_options(html)
    assert set(charts) == {"Loss", "Learning rate"}  # the others have no metric
    assert charts["Loss"]["series"][0]["data"] == [[1, 3.0], [2, 2.5], [3, 2.0]]
    assert 'data-chart-kind="curves"' in html and f'<option value="{second.pk}">' in html
    log = html.split('id="log-tail">')[1].split("</pre>")[0]
    assert "\x1b" not in log and "\r" not in log and "50%" not in log and "100%|##########| 10/10" in log
    # No exception in the log: the cause is the worker's own words, shown once, above the log tail.
    assert html.index('id="run-cause"') < html.index('id="log-tail"') and "exited with code 1" in html
    services.training_run_finish(run=TrainingRun.objects.get(pk=second.pk), status="failed", error="exited with code 1",
                                 log_tail="Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n")
    zh = client.get(reverse("training:run_detail", args=[second.pk]), HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    cause = zh.split('id="run-cause">')[1].split("</p>")[0]
    assert "CUDA" not in cause and "GPU" in cause  # the known failure, in Chinese, from the log tail
    assert "exited with code 1" in zh  # the worker's own words stay on the page
    # Overlay: the other run's loss, dashed, named after it.
    charts = chart_options(client.get(url, {"compare": second.pk}).content.decode())
    names = [s["name"] for s in charts["Loss"]["series"]]
    assert names == ["loss", f"run {second.pk} · loss"]
    assert charts["Loss"]["series"][1]["lineStyle"]["type"] == "dashed" and charts["Loss"]["series"][1]["data"] == [[1, 3.3], [2, 2.9]]
