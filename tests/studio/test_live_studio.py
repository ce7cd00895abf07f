"""Issue 18.1: while a large dataset's score matrix is refreshed in a job, the studio shows a live
panel that polls the job and reloads the page when it ends (no "reload when it is done")."""
import pytest
from django.urls import reverse

from curation.studio import views as studio_views
from medstudio.jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def test_studio_watches_the_matrix_job(make_dataset, client_for, settings, monkeypatch):
    ds = make_dataset("big", "document", [{"id": str(i), "text": f"fever {i}"} for i in range(5)])
    settings.JOBS_EAGER = False
    monkeypatch.setattr(studio_views, "INLINE_SYNC_MAX_RECORDS", 1)
    c = client_for("curator")
    page = c.get(reverse("studio:studio") + f"?ds={ds.pk}").content.decode()
    job = Job.objects.get(kind="studio.matrix_sync")
    assert reverse("jobs:watch", args=[job.pk]) in page and 'hx-trigger="every 2s"' in page
    assert "Reload when it is done" not in page and "Score matrix update" in page
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    r = c.get(reverse("jobs:watch", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert r["HX-Refresh"] == "true"
