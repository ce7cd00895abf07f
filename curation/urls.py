from django.urls import path

from . import views
from .corpus import views as corpus_views

app_name = "curation"

urlpatterns = [
    path("datasets/<int:pk>/run/", views.run_start, name="run_start"),
    path("datasets/<int:pk>/redact/", views.redact_start, name="redact"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("corpora/", corpus_views.corpus_list, name="corpus_list"),
    path("corpora/<int:pk>/", corpus_views.corpus_detail, name="corpus_detail"),
    path("corpora/runs/<int:pk>/retry/", corpus_views.corpus_run_retry, name="corpus_run_retry"),
    path("corpora/<int:pk>/studio/", corpus_views.corpus_studio, name="corpus_studio"),
    path("corpora/<int:pk>/studio/counts/", corpus_views.corpus_studio_counts, name="corpus_studio_counts"),
    path("corpora/<int:pk>/studio/freeze/", corpus_views.corpus_studio_freeze, name="corpus_studio_freeze"),
]
