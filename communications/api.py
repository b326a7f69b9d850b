"""Status updates of an incident and the communication policy in the staff API:
``/api/v1/incidents/{id}/status-updates/`` (list, draft), ``.../{pk}/`` (read, edit a draft),
``.../{pk}/approve/`` and ``.../{pk}/publish/``, and ``/api/v1/policy/communication/``.

Built on the incident API's base view, permission, pagination and error handler, so errors have
the one JSON shape. Reading needs the view permission every role holds; writes are decided by
the services (the same checks as the admin), so a Viewer is refused with 403.
"""

from __future__ import annotations

import re

from django.db.models import Prefetch
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.models import Incident, Source
from incidents.serializers import NUMBER_PATTERN

from .models import CommunicationPolicy, StatusUpdate, StatusUpdateComponent
from .selectors import delivery_counts
from .serializers import (
    CommunicationPolicyInputSerializer,
    CommunicationPolicySerializer,
    StatusUpdateInputSerializer,
    StatusUpdateSerializer,
)
from .services.policy import communication_policy_get, communication_policy_update
from .services.updates import (
    status_update_approve,
    status_update_create,
    status_update_edit,
    status_update_publish,
)

_NUMBER_RE = re.compile(NUMBER_PATTERN)
TAG = ["status updates"]
ID_PARAMETER = OpenApiParameter(
    "id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Public incident ID, e.g. INC-2026-1127-001.",
    pattern=NUMBER_PATTERN,
)
PK_PARAMETER = OpenApiParameter(
    "pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The status update's id."
)


def status_update_rows():
    """Status updates with what their API shape reads, in a fixed number of queries."""
    affected = StatusUpdateComponent.objects.select_related("component__service").order_by("pk")
    return (
        StatusUpdate.objects.select_related("incident", "created_by", "approved_by", "published_by")
        .prefetch_related(Prefetch("affected", queryset=affected))
        .annotate(**delivery_counts())
    )


def _incident_or_404(number: str) -> Incident:
    # The pattern check keeps malformed IDs (control characters included) away from the query.
    incident = (
        Incident.objects.filter(number=number).first() if _NUMBER_RE.fullmatch(number) else None
    )
    if incident is None:
        raise Http404
    return incident


def _update_or_404(number: str, pk: int) -> StatusUpdate:
    update = status_update_rows().filter(incident=_incident_or_404(number), pk=pk).first()
    if update is None:
        raise Http404
    return update


def _shown(update: StatusUpdate, code: int = status.HTTP_200_OK) -> Response:
    fresh = status_update_rows().get(pk=update.pk)
    return Response(StatusUpdateSerializer(fresh).data, status=code)


class StatusUpdatePagination(VigilCursorPagination):
    ordering = ("created_at", "id")


