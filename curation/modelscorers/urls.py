from django.urls import path

from . import views

app_name = "modelscorers"

urlpatterns = [
    path("", views.index, name="index"),
    path("train/", views.train, name="train"),
    path("models/<int:pk>/", views.detail, name="detail"),
    path("models/<int:pk>/score/", views.score, name="score"),
]
