from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from medstudio.accounts.api import AuditedObtainAuthToken
from medstudio.annotation.api import AnnotationQueueViewSet
from medstudio.datasets.api import DatasetViewSet, ExportViewSet, ImportViewSet, RecordViewSet
from medstudio.jobs.api import JobViewSet

router = DefaultRouter()
router.register("datasets", DatasetViewSet)
router.register("records", RecordViewSet)
router.register("imports", ImportViewSet, basename="import")
router.register("exports", ExportViewSet)
router.register("jobs", JobViewSet)
router.register("annotation/queues", AnnotationQueueViewSet, basename="annotation-queue")

app_name = "api"

urlpatterns = [
    path("token/", AuditedObtainAuthToken.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("", include(router.urls)),
]
