"""Staff API of maintenance windows, under /api/v1/: ``maintenances/`` (list, schedule),
``maintenances/{id}/`` (read, edit) and the steps
``maintenances/{id}/{start|verify|complete|cancel}/``.

Everyone whose role can view these reads them; writes go through the services
(``communications.services.maintenance``), which check the role permissions (the communications
lead edits; a Viewer gets 403). Errors have the incidents API's one shape.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Source
from incidents.serializers import UserRefSerializer, user_ref
from incidents.serializers.common import TEXT_MAX, TextField

from .api_catalog import ID_PARAMETER, ID_RE, component_refs
from .models import Maintenance, MaintenanceStatus
from .services.maintenance import (
    ALLOWED_ACTIONS,
    maintenance_cancel,
    maintenance_complete,
    maintenance_edit,
    maintenance_schedule,
    maintenance_start,
    maintenance_verify,
)

# --- serializers ---------------------------------------------------------------------------------


DATES = (
    "scheduled_for",
    "scheduled_until",
    "started_at",
    "verifying_at",
    "completed_at",
    "created_at",
    "updated_at",
)


class MaintenanceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField(help_text="Markdown.")
    body_html = serializers.CharField(help_text="The body rendered and sanitized.")
    status = serializers.ChoiceField(choices=MaintenanceStatus.choices)
    scheduled_for = serializers.DateTimeField()
    scheduled_until = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    verifying_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    components = serializers.ListField(child=serializers.CharField(), help_text="Their codes.")
    created_by = UserRefSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    allowed_actions = serializers.ListField(child=serializers.CharField())

    def to_representation(self, instance: Maintenance) -> dict[str, Any]:
        data = {
            name: getattr(instance, name)
            for name in ("id", "title", "body", "body_html", "status", *DATES)
        }
        when = serializers.DateTimeField()
        for name in DATES:
            data[name] = when.to_representation(data[name])
        data["components"] = [c.service.slug for c in instance.components.all()]
        data["created_by"] = user_ref(instance.created_by)
        data["allowed_actions"] = ALLOWED_ACTIONS[instance.status]
        return data


class MaintenanceWriteSerializer(serializers.Serializer):
    title = TextField(max_length=200)
    body = TextField(max_length=TEXT_MAX, required=False, allow_blank=True, help_text="Markdown.")
    scheduled_for = serializers.DateTimeField()
    scheduled_until = serializers.DateTimeField()
    components = serializers.ListField(
        child=TextField(max_length=60),
        max_length=200,
        help_text="The codes of the components the window affects.",
    )


class NoInputSerializer(serializers.Serializer):
    pass


# --- helpers ----------------------------------------------------------------------------------


def _maintenances_qs():
    return Maintenance.objects.select_related("created_by").prefetch_related("components__service")


def _maintenance_or_404(id: str) -> Maintenance:
    found = _maintenances_qs().filter(pk=int(id)).first() if ID_RE.fullmatch(id) else None
    if found is None:
        raise Http404
    return found


# --- views ------------------------------------------------------------------------------------

MAINTENANCE = ["maintenance"]


class MaintenancePagination(VigilCursorPagination):
    ordering = ("-id",)


class MaintenanceListView(VigilAPIView, GenericAPIView):
    permission_model = Maintenance
    queryset = Maintenance.objects.none()  # names the model for the schema generator
    pagination_class = MaintenancePagination
    serializer_class = MaintenanceSerializer

    @extend_schema(
        tags=MAINTENANCE,
        operation_id="maintenances_list",
        summary="List maintenance windows, newest first",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=MaintenanceStatus.values,
                description="Only the windows in this status.",
            )
        ],
        responses={200: MaintenanceSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        windows = _maintenances_qs()
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in MaintenanceStatus.values:
                raise InvalidInput({"status": f"One of {', '.join(MaintenanceStatus.values)}."})
            windows = windows.filter(status=wanted)
        page = self.paginate_queryset(windows)
        return self.get_paginated_response(MaintenanceSerializer(page, many=True).data)

    @extend_schema(
        tags=MAINTENANCE,
        operation_id="maintenances_create",
        summary="Schedule a maintenance window",
        description=(
            "The window must end after it starts and in the future (400 otherwise, nothing "
            "saved); a start already past is allowed (the sweep starts it on its next run). "
            "At its start the components go under maintenance, at its end back to what they "
            "were. Needs the add-maintenance permission."
        ),
        request=MaintenanceWriteSerializer,
        responses={201: MaintenanceSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = MaintenanceWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["components"] = component_refs(data["components"])
        maintenance = maintenance_schedule(actor=request.user, source=Source.API, **data)
        return Response(
            MaintenanceSerializer(_maintenance_or_404(str(maintenance.pk))).data,
            status=status.HTTP_201_CREATED,
        )


class MaintenanceDetailView(VigilAPIView):
    permission_model = Maintenance

    @extend_schema(
        tags=MAINTENANCE,
        operation_id="maintenances_retrieve",
        summary="Read a maintenance window",
        parameters=[ID_PARAMETER],
        responses={200: MaintenanceSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(MaintenanceSerializer(_maintenance_or_404(id)).data)

    @extend_schema(
        tags=MAINTENANCE,
        operation_id="maintenances_partial_update",
        summary="Edit a maintenance window",
        description=(
            "Before it starts, any field; while it runs, its title, body and end; once "
            "completed or cancelled, nothing (409). Needs the change-maintenance permission."
        ),
        parameters=[ID_PARAMETER],
        request=MaintenanceWriteSerializer,
        responses={200: MaintenanceSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def patch(self, request: Request, id: str) -> Response:
        maintenance = _maintenance_or_404(id)
        serializer = MaintenanceWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "components" in data:
            data["components"] = component_refs(data["components"])
        maintenance_edit(maintenance=maintenance, actor=request.user, source=Source.API, **data)
        return Response(MaintenanceSerializer(_maintenance_or_404(id)).data)


STEPS = {
    "start": (maintenance_start, "Start a scheduled window now (its components go under "
              "maintenance)."),
    "verify": (maintenance_verify, "Mark a running window as being verified."),
    "complete": (maintenance_complete, "Complete a running window now (its components go "
                 "back to their status before it, unless changed meanwhile)."),
    "cancel": (maintenance_cancel, "Call off a window that has not started."),
}  # fmt: skip


def _step_view(action: str) -> type[VigilAPIView]:
    step, summary = STEPS[action]

    class MaintenanceStepView(VigilAPIView):
        permission_model = Maintenance

        @extend_schema(
            tags=MAINTENANCE,
            operation_id=f"maintenances_{action}",
            summary=summary,
            description=(
                "200 with the window; repeating a step that already happened changes nothing. "
                "409 when the step is not possible from the window's status (`allowed_actions`)."
                " Needs the change-maintenance permission."
            ),
            parameters=[ID_PARAMETER],
            request=NoInputSerializer,
            responses={200: MaintenanceSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str) -> Response:
            maintenance = _maintenance_or_404(id)
            step(maintenance=maintenance, actor=request.user, source=Source.API)
            return Response(MaintenanceSerializer(_maintenance_or_404(id)).data)

    MaintenanceStepView.__name__ = f"Maintenance{action.capitalize()}View"
    MaintenanceStepView.__qualname__ = MaintenanceStepView.__name__
    return MaintenanceStepView


STEP_VIEWS = {action: _step_view(action) for action in STEPS}
