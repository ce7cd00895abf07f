from django.urls import path

from . import views

app_name = "training"

urlpatterns = [
    path("", views.run_list, name="runs"),
    path("new/", views.run_new, name="run_new"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("models/", views.model_list, name="models"),
    path("models/register/", views.model_register, name="model_register"),
    path("models/<int:pk>/", views.model_detail, name="model_detail"),
]
