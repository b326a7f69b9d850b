"""API lists of an incident's notifications and escalation events, addressed by the incident's
public ID: ``/api/v1/incidents/{number}/notifications/`` and ``.../escalations/``.

Read-only; any user who may view incidents may list them. Cursor-paginated, in a fixed number
of queries whatever the page size (the incident, then one page).
"""

from __future__ import annotations

import re

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.generics import ListAPIView

from incidents.api.errors import READ_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.api.permissions import CanViewModel
from incidents.models import Incident

from .models import EscalationEvent, Notification
from .serializers import EscalationEventSerializer, NotificationSerializer

_NUMBER_SHAPE = re.compile(r"^[A-Za-z0-9-]{1,24}$")
_NUMBER = OpenApiParameter(
    "number",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The incident's ID, e.g. INC-2026-1127-001.",
)


class NotificationPagination(VigilCursorPagination):
    ordering = ("-created_at", "-id")


class EscalationEventPagination(VigilCursorPagination):
    ordering = ("due_at", "id")


class _IncidentChildList(ListAPIView):
    """Rows of one incident; 404 when the incident does not exist."""

    permission_classes = [CanViewModel]
    permission_model = Incident
    filter_backends: list = []

    def incident(self) -> Incident:
        number = self.kwargs["number"]
        # Not an ID shape (e.g. a NUL byte, which PostgreSQL refuses in a query): no such incident.
        if not _NUMBER_SHAPE.match(number):
            raise Http404("No such incident.")
        found = Incident.objects.filter(number=number).only("pk").first()
        if found is None:
            raise Http404("No such incident.")
        return found


@extend_schema(
    tags=["escalation"],
    summary="List an incident's notifications",
    description=(
        "Every notification Vigil wrote for the incident (initial pages, acknowledgement "
        "timeouts, escalations), newest first, with its delivery status and attempts."
    ),
    parameters=[_NUMBER],
    responses={200: NotificationSerializer(many=True), **error_responses(*READ_ERRORS)},
)
class IncidentNotificationList(_IncidentChildList):
    serializer_class = NotificationSerializer
    pagination_class = NotificationPagination
    queryset = Notification.objects.none()

    def get_queryset(self):
        return Notification.objects.filter(incident=self.incident()).select_related("contact")


@extend_schema(
    tags=["escalation"],
    summary="List an incident's escalation events",
    description=(
        "The escalation steps that fired for the incident (matrix steps and the "
        "acknowledgement timeout), in due order, with whether each was caught up late."
    ),
    parameters=[_NUMBER],
    responses={200: EscalationEventSerializer(many=True), **error_responses(*READ_ERRORS)},
)
class IncidentEscalationList(_IncidentChildList):
    serializer_class = EscalationEventSerializer
    pagination_class = EscalationEventPagination
    queryset = EscalationEvent.objects.none()

    def get_queryset(self):
        return EscalationEvent.objects.filter(incident=self.incident())
