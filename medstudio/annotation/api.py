"""REST API for labelling from scripts and external tools (token or session auth).

Under /api/annotation/queues/: list the queues a clinician may label, then next / submit / skip /
undo exactly as the labelling screen does (the same services, so the same "nothing lost"
guarantees: a replayed submit is "already_saved", a replay with another answer is a 409 that
overwrites nothing). Curators read a queue's labels. Pairs are served in each slot's own A/B order
(answer_a / answer_b); a preference answer names "A", "B" or "tie" as shown and is stored
canonically (chosen / rejected / tie).
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from medstudio.accounts.permissions import IsClinician, IsCurator, Role

from . import questions as qs
from . import selectors, services
from .judges import pair_in_shown_order
from .models import Assignment, Label, Queue

# ----------------------------------------------------------------------------------- serializers


class QuestionBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    schema = serializers.JSONField(source="full_schema")
    instructions = serializers.CharField()


class QueueSerializer(serializers.ModelSerializer):
    question = QuestionBriefSerializer(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Queue
        fields = ["id", "name", "question", "dataset", "annotators_per_item", "n_items", "is_open", "progress"]

    def get_progress(self, queue) -> dict:
        request = self.context.get("request")
        return selectors.queue_progress(queue, request.user if request else None)


class SubmitSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    revision = serializers.IntegerField()
    answer = serializers.DictField(help_text="score+aspects / label / turns / winner (A|B|tie as shown)+aspects"
                                             "+comment / text, as the labelling form sends them.")
    duration_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class SkipSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    revision = serializers.IntegerField()


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "item", "record", "annotator", "source", "values", "primary_value", "primary_label",
                  "shown_order", "suggestion_shown", "duration_ms", "created_at", "updated_at"]


# A loose description of the work payload for the OpenAPI schema (its content depends on the kind).
WorkSerializer = inline_serializer("AnnotationWork", fields={
    "assignment": serializers.IntegerField(allow_null=True),
    "revision": serializers.IntegerField(required=False),
    "swapped": serializers.BooleanField(required=False),
    "item": serializers.JSONField(required=False),
    "suggestion": serializers.JSONField(required=False, allow_null=True),
    "previous_answer": serializers.JSONField(required=False, allow_null=True),
    "progress": serializers.JSONField(),
})
SubmitResultSerializer = inline_serializer("AnnotationSubmitResult", fields={
    "status": serializers.ChoiceField(choices=["saved", "already_saved"]),
    "label": serializers.IntegerField(),
    "next": WorkSerializer,
})
SkipResultSerializer = inline_serializer("AnnotationSkipResult", fields={
    "skipped": serializers.BooleanField(), "next": WorkSerializer})
UndoResultSerializer = inline_serializer("AnnotationUndoResult", fields={"reopened": WorkSerializer})
DetailSerializer = inline_serializer("AnnotationErrorDetail", fields={"detail": serializers.CharField()})


# ------------------------------------------------------------------------------------- payloads


def _shown_content(dataset_kind: str, content: dict, swapped: bool) -> dict:
    """The record as the labelling screen shows it. Pairs: answer_a / answer_b in this slot's
    order, never chosen / rejected (nor meta, which may name the chosen side)."""
    if dataset_kind != "pair":
        return content
    shown = {k: v for k, v in content.items() if k not in ("chosen", "rejected", "meta")}
    shown["answer_a"], shown["answer_b"] = pair_in_shown_order(content, swapped)
    return shown


def _shown_answer(kind: str, values: dict, swapped: bool) -> dict:
    """A stored (canonical) answer in the terms the annotator submits it (A/B for pairs)."""
    if kind != qs.PREFERENCE:
        return values
    out = dict(values)
    if out.get("winner"):
        out["winner"] = qs.canonical_to_shown(out["winner"], swapped)
    if isinstance(out.get("aspects"), dict):
        out["aspects"] = {a: qs.canonical_to_shown(v, swapped) for a, v in out["aspects"].items()}
    return out


def work_payload(queue: Queue, assignment: Assignment | None, user, *, new_labels: int = 0) -> dict:
    """What a client needs to label one item (or {assignment: null} when nothing is left)."""
    progress = selectors.queue_progress(queue, user, new_labels=new_labels)
    if assignment is None:
        return {"assignment": None, "progress": progress}
    record = assignment.item.record
    kind = queue.question.kind
    item = {"id": assignment.item_id, "record": {
        "id": record.pk, "external_id": record.external_id, "kind": queue.dataset.kind,
        "content": _shown_content(queue.dataset.kind, record.content, assignment.swapped)}}
    if kind == qs.TURN_RATING:
        item["n_assistant_turns"] = qs.n_assistant_turns(record.content)
    # A slot reopened by undo carries its saved answer: send it back so a client can show or resubmit it.
    saved = selectors.saved_values(assignment)
    return {
        "assignment": assignment.pk, "revision": assignment.revision, "swapped": assignment.swapped, "item": item,
        "suggestion": assignment.item.suggestion if queue.show_suggestion else None,
        "previous_answer": _shown_answer(kind, saved, assignment.swapped) if saved is not None else None,
        "progress": progress,
    }


# ---------------------------------------------------------------------------------------- views


class NotYours(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = ("That item is not yours in this queue (released by an undo elsewhere?). "
                      "GET next/ for your current item.")
    default_code = "not_yours"


class AnnotationQueueViewSet(viewsets.GenericViewSet):
    """Queues to label, and the labelling flow (next / submit / skip / undo); labels for curators."""

    queryset = Queue.objects.select_related("question", "dataset")
    serializer_class = QueueSerializer
    permission_classes = [IsClinician]
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        user = self.request.user
        if user.has_role(Role.CURATOR):
            return Queue.objects.select_related("question", "dataset")
        return selectors.queues_for_annotator(user)

    def _labelable(self, pk) -> Queue:
        queue, allowed = selectors.labelling_queue(int(pk), self.request.user)
        if queue is None:
            raise exceptions.NotFound("No such queue.")
        if not allowed:
            raise exceptions.PermissionDenied("You are not assigned to this queue (or it is closed).")
        return queue

    def _mine(self, queue: Queue, assignment_id: int) -> Assignment:
        a = selectors.own_assignment(queue, self.request.user, assignment_id)
        if a is None:
            raise NotYours()
        return a

    @extend_schema(responses=QueueSerializer(many=True))
    def list(self, request, format=None):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(QueueSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=None, responses={200: WorkSerializer, 403: DetailSerializer, 404: DetailSerializer})
    @action(detail=True, methods=["get"], url_path="next", url_name="next")
    def next_item(self, request, pk=None, format=None):
        queue = self._labelable(pk)
        return Response(work_payload(queue, services.assignment_next(queue=queue, user=request.user), request.user))

    @extend_schema(request=SubmitSerializer,
                   responses={201: SubmitResultSerializer, 400: DetailSerializer, 409: DetailSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None, format=None):
        queue = self._labelable(pk)
        ser = SubmitSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        assignment = self._mine(queue, d["assignment"])
        try:
            outcome = services.label_submit(assignment_id=assignment.pk, assignment=assignment, user=request.user,
                                            answer=d["answer"], revision=d["revision"],
                                            duration_ms=d.get("duration_ms"))
        except services.SubmitConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except services.AnnotationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        saved = outcome.status == "saved"
        nxt = services.assignment_next(queue=queue, user=request.user, known_none_active=saved)
        return Response({"status": outcome.status, "label": outcome.label.pk,
                         "next": work_payload(queue, nxt, request.user, new_labels=int(outcome.created))},
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=SkipSerializer, responses={200: SkipResultSerializer, 400: DetailSerializer})
    @action(detail=True, methods=["post"])
    def skip(self, request, pk=None, format=None):
        queue = self._labelable(pk)
        ser = SkipSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        d = ser.validated_data
        self._mine(queue, d["assignment"])
        try:
            skipped = services.assignment_skip(assignment_id=d["assignment"], user=request.user,
                                               revision=d["revision"])
        except services.AnnotationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        nxt = services.assignment_next(queue=queue, user=request.user, known_none_active=skipped)
        return Response({"skipped": skipped, "next": work_payload(queue, nxt, request.user)})

    @extend_schema(request=None, responses={200: UndoResultSerializer})
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None, format=None):
        queue = self._labelable(pk)
        reopened = services.assignment_undo(queue=queue, user=request.user)
        return Response({"reopened": work_payload(queue, reopened, request.user) if reopened is not None else None})

    @extend_schema(responses=LabelSerializer(many=True), parameters=[
        OpenApiParameter("source", str, enum=["human", "model"], description="Only labels from this source.")])
    @action(detail=True, methods=["get"], permission_classes=[IsCurator])
    def labels(self, request, pk=None, format=None):
        queue = get_object_or_404(Queue, pk=pk)
        rows = Label.objects.filter(queue=queue)
        if source := request.query_params.get("source"):
            rows = rows.filter(source=source)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(LabelSerializer(page, many=True).data)
