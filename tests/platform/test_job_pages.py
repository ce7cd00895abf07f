"""Issue 18 point 1/2: job pages update themselves until the job ends, then show the result in words
with links to what it made; a failed job shows a one-line cause above the log tail."""
import pytest
from django.urls import reverse

from medstudio.jobs.errors import exception_line, plain_cause
from medstudio.jobs.models import Job, JobLog, JobStatus
from medstudio.jobs.registry import job_result_links, kind_label, register_job_kind

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def _job(**kw) -> Job:
    return Job.objects.create(kind=kw.pop("kind", "curation.score"), **kw)


def test_running_job_polls_and_finished_job_stops(client_for):
    c = client_for("curator")
    job = _job(status=JobStatus.RUNNING, params={"run_id": 7}, done=3, total=10)
    page = c.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in page and "Cancel" in page and "30%" in page
    part = c.get(reverse("jobs:detail", args=[job.pk]), **HX).content.decode()
    assert 'hx-trigger="every 2s"' in part and "<html" not in part
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, done=10, result={"run_id": 7, "scored": 1147})
    part = c.get(reverse("jobs:detail", args=[job.pk]), **HX).content.decode()
    assert "hx-trigger" not in part  # the swapped-in partial has no trigger: polling stops
    assert "Cancel" not in part and "{'run_id'" not in part and "100%" in part
    assert reverse("curation:run_detail", args=[7]) in part and "results" in part
    assert "Scored" in part and "1,147" in part


def test_finished_page_has_no_cancel_and_no_dict(client_for):
    c = client_for("curator")
    job = _job(status=JobStatus.SUCCEEDED, params={"run_id": 3}, result={"run_id": 3, "scored": 5, "counts": {"email": 2}})
    page = c.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "jobs/%d/cancel" % job.pk not in page and "{'" not in page and "Scoring" in page
    assert "curation.score" not in page


def test_kind_labels_in_words():
    assert kind_label("studio.matrix_sync") == "Score matrix update"
    assert kind_label("training.run") == "Training run"
    assert "." not in kind_label("evaluation.memorization")  # description fallback


def test_job_list_shows_kinds_in_words(client_for):
    _job(kind="studio.matrix_sync", status=JobStatus.SUCCEEDED)
    page = client_for("curator").get(reverse("jobs:list")).content.decode()
    assert "Score matrix update" in page and "studio.matrix_sync" not in page


def test_result_links_per_kind():
    assert job_result_links(_job(kind="studio.apply_recipe", status="succeeded", result={"selection_id": 4})) == [
        ("Open the selection", reverse("studio:selection", args=[4]))]
    assert job_result_links(_job(kind="datasets.import", status="succeeded", result={"dataset_id": 2}))[0][1] == \
        reverse("datasets:detail", args=[2])
    links = job_result_links(_job(kind="training.run", status="succeeded", result={"run_id": 1, "final_model_id": 9}))
    assert [u for _t, u in links] == [reverse("training:run_detail", args=[1]), reverse("training:model_detail", args=[9])]
    # a resolver that fails never breaks the page
    register_job_kind("tests.broken", label="Broken", result_links=lambda job: 1 / 0)
    assert job_result_links(_job(kind="tests.broken")) == []


def test_failed_job_shows_plain_cause_above_log(client_for):
    job = _job(kind="training.run", status=JobStatus.FAILED, error="The training process exited with code 1.")
    JobLog.objects.create(job=job, level="error", message=(
        "Traceback (most recent call last):\n  File \"t.py\", line 1\n"
        "OSError: /nope/qwen is not a local folder and is not a valid model identifier"))
    page = client_for("curator").get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "Why it failed" in page and "/nope/qwen" in page and "MEDSTUDIO_MODEL_DIR" in page
    assert page.index("Why it failed") < page.index('class="log"')


def test_plain_cause_rules():
    tb = "Traceback (most recent call last):\n  File 'x'\ntorch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB"
    assert "batch size" in plain_cause(tb)
    assert exception_line("a\nValueError: bad\nmore") == "ValueError: bad"
    assert plain_cause("ValueError: score must be 3") == "score must be 3"
    assert plain_cause("The scorer run was deleted.") == "The scorer run was deleted."
    assert "vllm" in plain_cause("ModuleNotFoundError: No module named 'vllm'")
    assert plain_cause("step 3 loss 2.1", first_line=False) == ""


def test_watch_panel_polls_then_refreshes_the_page(client_for):
    c = client_for("curator")
    job = _job(kind="studio.apply_recipe", status=JobStatus.RUNNING, done=1, total=4)
    r = c.get(reverse("jobs:watch", args=[job.pk]), **HX)
    assert r.status_code == 200 and 'hx-trigger="every 2s"' in r.content.decode() and "HX-Refresh" not in r
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    r = c.get(reverse("jobs:watch", args=[job.pk]), **HX)
    assert r["HX-Refresh"] == "true" and "hx-trigger" not in r.content.decode()


def test_watch_needs_curator(client_for):
    job = _job(status=JobStatus.RUNNING)
    assert client_for("clinician").get(reverse("jobs:watch", args=[job.pk])).status_code == 403
    assert client_for("curator").get(reverse("jobs:watch", args=[99999])).status_code == 404
