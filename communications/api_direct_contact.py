"""Staff API of enterprise direct-contact tasks, under /api/v1/: ``direct-contact-tasks/``
(list with filters), ``direct-contact-tasks/{id}/`` and the actions
``direct-contact-tasks/{id}/done/`` and ``.../not-reachable/`` (with a ``note``).

Every role group reads these; closing goes through ``communications.services.direct_contact``,
which checks the role permissions. Errors have the incidents API's one shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.serializers import NUMBER_PATTERN, UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .api_customers import ID_PARAMETER, ID_RE, query_flag
from .models import DirectContactStatus, DirectContactTask
from .services.direct_contact import NOTE_MAX_LENGTH, direct_contact_close

_NUMBER = re.compile(NUMBER_PATTERN)
TASKS = ["direct contact"]


# --- serializers ---------------------------------------------------------------------------------


class CustomerRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class DirectContactTaskSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.CharField(help_text="The incident's public ID.")
    incident_title = serializers.CharField()
    customer = CustomerRefSerializer()
    sla_terms = serializers.CharField()
    owner = UserRefSerializer(allow_null=True, help_text="Null: nobody was assigned.")
    due_at = serializers.DateTimeField()
    overdue = serializers.BooleanField(help_text="Open and past its due time.")
    status = serializers.ChoiceField(choices=DirectContactStatus.choices)
    note = serializers.CharField()
    closed_by = UserRefSerializer(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    reminders_sent = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    def to_representation(self, task: DirectContactTask) -> dict[str, Any]:
        when = serializers.DateTimeField()
        return {
            "id": task.pk,
            "incident": task.incident.number,
            "incident_title": task.incident.title,
            "customer": {"id": task.customer_id, "name": task.customer.name},
            "sla_terms": task.sla_terms,
            "owner": user_ref(task.owner),
            "due_at": when.to_representation(task.due_at),
            "overdue": task.status == DirectContactStatus.OPEN and task.due_at < timezone.now(),
            "status": task.status,
            "note": task.note,
            "closed_by": user_ref(task.closed_by),
            "closed_at": when.to_representation(task.closed_at),
            "reminders_sent": task.reminders_sent,
            "created_at": when.to_representation(task.created_at),
        }


class CloseSerializer(serializers.Serializer):
    note = TextField(
        max_length=NOTE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="What was said, or tried (required for not reachable).",
    )


# --- helpers -------------------------------------------------------------------------------------


def _tasks_qs():
    return DirectContactTask.objects.select_related("incident", "customer", "owner", "closed_by")


def _task_or_404(id: str) -> DirectContactTask:
    found = _tasks_qs().filter(pk=int(id)).first() if ID_RE.fullmatch(id) else None
    if found is None:
        raise Http404
    return found


# --- direct-contact tasks ------------------------------------------------------------------------


class TaskPagination(VigilCursorPagination):
    ordering = ("-id",)


class DirectContactTaskListView(VigilAPIView, GenericAPIView):
    permission_model = DirectContactTask
    queryset = DirectContactTask.objects.none()  # names the model for the schema generator
    pagination_class = TaskPagination
    serializer_class = DirectContactTaskSerializer

    @extend_schema(
        tags=TASKS,
        operation_id="direct_contact_tasks_list",
        summary="List enterprise direct-contact tasks, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=DirectContactStatus.values,
            ),
            OpenApiParameter(
                "owner",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="`me`, `none` (unassigned) or a user id.",
            ),
            OpenApiParameter(
                "incident",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="The incident's public ID.",
            ),
            OpenApiParameter(
                "overdue",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["1", "0"],
                description="1: open and past due; 0: the others.",
            ),
        ],
        responses={200: DirectContactTaskSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        tasks = _tasks_qs()
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in DirectContactStatus.values:
                raise InvalidInput({"status": f"One of {', '.join(DirectContactStatus.values)}."})
            tasks = tasks.filter(status=wanted)
        owner = request.query_params.get("owner")
        if owner is not None:
            if owner == "me":
                tasks = tasks.filter(owner=request.user)
            elif owner == "none":
                tasks = tasks.filter(owner__isnull=True)
            elif ID_RE.fullmatch(owner):
                tasks = tasks.filter(owner_id=int(owner))
            else:
                raise InvalidInput({"owner": "me, none or a user id."})
        number = request.query_params.get("incident")
        if number is not None:
            if not _NUMBER.fullmatch(number):
                raise InvalidInput({"incident": "A public incident ID."})
            tasks = tasks.filter(incident__number=number)
        overdue = query_flag(request, "overdue")
        if overdue is not None:
            late = {"status": DirectContactStatus.OPEN, "due_at__lt": timezone.now()}
            tasks = tasks.filter(**late) if overdue else tasks.exclude(**late)
        page = self.paginate_queryset(tasks)
        return self.get_paginated_response(DirectContactTaskSerializer(page, many=True).data)


class DirectContactTaskDetailView(VigilAPIView):
    permission_model = DirectContactTask

    @extend_schema(
        tags=TASKS,
        operation_id="direct_contact_tasks_retrieve",
        summary="Read a direct-contact task",
        parameters=[ID_PARAMETER],
        responses={200: DirectContactTaskSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(DirectContactTaskSerializer(_task_or_404(id)).data)


def _close_view(outcome: str, summary: str, description: str) -> type[VigilAPIView]:
    class DirectContactCloseView(VigilAPIView):
        permission_model = DirectContactTask

        @extend_schema(
            tags=TASKS,
            operation_id=f"direct_contact_tasks_{outcome}",
            summary=summary,
            description=description
            + " By the task's owner or a holder of the change-task permission (the incident "
            "manager, the communications lead); 403 otherwise. 409 when the task is already "
            "closed. Recorded on the incident's timeline.",
            parameters=[ID_PARAMETER],
            request=CloseSerializer,
            responses={200: DirectContactTaskSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str) -> Response:
            task = _task_or_404(id)
            serializer = CloseSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            direct_contact_close(
                task=task,
                actor=request.user,
                source=Source.API,
                outcome=outcome,
                note=serializer.validated_data.get("note", ""),
            )
            return Response(DirectContactTaskSerializer(_task_or_404(id)).data)

    name = "".join(part.capitalize() for part in outcome.split("_"))
    DirectContactCloseView.__name__ = f"DirectContact{name}View"
    DirectContactCloseView.__qualname__ = DirectContactCloseView.__name__
    return DirectContactCloseView


DirectContactDoneView = _close_view(
    "done", "Record that the customer was contacted", "A note is optional."
)
DirectContactNotReachableView = _close_view(
    "not_reachable",
    "Record that the customer could not be reached",
    "A `note` saying what was tried is required (400 without).",
)


urlpatterns = [
    path(
        "direct-contact-tasks/",
        DirectContactTaskListView.as_view(),
        name="direct-contact-task-list",
    ),
    path(
        "direct-contact-tasks/<str:id>/",
        DirectContactTaskDetailView.as_view(),
        name="direct-contact-task-detail",
    ),
    path(
        "direct-contact-tasks/<str:id>/done/",
        DirectContactDoneView.as_view(),
        name="direct-contact-task-done",
    ),
    path(
        "direct-contact-tasks/<str:id>/not-reachable/",
        DirectContactNotReachableView.as_view(),
        name="direct-contact-task-not-reachable",
    ),
]
