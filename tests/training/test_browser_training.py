"""In headless Chromium: the run page redraws its curves and status while a run streams (HTMX
polling, no reload); "next stage" opens the launch form pre-filled; changing the stage reloads the
paper defaults; a clinician sees the run but no launch/cancel controls.

The run's progress is fed through the same services the training job calls (no training process
here: the job path is covered by test_runs.py and test_chain.py)."""
import pytest

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from training import services
from training.models import TrainingRun
from training.pipeline.specs import default_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def _log(step, loss):
    return {"event": "log", "step": step, "max_steps": 10,
            "metrics": {"loss": loss, "learning_rate": 1e-5 * step, "grad_norm": 1.0, "tokens_per_second": 100.0 + step}}


def test_live_curves_next_stage_and_roles(live_server, page, django_user_model, make_dataset, tmp_path, settings,
                                          tiny_llama_path):  # noqa: F811
    settings.MEDSTUDIO_TRAINING_DIR = tmp_path / "runs"
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    django_user_model.objects.create_user(username="doc", password="pw-doc-123", role="clinician")
    ds = make_dataset("docs", "document", [{"id": "d1", "text": "Hypertension is treated with lifestyle changes."}])
    # A loadable model directory: launch runs the pre-flight checks (the run itself is fed below).
    base = services.model_ref_create(actor=None, name="base-model", path=tiny_llama_path)
    run = services.training_run_start(actor=None, spec=default_spec("cpt-stable", base.path, max_steps=10), base_model=base,
                                      data_ref={"type": "dataset", "id": ds.pk}, enqueue=False)
    services.training_run_mark_started(run=run, data_info={"n_records": 1}, max_steps=10)
    run = TrainingRun.objects.get(pk=run.pk)
    services.run_events_record(run=run, rows=[_log(1, 3.0), _log(2, 2.5)])

    _login(page, live_server.url, "boss", "pw-boss-123")
    page.goto(f"{live_server.url}/training/runs/{run.pk}/")
    page.evaluate("window.marker = 'same page'")
    assert page.locator("#run-status").inner_text() == "running"
    page.wait_for_function("document.querySelectorAll('#charts [data-chart-ready=\"1\"] canvas').length >= 4")
    # The reader's smoothing survives the page's polling (the charts are re-rendered every 2 s).
    page.locator("#charts .chart-tools input[data-role=smooth]").first.fill("0.6")

    # The worker streams more steps and a checkpoint, then the run ends: the page follows by polling.
    ckpt_dir = tmp_path / "runs" / "ckpt"
    services.run_events_record(run=run, rows=[_log(3, 2.0), _log(4, 1.5),
                                              {"event": "checkpoint", "step": 4, "path": str(ckpt_dir)}])
    page.wait_for_function("document.querySelector('#checkpoints').textContent.includes('cpt-stable-run')", timeout=15000)
    services.checkpoint_register(run=run, step=4, path=str(tmp_path / "final"), is_final=True)
    services.training_run_finish(run=TrainingRun.objects.get(pk=run.pk), status="succeeded")
    page.wait_for_function("document.querySelector('#run-status').textContent.trim() === 'succeeded'", timeout=15000)
    assert page.evaluate("window.marker") == "same page"
    loss_js = """() => { const el = [...document.querySelectorAll('#charts [data-chart-ready="1"]')]
      .find(e => e.getAttribute('aria-label') === 'Loss'); const ch = el && echarts.getInstanceByDom(el);
      return ch ? ch.getOption().series : null; }"""
    page.wait_for_function(f"({loss_js})() && ({loss_js})()[0].data.length === 4")
    loss = page.evaluate(loss_js)[0]
    assert loss["name"] == "loss" and [p[0] for p in loss["data"]] == [1, 2, 3, 4]
    assert page.locator("#charts .chart-tools input[data-role=smooth]").first.input_value() == "0.6"

    # "Compare with" overlays another run of the same stage (dashed), re-rendered in place by HTMX.
    other_run = services.training_run_start(actor=None, spec=default_spec("cpt-stable", base.path, max_steps=10), base_model=base,
                                            data_ref={"type": "dataset", "id": ds.pk}, enqueue=False)
    services.run_events_record(run=other_run, rows=[_log(1, 3.5), _log(2, 3.1)])
    page.reload()
    page.select_option("#compare", str(other_run.pk))
    page.wait_for_function(f"({loss_js})() && ({loss_js})().length === 2")
    overlay = page.evaluate(loss_js)[1]
    assert overlay["name"] == f"run {other_run.pk} · loss" and overlay["lineStyle"]["type"] == "dashed"
    assert [p[1] for p in overlay["data"]] == [3.5, 3.1]
    assert f"compare={other_run.pk}" in page.url

    # "Start cpt-boost from this" opens the launch form with the boost defaults and that checkpoint.
    page.locator("a.next-stage").first.click()
    page.wait_for_selector("#run-form")
    assert page.locator("#id_stage").input_value() == "cpt-boost"
    assert page.locator("input[name=learning_rate]").input_value() == "2e-06"
    chosen = page.locator("#id_base_model").input_value()
    assert chosen and chosen != str(base.pk)
    page.evaluate("window.marker = 'form page'")
    page.select_option("#id_stage", "dpo")  # HTMX reloads the form with the DPO defaults
    page.wait_for_function("document.querySelector('input[name=learning_rate]').value === '1e-07'")
    assert page.locator("input[name=global_batch_size]").input_value() == "96"
    assert page.locator("input[name=beta]").input_value() == "0.03"
    assert page.locator("#id_base_model").input_value() == chosen
    assert page.evaluate("window.marker") == "form page"

    other = page.context.browser.new_context().new_page()
    try:
        _login(other, live_server.url, "doc", "pw-doc-123")
        other.goto(f"{live_server.url}/training/runs/{run.pk}/")
        assert other.locator("#run-status").inner_text() == "succeeded"
        assert other.locator("a.next-stage").count() == 0 and other.locator("#cancel").count() == 0
        other.goto(f"{live_server.url}/training/")
        assert other.locator("text=New run").count() == 0
    finally:
        other.context.close()
