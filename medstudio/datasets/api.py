"""REST API for datasets, records, imports and exports (token or session auth)."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from medstudio.accounts.permissions import IsCurator, ReadClinicianWriteCurator
from medstudio.jobs.api import JobSerializer

from . import services
from .formats import KINDS, FileError, detect_format
from .models import Dataset, Export, Record


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = ["id", "name", "kind", "description", "licence", "is_benchmark", "n_records", "n_tokens", "langs",
                  "helper_of", "helper_role", "created_at"]
        read_only_fields = ["n_records", "n_tokens", "langs", "helper_of", "helper_role", "created_at"]


class RecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = Record
        fields = ["id", "dataset", "external_id", "lang", "source", "subset", "content", "n_tokens", "text_hash"]


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    dataset = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=["auto", *KINDS], default="auto")
    format = serializers.ChoiceField(choices=["", "jsonl", "csv", "parquet"], default="", required=False)
    skip_bad = serializers.BooleanField(default=False)


class ExportRequestSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    format = serializers.ChoiceField(choices=["jsonl", "parquet"], default="jsonl")
    lang = serializers.CharField(required=False, allow_blank=True)
    q = serializers.CharField(required=False, allow_blank=True)


class ExportSerializer(serializers.ModelSerializer):
    class Meta:
        model = Export
        fields = ["id", "dataset", "job", "format", "filters", "sha256", "n_records", "size_bytes", "created_at"]


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Datasets are created by imports; clinicians read, curators change descriptions and flags."""

    queryset = Dataset.objects.all().order_by("id")
    serializer_class = DatasetSerializer
    permission_classes = [ReadClinicianWriteCurator]
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        """The list leaves helper datasets out (?helpers=1 includes them, ?helper_of=<id> lists one
        dataset's); a helper is still found by its id."""
        qs = super().get_queryset()
        if self.action != "list":
            return qs
        params = self.request.query_params
        if (owner := params.get("helper_of", "")).isdigit():
            return qs.filter(helper_of_id=int(owner)).exclude(helper_role="")
        return qs if params.get("helpers") == "1" else qs.filter(helper_role="")

    def perform_update(self, serializer):
        services.dataset_update(actor=self.request.user, dataset=serializer.instance,
                                is_benchmark=serializer.validated_data.get("is_benchmark"),
                                description=serializer.validated_data.get("description"))

    @extend_schema(responses=RecordSerializer(many=True))
    @action(detail=True, methods=["get"])
    def records(self, request, pk=None, format=None):
        dataset = self.get_object()
        qs = Record.objects.filter(dataset=dataset).order_by("id")
        if lang := request.query_params.get("lang"):
            qs = qs.filter(lang=lang)
        if q := request.query_params.get("q"):
            qs = qs.filter(text__icontains=q)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(RecordSerializer(page, many=True).data)


class RecordViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Record.objects.all()
    serializer_class = RecordSerializer
    lookup_value_regex = r"\d+"


class ImportViewSet(viewsets.GenericViewSet):
    """POST a file to import it as a job; the job reports bad lines with their numbers."""

    serializer_class = ImportSerializer
    permission_classes = [IsCurator]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=ImportSerializer, responses={202: JobSerializer})
    def create(self, request, format=None):
        ser = ImportSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        try:
            fmt = data.get("format") or detect_format(data["file"].name)
        except FileError as exc:
            return Response({"file": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        existing = Dataset.objects.filter(name=data["dataset"]).first()
        if existing is None and data["kind"] == "auto":
            return Response({"kind": ["A new dataset needs a kind."]}, status=status.HTTP_400_BAD_REQUEST)
        if existing is not None and data["kind"] not in ("auto", existing.kind):
            return Response({"kind": [f"{existing.name} holds {existing.kind} records."]}, status=status.HTTP_400_BAD_REQUEST)
        path = services.upload_store(uploaded_file=data["file"])
        job = services.import_start(user=request.user, path=path, fmt=fmt, kind=data["kind"], dataset=data["dataset"],
                                    skip_bad=data["skip_bad"])
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Export.objects.all().order_by("-id")
    serializer_class = ExportSerializer
    permission_classes = [IsCurator]
    lookup_value_regex = r"\d+"

    @extend_schema(request=ExportRequestSerializer, responses={202: JobSerializer})
    def create(self, request, format=None):
        ser = ExportRequestSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        filters = {k: d[k] for k in ("lang", "q") if d.get(k)}
        job = services.export_start(user=request.user, dataset=d["dataset"], fmt=d["format"], filters=filters)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None, format=None):
        from django.http import FileResponse

        export = self.get_object()
        try:
            fh = open(export.path, "rb")
        except FileNotFoundError:
            raise NotFound("The export file is gone.") from None
        return FileResponse(fh, as_attachment=True, filename=export.path.rsplit("/", 1)[-1])
