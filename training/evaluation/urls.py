from django.urls import path

from . import views

app_name = "evaluation"

urlpatterns = [
    path("", views.home, name="home"),
    path("new/", views.run_new, name="run_new"),
    path("harness/new/", views.harness_new, name="harness_new"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/repeat/", views.run_repeat, name="run_repeat"),
    path("runs/<int:pk>/clinician-review/", views.clinician_review_new, name="clinician_review_new"),
    path("leaderboard/<int:dataset_id>/", views.leaderboard, name="leaderboard"),
    path("compare/", views.compare, name="compare"),
    path("models/", views.models_compare, name="models_compare"),
    path("hits/", views.hit_list, name="hits"),
    path("hits/<int:pk>/review/", views.hit_review, name="hit_review"),
    path("stores/<int:pk>/check/", views.store_check, name="store_check"),
]
