from django.urls import path

from . import views

app_name = "curation"

urlpatterns = [
    path("datasets/<int:pk>/run/", views.run_start, name="run_start"),
    path("datasets/<int:pk>/redact/", views.redact_start, name="redact"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
]
