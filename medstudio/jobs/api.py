from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from medstudio.accounts.permissions import IsCurator

from . import services
from .models import Job


class JobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "queue", "status", "params", "result", "error", "done", "total", "percent", "attempts",
                  "cancel_requested", "created_at", "started_at", "finished_at", "heartbeat_at"]


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Job.objects.all().order_by("-id")
    serializer_class = JobSerializer
    permission_classes = [IsCurator]
    lookup_value_regex = r"\d+"

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None, format=None):
        job = self.get_object()
        if job.kind.startswith("training.") and not request.user.has_role("admin"):
            return Response({"detail": "Only admins cancel training runs."}, status=403)
        job = services.job_cancel(job=job, user=request.user)
        return Response(JobSerializer(job).data)
