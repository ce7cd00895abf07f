from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language switcher
    path("accounts/", include("medstudio.accounts.urls")),
    path("audit/", include("medstudio.audit.urls")),
    path("backends/", include("medstudio.backends.urls")),
    path("jobs/", include("medstudio.jobs.urls")),
    path("datasets/", include("medstudio.datasets.urls")),
    path("pipeline/", include("medstudio.handoffs.urls")),
    path("annotate/", include("medstudio.annotation.urls")),
    path("curation/", include("curation.urls")),
    path("studio/", include("curation.studio.urls")),
    path("modelscorers/", include("curation.modelscorers.urls")),
    path("preferences/", include("preferences.urls")),
    path("training/", include("training.urls")),
    path("evaluation/", include("training.evaluation.urls")),
    path("api/", include("medstudio.api_urls")),
]

handler404 = "medstudio.views.not_found"
