"""Issue 18.1 in headless Chromium: a job page goes from running to succeeded without a reload, then
shows the result in words, a link to what was made and no Cancel button."""
from pathlib import Path

import pytest

from medstudio.jobs.models import Job, JobStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/shots")


def test_job_page_updates_itself_until_succeeded(live_server, page, django_user_model):
    user = django_user_model.objects.create_user(username="cur-live", password="pw-cur-123", role="curator")
    job = Job.objects.create(kind="curation.score", status=JobStatus.RUNNING, params={"run_id": 41, "id_from": 1, "id_to": 1147},
                             done=300, total=1147, created_by=user)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-cur-123")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    assert page.locator("h1").inner_text().startswith("Scoring")
    assert page.locator("#job-status").inner_text() == "Running"
    assert page.locator("#job-progress button", has_text="Cancel").count() == 1
    page.evaluate("window.marker = 'same page'")

    Job.objects.filter(pk=job.pk).update(done=700)
    page.wait_for_function("document.querySelector('#job-progress').textContent.includes('700 / 1147')")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, done=1147, result={"run_id": 41, "scored": 1147})
    page.wait_for_function("document.querySelector('#job-status').textContent.trim() === 'Succeeded'", timeout=10000)

    assert page.evaluate("window.marker") == "same page"  # HTMX swapped the panel, no reload
    assert page.locator("#job-progress").get_attribute("hx-trigger") is None  # polling stopped
    assert page.locator("text=Cancel").count() == 0
    link = page.locator("#job-result-links a")
    assert link.inner_text() == "Open the scorer run's results" and link.get_attribute("href") == "/curation/runs/41/"
    assert "100%" in page.locator("#job-progress").inner_text()
    assert "{'" not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "job_live_succeeded.png"), full_page=True)
