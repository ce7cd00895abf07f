from django.urls import path

from . import views

app_name = "datasets"

urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("import/", views.dataset_import, name="import"),
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("<int:pk>/records/", views.record_list, name="records"),
    path("<int:pk>/export/", views.dataset_export, name="export"),
    path("<int:pk>/flag/", views.dataset_flag, name="flag"),
    path("<int:pk>/delete/", views.dataset_delete, name="delete"),
    path("records/<int:pk>/", views.record_detail, name="record"),
    path("exports/<int:pk>/download/", views.export_download, name="export_download"),
]
