from django.urls import path

from . import views

app_name = "preferences"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.set_detail, name="set_detail"),
    path("<int:pk>/pairs/", views.pairs, name="pairs"),
    path("<int:pk>/build/", views.build, name="build"),
    path("<int:pk>/vote/", views.vote, name="vote"),
    path("<int:pk>/review/", views.review, name="review"),
    path("<int:pk>/export/", views.export, name="export"),
    path("pairs/<int:pk>/", views.pair_detail, name="pair_detail"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/resume/", views.run_resume, name="run_resume"),
    path("votes/<int:pk>/apply/", views.vote_apply, name="vote_apply"),
    path("votes/<int:pk>/resume/", views.vote_resume, name="vote_resume"),
    path("reviews/<int:pk>/sync/", views.review_sync, name="review_sync"),
    path("exports/<int:pk>/<str:fmt>/", views.export_download, name="export_download"),
    path("diversify/", views.diversify, name="diversify"),
    path("diversify/<int:pk>/", views.diversify_detail, name="diversify_detail"),
    path("diversify/<int:pk>/resume/", views.diversify_resume, name="diversify_resume"),
]
