from django.urls import path

from . import views

app_name = "annotation"

urlpatterns = [
    path("", views.home, name="home"),
    path("q/<int:pk>/", views.label, name="label"),
    path("q/<int:pk>/submit/", views.submit, name="submit"),
    path("q/<int:pk>/skip/", views.skip, name="skip"),
    path("q/<int:pk>/undo/", views.undo, name="undo"),
    path("q/<int:pk>/peek/", views.peek, name="peek"),
    path("questions/new/", views.question_new, name="question_new"),
    path("questions/starters/", views.question_starters, name="question_starters"),
    path("queues/new/", views.queue_new, name="queue_new"),
    path("queues/<int:pk>/", views.queue_detail, name="queue_detail"),
    path("queues/<int:pk>/settings/", views.queue_settings, name="queue_settings"),
    path("queues/<int:pk>/judge/", views.judge, name="judge"),
    path("queues/<int:pk>/agreement/", views.agreement, name="agreement"),
    path("queues/<int:pk>/consensus/", views.consensus, name="consensus"),
    path("queues/<int:pk>/items/<int:item_id>/adjudicate/", views.adjudicate, name="adjudicate"),
    path("queues/<int:pk>/export/", views.export, name="export"),
]
