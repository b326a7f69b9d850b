"""``/api/v1/maintenance-windows/`` and ``/api/v1/integrations/{id}/routing-rules/``:
maintenance windows (list, create, change the end) and an integration's routing rules (list,
add, change, delete). Administrator level, like the integrations: reading needs
``view_integration``, writing ``change_integration`` (no role group holds them; superusers
do)."""

from __future__ import annotations

import re

from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ..detection.maintenance import (
    maintenance_window_create,
    maintenance_window_update,
    maintenance_windows_list,
)
from ..detection.routing import (
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
    routing_rules_list,
)
from ..models import Integration, MaintenanceWindow, RoutingRule, Source
from ..serializers.maintenance import (
    MaintenanceWindowCreateSerializer,
    MaintenanceWindowSerializer,
    MaintenanceWindowUpdateSerializer,
    RoutingRuleInputSerializer,
    RoutingRuleSerializer,
)
from .base import VigilAPIView
from .errors import READ_ERRORS, WRITE_ERRORS, error_responses
from .pagination import VigilCursorPagination

_ID = re.compile(r"^[1-9][0-9]{0,17}$")
_READ = ("GET", "HEAD", "OPTIONS")


class CanManageDetection(BasePermission):
    """Reads need ``view_integration``; writes ``change_integration``."""

    message = "Maintenance windows and routing rules are managed by administrators."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = "view" if request.method in _READ else "change"
        return user.has_perm(f"incidents.{action}_integration")


def _pk(value: str) -> int:
    if not _ID.match(value):
        raise Http404
    return int(value)


# --- maintenance windows ----------------------------------------------------------------------

WINDOW_TAG = ["maintenance windows"]
WINDOW_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Maintenance window id."
)
ACTIVE_PARAMETER = OpenApiParameter(
    "active",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    required=False,
    description="true: only the windows active now; false: only the others.",
)


def _window_or_404(value: str) -> MaintenanceWindow:
    window = maintenance_windows_list().filter(pk=_pk(value)).first()
    if window is None:
        raise Http404
    return window


class _ActiveQuery(serializers.Serializer):
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class MaintenanceWindowPagination(VigilCursorPagination):
    ordering = ("-id",)


