from django.urls import path

from . import views

app_name = "backends"

urlpatterns = [
    path("", views.backend_list, name="list"),
    path("<int:pk>/", views.backend_edit, name="edit"),
    path("<int:pk>/delete/", views.backend_delete, name="delete"),
    path("<int:pk>/check/", views.backend_check, name="check"),
]
