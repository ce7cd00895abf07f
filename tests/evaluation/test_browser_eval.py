"""An admin launches an MCQ evaluation from the form and reads the leaderboard chart, in headless Chromium."""
import pytest

from tests.evaluation.test_eval_jobs import _cmmlu, mcq_replier
from tests.browser_steps import select_and_settle
from tests.fakes.openai_server import fake_openai_server

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_runs_mcq_benchmark_and_sees_leaderboard_chart(live_server, page, django_user_model, make_dataset, shared_data):
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    rows = _cmmlu(shared_data, per_subject=2)
    ds = make_dataset("cmmlu-browser", "mcq", rows)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "pw-boss-123")
    page.click("button[type=submit]")
    with fake_openai_server(chat=mcq_replier(rows, lambda i, s: i % 2 == 0)) as url:
        page.goto(f"{live_server.url}/evaluation/")
        page.click("text=New evaluation")
        select_and_settle(page, "#id_kind", "mcq")
        page.select_option("#id_dataset", str(ds.pk))
        page.fill("#id_model_name", "scripted-bot")
        select_and_settle(page, "#id_backend", "openai")
        page.fill("#id_base_url", url)
        page.fill("#id_remote_model", "m")
        page.fill("#id_seeds", "0")
        page.click("#eval-form button[type=submit]")
        page.wait_for_selector("#acc-mean")
    expected = sum(1 for i in range(len(rows)) if i % 2 == 0 and i % 7 != 3) / len(rows)
    assert float(page.locator("#acc-mean").inner_text()) == pytest.approx(expected, abs=1e-4)
    assert page.locator("#per-subject tbody tr").count() == 3
    page.click("text=leaderboard")
    bars = page.locator("#subject-chart rect.bar")
    assert bars.count() == 3
    assert "scripted-bot" in page.locator("#leaderboard").inner_text()
    widths = [bars.nth(i).bounding_box()["width"] for i in range(3)]
    assert any(w > 0 for w in widths)