class MaintenanceWindowListView(VigilAPIView, GenericAPIView):
    permission_classes = [CanManageDetection]
    permission_model = MaintenanceWindow
    queryset = MaintenanceWindow.objects.none()
    pagination_class = MaintenanceWindowPagination
    serializer_class = MaintenanceWindowSerializer
    filter_backends: list = []

    @extend_schema(
        tags=WINDOW_TAG,
        operation_id="maintenance_windows_list",
        summary="List maintenance windows",
        description="Newest first.",
        parameters=[ACTIVE_PARAMETER],
        responses={200: MaintenanceWindowSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        query = _ActiveQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        windows = maintenance_windows_list()
        active = query.validated_data.get("active")
        if active is not None:
            now = timezone.now()
            current = {"starts_at__lte": now, "ends_at__gt": now}
            windows = windows.filter(**current) if active else windows.exclude(**current)
        page = self.paginate_queryset(windows)
        return self.get_paginated_response(MaintenanceWindowSerializer(page, many=True).data)

    @extend_schema(
        tags=WINDOW_TAG,
        operation_id="maintenance_windows_create",
        summary="Add a maintenance window",
        description=(
            "While it is active, firing alerts of its integration (or routed to its service, "
            "from any integration) are recorded but open no incident, join none and page no "
            "one. Bad input is a 400 and nothing is created."
        ),
        request=MaintenanceWindowCreateSerializer,
        responses={201: MaintenanceWindowSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = MaintenanceWindowCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        window = maintenance_window_create(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(
            MaintenanceWindowSerializer(_window_or_404(str(window.pk))).data,
            status=status.HTTP_201_CREATED,
        )


class MaintenanceWindowDetailView(VigilAPIView):
    permission_classes = [CanManageDetection]
    permission_model = MaintenanceWindow

    @extend_schema(
        tags=WINDOW_TAG,
        operation_id="maintenance_windows_retrieve",
        summary="Read a maintenance window",
        parameters=[WINDOW_ID],
        responses={200: MaintenanceWindowSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(MaintenanceWindowSerializer(_window_or_404(id)).data)

    @extend_schema(
        tags=WINDOW_TAG,
        operation_id="maintenance_windows_partial_update",
        summary="Change a maintenance window's end",
        description=(
            "Extend or shorten it; an end at or before now ends an active window now. A "
            "window that has ended is kept as it was (400)."
        ),
        parameters=[WINDOW_ID],
        request=MaintenanceWindowUpdateSerializer,
        responses={200: MaintenanceWindowSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        window = _window_or_404(id)
        serializer = MaintenanceWindowUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        maintenance_window_update(
            window=window, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(MaintenanceWindowSerializer(_window_or_404(id)).data)


# --- routing rules ----------------------------------------------------------------------------

ROUTING_TAG = ["routing rules"]
INTEGRATION_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Integration id."
)
RULE_ID = OpenApiParameter(
    "rule_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Routing rule id."
)


def _integration_or_404(value: str) -> Integration:
    integration = Integration.objects.filter(pk=_pk(value)).first()
    if integration is None:
        raise Http404
    return integration


def _rule_or_404(integration_id: str, rule_id: str) -> RoutingRule:
    rule = (
        RoutingRule.objects.select_related("service")
        .filter(integration_id=_pk(integration_id), pk=_pk(rule_id))
        .first()
    )
    if rule is None:
        raise Http404
    return rule


class RoutingRuleListView(VigilAPIView):
    permission_classes = [CanManageDetection]
    permission_model = RoutingRule
    queryset = RoutingRule.objects.none()  # the schema's model for the list

    @extend_schema(
        tags=ROUTING_TAG,
        operation_id="routing_rules_list",
        summary="List an integration's routing rules",
        description="In the order they are tried (position, then id); disabled ones included.",
        parameters=[INTEGRATION_ID],
        responses={200: RoutingRuleSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        rules = routing_rules_list(integration=_integration_or_404(id))
        return Response(RoutingRuleSerializer(rules, many=True).data)

    @extend_schema(
        tags=ROUTING_TAG,
        operation_id="routing_rules_create",
        summary="Add a routing rule",
        description=(
            "The first enabled rule whose every label matches gives the alert's service and "
            "default severity. Bad input is a 400 and nothing is created."
        ),
        parameters=[INTEGRATION_ID],
        request=RoutingRuleInputSerializer,
        responses={201: RoutingRuleSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        integration = _integration_or_404(id)
        serializer = RoutingRuleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = routing_rule_create(
            integration=integration,
            actor=request.user,
            source=Source.API,
            **serializer.validated_data,
        )
        return Response(
            RoutingRuleSerializer(_rule_or_404(id, str(rule.pk))).data,
            status=status.HTTP_201_CREATED,
        )


class RoutingRuleDetailView(VigilAPIView):
    permission_classes = [CanManageDetection]
    permission_model = RoutingRule

    @extend_schema(
        tags=ROUTING_TAG,
        operation_id="routing_rules_retrieve",
        summary="Read a routing rule",
        parameters=[INTEGRATION_ID, RULE_ID],
        responses={200: RoutingRuleSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str, rule_id: str) -> Response:
        return Response(RoutingRuleSerializer(_rule_or_404(id, rule_id)).data)

    @extend_schema(
        tags=ROUTING_TAG,
        operation_id="routing_rules_partial_update",
        summary="Change a routing rule",
        parameters=[INTEGRATION_ID, RULE_ID],
        request=RoutingRuleInputSerializer(partial=True),
        responses={200: RoutingRuleSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str, rule_id: str) -> Response:
        rule = _rule_or_404(id, rule_id)
        serializer = RoutingRuleInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        routing_rule_update(
            rule=rule, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(RoutingRuleSerializer(_rule_or_404(id, rule_id)).data)

    @extend_schema(
        tags=ROUTING_TAG,
        operation_id="routing_rules_destroy",
        summary="Delete a routing rule",
        parameters=[INTEGRATION_ID, RULE_ID],
        request=None,
        responses={204: None, **error_responses(*READ_ERRORS)},
    )
    def delete(self, request: Request, id: str, rule_id: str) -> Response:
        routing_rule_delete(rule=_rule_or_404(id, rule_id), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)
