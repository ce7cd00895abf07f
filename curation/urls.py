from django.urls import path

from . import views

app_name = "curation"

urlpatterns = [
    path("datasets/<int:pk>/run/", views.run_start, name="run_start"),
]
