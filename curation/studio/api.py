"""REST API of the studio (under /studio/api/, token or session auth, curator role)."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

from medstudio.accounts.permissions import IsCurator
from medstudio.datasets.models import Dataset

from . import selectors, services
from medstudio.handoffs.models import Mixture, Recipe, RecipeVersion, Selection
from .spec import SpecError, parse_spec


class VersionSerializer(serializers.ModelSerializer):
    datasets = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = RecipeVersion
        fields = ["id", "number", "datasets", "conditions", "note", "created_at"]


class RecipeSerializer(serializers.ModelSerializer):
    versions = VersionSerializer(many=True, read_only=True)

    class Meta:
        model = Recipe
        fields = ["id", "name", "description", "created_at", "versions"]


class SelectionSerializer(serializers.ModelSerializer):
    datasets = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Selection
        fields = ["id", "name", "recipe_version", "datasets", "conditions", "runs", "status", "n_records", "n_tokens",
                  "stats", "content_hash", "job", "created_at"]


class MixtureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Mixture
        fields = ["id", "name", "stage", "budget_tokens", "targets", "strategy", "sources", "seed", "shard_tokens", "plan",
                  "achieved", "status", "job", "files", "created_at"]


# ---- request bodies (the OpenAPI schema, and what each view validates its body with) ---------------

class CountsRequestSerializer(serializers.Serializer):
    datasets = serializers.ListField(child=serializers.IntegerField())
    conditions = serializers.JSONField(required=False, help_text="{bounds, flags}")
    base = serializers.CharField(required=False, help_text="A spec key to count against.")


class RecipeVersionRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    datasets = serializers.ListField(child=serializers.IntegerField())
    conditions = serializers.JSONField(required=False)
    note = serializers.CharField(required=False, allow_blank=True)


class RecipeVersionCreatedSerializer(VersionSerializer):
    recipe = serializers.IntegerField()

    class Meta(VersionSerializer.Meta):
        fields = ["recipe", *VersionSerializer.Meta.fields]


class MixtureRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    stage = serializers.CharField(required=False, default="custom")
    budget_tokens = serializers.IntegerField()
    targets = serializers.JSONField(required=False)
    sources = serializers.JSONField(help_text="[{selection, category}] or [{dataset, recipe_version (optional), category}]; "
                                              "a dataset source is frozen into a selection when the mixture is drawn")
    strategy = serializers.CharField(required=False, default="independent")
    shard_tokens = serializers.IntegerField(required=False)
    build = serializers.BooleanField(required=False, default=True)


NameRequest = inline_serializer("StudioApplyRequest", fields={"name": serializers.CharField(required=False)})
FormatRequest = inline_serializer("StudioExportRequest", fields={"format": serializers.CharField()})
class SelectionExportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    format = serializers.CharField()
    status = serializers.CharField()
    job = serializers.IntegerField(allow_null=True)
    n_written = serializers.IntegerField()
    skipped = serializers.JSONField()
    files = serializers.JSONField()
    sha256 = serializers.JSONField()
    provenance = serializers.JSONField()


def _valid(serializer, request) -> dict:
    """The body checked against its documented serializer: a schema-violating body is a 400."""
    cls = serializer if isinstance(serializer, type) else type(serializer)  # inline_serializer gives an instance
    s = cls(data=request.data)
    s.is_valid(raise_exception=True)
    return s.validated_data


def _datasets(ids) -> list[Dataset]:
    if not isinstance(ids, list) or not ids:
        raise serializers.ValidationError({"datasets": "give a non-empty list of dataset ids"})
    found = list(Dataset.objects.filter(pk__in=ids))
    if len(found) != len(set(ids)):
        raise serializers.ValidationError({"datasets": "unknown dataset id"})
    return found


@extend_schema(operation_id="studio_api_counts", request=CountsRequestSerializer,
               responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
@api_view(["POST"])
@permission_classes([IsCurator])
def counts(request):
    """{datasets: [ids], conditions: {bounds, flags}, base?: spec key} -> kept/dropped records and tokens."""
    _valid(CountsRequestSerializer, request)
    datasets = _datasets(request.data.get("datasets"))
    try:
        spec = parse_spec(request.data.get("conditions") or {})
    except SpecError as exc:
        return Response({"conditions": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    scope = selectors.scope_load([d.pk for d in datasets])
    return Response(selectors.kept_counts(scope, spec, base_key=request.data.get("base")).as_dict())


@extend_schema(methods=["GET"], operation_id="studio_api_recipes_list", responses=RecipeSerializer(many=True))
@extend_schema(methods=["POST"], operation_id="studio_api_recipes_create", request=RecipeVersionRequestSerializer,
               responses={201: RecipeVersionCreatedSerializer, 400: OpenApiTypes.OBJECT})
@api_view(["GET", "POST"])
@permission_classes([IsCurator])
def recipes(request):
    """GET: all recipes with versions. POST {name, datasets, conditions, note?}: save the next version."""
    if request.method == "GET":
        return Response(RecipeSerializer(selectors.recipes_list(), many=True).data)
    _valid(RecipeVersionRequestSerializer, request)
    datasets = _datasets(request.data.get("datasets"))
    try:
        version = services.recipe_version_create(user=request.user, name=request.data.get("name", ""), datasets=datasets,
                                                 conditions=request.data.get("conditions") or {}, note=request.data.get("note", ""))
    except services.StudioError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response({"recipe": version.recipe_id, **VersionSerializer(version).data}, status=status.HTTP_201_CREATED)


@extend_schema(operation_id="studio_api_recipes_retrieve", responses=RecipeSerializer)
@api_view(["GET"])
@permission_classes([IsCurator])
def recipe_detail(request, pk: int):
    return Response(RecipeSerializer(get_object_or_404(Recipe, pk=pk)).data)


@extend_schema(operation_id="studio_api_recipes_diff", responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT},
               parameters=[OpenApiParameter("a", int, required=True, description="A version id of this recipe."),
                           OpenApiParameter("b", int, required=True, description="Another version id of this recipe.")])
@api_view(["GET"])
@permission_classes([IsCurator])
def recipe_diff(request, pk: int):
    """?a=<version id>&b=<version id>: conditions changed and records gained/lost from a to b."""
    recipe = get_object_or_404(Recipe, pk=pk)
    try:
        a = recipe.versions.get(pk=int(request.query_params.get("a", "")))
        b = recipe.versions.get(pk=int(request.query_params.get("b", "")))
    except (ValueError, RecipeVersion.DoesNotExist):
        return Response({"detail": "give ?a= and ?b= version ids of this recipe"}, status=status.HTTP_400_BAD_REQUEST)
    return Response(selectors.recipe_diff(a, b))


@extend_schema(operation_id="studio_api_versions_apply", request=NameRequest, responses={202: SelectionSerializer})
@api_view(["POST"])
@permission_classes([IsCurator])
def version_apply(request, pk: int):
    version = get_object_or_404(RecipeVersion, pk=pk)
    d = _valid(NameRequest, request)
    sel = services.selection_apply_start(user=request.user, version=version, name=d.get("name", ""))
    return Response(SelectionSerializer(sel).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(operation_id="studio_api_selections_list", responses=SelectionSerializer(many=True))
@api_view(["GET"])
@permission_classes([IsCurator])
def selections(request):
    return Response(SelectionSerializer(selectors.selections_list()[:200], many=True).data)


@extend_schema(operation_id="studio_api_selections_retrieve", responses=SelectionSerializer)
@api_view(["GET"])
@permission_classes([IsCurator])
def selection_detail(request, pk: int):
    return Response(SelectionSerializer(get_object_or_404(Selection, pk=pk)).data)


@extend_schema(methods=["GET"], operation_id="studio_api_selections_exports_list",
               responses=SelectionExportSerializer(many=True))
@extend_schema(methods=["POST"], operation_id="studio_api_selections_exports_create", request=FormatRequest,
               responses={202: SelectionExportSerializer(many=True), 400: OpenApiTypes.OBJECT})
@api_view(["GET", "POST"])
@permission_classes([IsCurator])
def selection_exports(request, pk: int):
    """GET: exports of the selection. POST {format}: start an export job."""
    sel = get_object_or_404(Selection, pk=pk)
    if request.method == "POST":
        d = _valid(FormatRequest, request)
        try:
            services.selection_export_start(user=request.user, selection=sel, fmt=d["format"])
        except services.StudioError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    rows = [{"id": e.pk, "format": e.format, "status": e.status, "job": e.job_id, "n_written": e.n_written, "skipped": e.skipped,
             "files": e.files, "sha256": e.sha256, "provenance": e.provenance} for e in sel.exports.all()]
    return Response(rows, status=status.HTTP_202_ACCEPTED if request.method == "POST" else status.HTTP_200_OK)


@extend_schema(methods=["GET"], operation_id="studio_api_mixtures_list", responses=MixtureSerializer(many=True))
@extend_schema(methods=["POST"], operation_id="studio_api_mixtures_create", request=MixtureRequestSerializer,
               responses={201: MixtureSerializer, 400: OpenApiTypes.OBJECT})
@api_view(["GET", "POST"])
@permission_classes([IsCurator])
def mixtures(request):
    """POST {name, stage, budget_tokens, targets, sources: [{selection, category} | {dataset, recipe_version?, category}],
    strategy?, shard_tokens?, build?}."""
    if request.method == "GET":
        return Response(MixtureSerializer(selectors.mixtures_list()[:100], many=True).data)
    d = _valid(MixtureRequestSerializer, request)
    if not isinstance(d["sources"], list) or not all(isinstance(x, dict) for x in d["sources"]):
        return Response({"sources": "a list of {selection, category} or {dataset, recipe_version, category}"}, status=status.HTTP_400_BAD_REQUEST)
    if not isinstance(d.get("targets") or {}, dict):
        return Response({"targets": "an object"}, status=status.HTTP_400_BAD_REQUEST)
    try:
        mix = services.mixture_create(user=request.user, name=d.get("name", ""), stage=d.get("stage", "custom"),
                                      budget_tokens=int(d.get("budget_tokens") or 0), targets=d.get("targets") or {},
                                      sources=d.get("sources") or [], strategy=d.get("strategy", "independent"),
                                      shard_tokens=int(d.get("shard_tokens") or 50_000_000), build=bool(d.get("build", True)))
    except (services.StudioError, ValueError, TypeError) as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(MixtureSerializer(mix).data, status=status.HTTP_201_CREATED)


@extend_schema(operation_id="studio_api_mixtures_retrieve", responses=MixtureSerializer)
@api_view(["GET"])
@permission_classes([IsCurator])
def mixture_detail(request, pk: int):
    return Response(MixtureSerializer(get_object_or_404(Mixture, pk=pk)).data)