class StatusUpdateListView(VigilAPIView, GenericAPIView):
    permission_model = StatusUpdate
    queryset = StatusUpdate.objects.none()  # names the model for the schema generator
    serializer_class = StatusUpdateSerializer
    pagination_class = StatusUpdatePagination
    filter_backends: list = []

    @extend_schema(
        tags=TAG,
        operation_id="status_updates_list",
        summary="List an incident's status updates",
        description="Drafts, approved and published updates, oldest first, cursor-paginated.",
        parameters=[ID_PARAMETER],
        responses={200: StatusUpdateSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        page = self.paginate_queryset(status_update_rows().filter(incident=incident))
        return self.get_paginated_response(StatusUpdateSerializer(page, many=True).data)

    @extend_schema(
        tags=TAG,
        operation_id="status_updates_create",
        summary="Draft a status update",
        description=(
            "Drafts a public update of the incident (the communications lead and incident "
            "managers may). Without `public_title` the title is a prompt to write one; the "
            "incident's internal title is never used. 400 for an unknown or non-public "
            "component, or a cancelled incident."
        ),
        parameters=[ID_PARAMETER],
        request=StatusUpdateInputSerializer,
        responses={201: StatusUpdateSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        serializer = StatusUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        update = status_update_create(
            incident=incident,
            actor=request.user,
            source=Source.API,
            public_title=data.get("public_title"),
            public_status=data["public_status"],
            body=data["body"],
            components=serializer.validated_components(),
        )
        return _shown(update, status.HTTP_201_CREATED)


class StatusUpdateDetailView(VigilAPIView):
    permission_model = StatusUpdate

    @extend_schema(
        tags=TAG,
        operation_id="status_updates_retrieve",
        summary="Read a status update",
        parameters=[ID_PARAMETER, PK_PARAMETER],
        responses={200: StatusUpdateSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str, pk: int) -> Response:
        return _shown(_update_or_404(id, pk))

    @extend_schema(
        tags=TAG,
        operation_id="status_updates_partial_update",
        summary="Edit a draft",
        description=(
            "Only the fields given change; `components` replaces the list. An approved update "
            "goes back to draft (the approval covers the text published). A published update is "
            "immutable: 409 (post a correction as a new update)."
        ),
        parameters=[ID_PARAMETER, PK_PARAMETER],
        request=StatusUpdateInputSerializer,
        responses={200: StatusUpdateSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def patch(self, request: Request, id: str, pk: int) -> Response:
        update = _update_or_404(id, pk)
        serializer = StatusUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "components" in changes:
            changes["components"] = serializer.validated_components()
        update = status_update_edit(
            status_update=update, actor=request.user, source=Source.API, **changes
        )
        return _shown(update)


def _step_view(step: str, service, description: str) -> type[VigilAPIView]:
    class StatusUpdateStepView(VigilAPIView):
        permission_model = StatusUpdate

        @extend_schema(
            tags=TAG,
            operation_id=f"status_updates_{step}",
            summary=f"{step.capitalize()} a status update",
            description=description,
            parameters=[ID_PARAMETER, PK_PARAMETER],
            request=None,
            responses={200: StatusUpdateSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str, pk: int) -> Response:
            update = _update_or_404(id, pk)
            update = service(status_update=update, actor=request.user, source=Source.API)
            return _shown(update)

    StatusUpdateStepView.__name__ = f"StatusUpdate{step.capitalize()}View"
    StatusUpdateStepView.__qualname__ = StatusUpdateStepView.__name__
    return StatusUpdateStepView


StatusUpdateApproveView = _step_view(
    "approve",
    status_update_approve,
    "The business liaison approves a draft for publication. 403 for one's own draft or without "
    "the approve permission; 400 while the title is the prompt; 409 when already published. "
    "Approving an approved update changes nothing.",
)
StatusUpdatePublishView = _step_view(
    "publish",
    status_update_publish,
    "Publishes the update on the status page and sets its components' statuses. 409 when the "
    "policy needs the business liaison's approval for the incident's severity and the update "
    "is not approved; 400 while the title is the prompt or when the incident is cancelled. "
    "Publishing a published update changes nothing.",
)


class CommunicationPolicyView(VigilAPIView):
    permission_model = CommunicationPolicy

    @extend_schema(
        tags=TAG,
        operation_id="communication_policy_retrieve",
        summary="Read the communication policy",
        responses={200: CommunicationPolicySerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        return Response(CommunicationPolicySerializer(communication_policy_get()).data)

    @extend_schema(
        tags=TAG,
        operation_id="communication_policy_partial_update",
        summary="Change the communication policy",
        description=(
            "Severities 1-4; reminders before the due minutes; positive minutes. Saved with a "
            "history record. Needs the change permission of the policy (administrators)."
        ),
        request=CommunicationPolicyInputSerializer,
        responses={200: CommunicationPolicySerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request) -> Response:
        serializer = CommunicationPolicyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy = communication_policy_update(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(CommunicationPolicySerializer(policy).data)
