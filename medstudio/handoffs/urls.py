from django.urls import path

from . import views

app_name = "pipeline"
urlpatterns = [
    path("", views.pipeline_board, name="board"),
]
