"""``/api/v1/integrations/``: provisioning senders by script. Administrator level: reading
needs ``view_integration``, writing the add/change/delete permissions (no role group holds
them; superusers do). Create and rotate-secret answer the secret once."""

from __future__ import annotations

import re

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ..detection.integrations import (
    integration_create,
    integration_delete,
    integration_rotate_secret,
    integration_update,
)
from ..models import Integration, Source
from ..serializers.detection import (
    IntegrationCreateSerializer,
    IntegrationSerializer,
    IntegrationUpdateSerializer,
    IntegrationWithSecretSerializer,
)
from .base import VigilAPIView
from .errors import READ_ERRORS, WRITE_ERRORS, error_responses
from .pagination import VigilCursorPagination

TAG = ["integrations"]
_ID = re.compile(r"^[1-9][0-9]{0,17}$")
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Integration id."
)
_PERMS = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "add", "PATCH": "change"}


class CanManageIntegrations(BasePermission):
    message = "Integrations are managed by administrators."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "permission_action", None) or _PERMS.get(request.method, "delete")
        return user.has_perm(f"incidents.{action}_integration")


def _integrations():
    return Integration.objects.select_related("service", "heartbeat_incident")


def _integration_or_404(value: str) -> Integration:
    integration = _integrations().filter(pk=int(value)).first() if _ID.match(value) else None
    if integration is None:
        raise Http404
    return integration


class IntegrationPagination(VigilCursorPagination):
    ordering = ("id",)


class IntegrationListView(VigilAPIView, GenericAPIView):
    permission_classes = [CanManageIntegrations]
    permission_model = Integration
    queryset = Integration.objects.none()
    pagination_class = IntegrationPagination
    serializer_class = IntegrationSerializer

    @extend_schema(
        tags=TAG,
        operation_id="integrations_list",
        summary="List integrations",
        responses={200: IntegrationSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_integrations())
        return self.get_paginated_response(IntegrationSerializer(page, many=True).data)

    @extend_schema(
        tags=TAG,
        operation_id="integrations_create",
        summary="Add an integration",
        description="Answers the key, the sender URLs and (only now) the secret.",
        request=IntegrationCreateSerializer,
        responses={201: IntegrationWithSecretSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = IntegrationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        integration = integration_create(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(
            IntegrationWithSecretSerializer(_integration_or_404(str(integration.pk))).data,
            status=status.HTTP_201_CREATED,
        )


class IntegrationDetailView(VigilAPIView):
    permission_classes = [CanManageIntegrations]
    permission_model = Integration

    @extend_schema(
        tags=TAG,
        operation_id="integrations_retrieve",
        summary="Read an integration",
        parameters=[ID_PARAMETER],
        responses={200: IntegrationSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(IntegrationSerializer(_integration_or_404(id)).data)

    @extend_schema(
        tags=TAG,
        operation_id="integrations_partial_update",
        summary="Change an integration",
        description="Kind and key never change; the secret changes through rotate-secret.",
        parameters=[ID_PARAMETER],
        request=IntegrationUpdateSerializer,
        responses={200: IntegrationSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        integration = _integration_or_404(id)
        serializer = IntegrationUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        integration_update(
            integration=integration,
            actor=request.user,
            source=Source.API,
            **serializer.validated_data,
        )
        return Response(IntegrationSerializer(_integration_or_404(id)).data)

    @extend_schema(
        tags=TAG,
        operation_id="integrations_destroy",
        summary="Delete an integration",
        description="Only one that never received anything (409 `in_use`: disable it).",
        parameters=[ID_PARAMETER],
        request=None,
        responses={204: None, **error_responses(*READ_ERRORS, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        integration_delete(
            integration=_integration_or_404(id), actor=request.user, source=Source.API
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class IntegrationRotateSecretView(VigilAPIView):
    permission_classes = [CanManageIntegrations]
    permission_model = Integration
    permission_action = "change"

    @extend_schema(
        tags=TAG,
        operation_id="integrations_rotate_secret",
        summary="Give an integration a new secret",
        description="The old secret stops working at once; the new one is answered only now.",
        parameters=[ID_PARAMETER],
        request=None,
        responses={200: IntegrationWithSecretSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        integration = integration_rotate_secret(
            integration=_integration_or_404(id), actor=request.user, source=Source.API
        )
        return Response(
            IntegrationWithSecretSerializer(_integration_or_404(str(integration.pk))).data
        )
