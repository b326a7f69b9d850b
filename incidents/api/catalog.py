"""Service catalogue (CRUD) and policy (severities, priority matrix, response roles) endpoints.

Anyone whose roles can view these reads them; writes go through ``incidents.services.catalog``,
which checks the model permissions: responders (Incident Manager, Technical Lead) manage
services, and only holders of the admin-level change permission edit the policy.
"""

from __future__ import annotations

import re

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import Level, PriorityMatrixCell, ResponseRole, Service, SeverityLevel, Source
from ..serializers import (
    PriorityCellSerializer,
    PriorityCellUpdateSerializer,
    ResponseRoleSerializer,
    ResponseRoleUpdateSerializer,
    ServiceSerializer,
    ServiceWriteSerializer,
    SeverityLevelSerializer,
    SeverityLevelUpdateSerializer,
)
from ..services.catalog import (
    priority_cell_update,
    response_role_update,
    service_create,
    service_delete,
    service_update,
    severity_level_update,
)
from .base import VigilAPIView
from .errors import READ_ERRORS, WRITE_ERRORS, error_responses
from .pagination import VigilCursorPagination

SLUG_PARAMETER = OpenApiParameter(
    "slug", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"
)


def _services():
    return Service.objects.select_related("owner")


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def _service_or_404(slug: str) -> Service:
    # Only well-formed slugs reach the query (control characters would upset PostgreSQL).
    service = _services().filter(slug=slug).first() if _SLUG.fullmatch(slug) else None
    if service is None:
        raise Http404
    return service


class ServicePagination(VigilCursorPagination):
    ordering = ("slug",)


class ServiceListView(VigilAPIView, GenericAPIView):
    permission_model = Service
    queryset = Service.objects.none()  # names the model for the schema generator
    pagination_class = ServicePagination
    serializer_class = ServiceSerializer

    @extend_schema(
        tags=["services"],
        operation_id="services_list",
        summary="List services",
        responses={200: ServiceSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_services())
        return self.get_paginated_response(ServiceSerializer(page, many=True).data)

    @extend_schema(
        tags=["services"],
        operation_id="services_create",
        summary="Add a service",
        request=ServiceWriteSerializer,
        responses={201: ServiceSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = ServiceWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        service = service_create(actor=request.user, source=Source.API, **serializer.validated_data)
        return Response(
            ServiceSerializer(_service_or_404(service.slug)).data, status=status.HTTP_201_CREATED
        )


class ServiceDetailView(VigilAPIView):
    permission_model = Service

    @extend_schema(
        tags=["services"],
        operation_id="services_retrieve",
        summary="Read a service",
        parameters=[SLUG_PARAMETER],
        responses={200: ServiceSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(ServiceSerializer(_service_or_404(slug)).data)

    @extend_schema(
        tags=["services"],
        operation_id="services_partial_update",
        summary="Edit a service",
        parameters=[SLUG_PARAMETER],
        request=ServiceWriteSerializer,
        responses={200: ServiceSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, slug: str) -> Response:
        service = _service_or_404(slug)
        serializer = ServiceWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        service = service_update(
            service=service, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(ServiceSerializer(_service_or_404(service.slug)).data)

    @extend_schema(
        tags=["services"],
        operation_id="services_destroy",
        summary="Delete a service",
        description=(
            "Only a service no incident names can be deleted (409 `in_use` otherwise: "
            "deactivate it with `is_active: false`). Needs the delete permission."
        ),
        parameters=[SLUG_PARAMETER],
        request=None,
        responses={204: None, **error_responses(*READ_ERRORS, 409)},
    )
    def delete(self, request: Request, slug: str) -> Response:
        service_delete(service=_service_or_404(slug), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- policy -------------------------------------------------------------------------------------

POLICY = ["policy"]
LEVEL_PARAMETER = OpenApiParameter(
    "level", OpenApiTypes.INT, OpenApiParameter.PATH, enum=[1, 2, 3, 4]
)
LEVEL_CHOICE = [
    OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH, enum=Level.values)
    for name in ("urgency", "impact")
]
KEY_PARAMETER = OpenApiParameter(
    "key", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"
)


def _severity_or_404(level: str) -> SeverityLevel:
    known = level in ("1", "2", "3", "4")
    severity = SeverityLevel.objects.filter(level=int(level)).first() if known else None
    if severity is None:
        raise Http404
    return severity


class SeverityListView(VigilAPIView):
    permission_model = SeverityLevel
    queryset = SeverityLevel.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=POLICY,
        operation_id="policy_severities_list",
        summary="Severity levels (§2.1) with targets and channels",
        responses={200: SeverityLevelSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        return Response(SeverityLevelSerializer(SeverityLevel.objects.all(), many=True).data)


class SeverityDetailView(VigilAPIView):
    permission_model = SeverityLevel

    @extend_schema(
        tags=POLICY,
        operation_id="policy_severities_retrieve",
        summary="Read a severity level",
        parameters=[LEVEL_PARAMETER],
        responses={200: SeverityLevelSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, level: str) -> Response:
        return Response(SeverityLevelSerializer(_severity_or_404(level)).data)

    @extend_schema(
        tags=POLICY,
        operation_id="policy_severities_partial_update",
        summary="Edit a severity level (admin level)",
        description=(
            "Needs the admin-level permission. New targets apply to incidents logged or "
            "re-classified afterwards."
        ),
        parameters=[LEVEL_PARAMETER],
        request=SeverityLevelUpdateSerializer,
        responses={200: SeverityLevelSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, level: str) -> Response:
        severity = _severity_or_404(level)
        serializer = SeverityLevelUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        severity = severity_level_update(
            severity=severity, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(SeverityLevelSerializer(severity).data)


def _cell_or_404(urgency: str, impact: str) -> PriorityMatrixCell:
    if urgency not in Level.values or impact not in Level.values:
        raise Http404
    cell = PriorityMatrixCell.objects.filter(urgency=urgency, impact=impact).first()
    if cell is None:
        raise Http404
    return cell


class PriorityMatrixView(VigilAPIView):
    permission_model = PriorityMatrixCell
    queryset = PriorityMatrixCell.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=POLICY,
        operation_id="policy_priority_matrix_list",
        summary="The priority matrix (§2.2): urgency × impact → priority",
        responses={200: PriorityCellSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        cells = PriorityMatrixCell.objects.all()
        return Response(PriorityCellSerializer(cells, many=True).data)


class PriorityCellView(VigilAPIView):
    permission_model = PriorityMatrixCell

    @extend_schema(
        tags=POLICY,
        operation_id="policy_priority_matrix_retrieve",
        summary="Read one cell of the priority matrix",
        parameters=LEVEL_CHOICE,
        responses={200: PriorityCellSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, urgency: str, impact: str) -> Response:
        return Response(PriorityCellSerializer(_cell_or_404(urgency, impact)).data)

    @extend_schema(
        tags=POLICY,
        operation_id="policy_priority_matrix_partial_update",
        summary="Change one cell of the priority matrix (admin level)",
        description="Existing incidents keep their priority until their impact or urgency changes.",
        parameters=LEVEL_CHOICE,
        request=PriorityCellUpdateSerializer,
        responses={200: PriorityCellSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, urgency: str, impact: str) -> Response:
        cell = _cell_or_404(urgency, impact)
        serializer = PriorityCellUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cell = priority_cell_update(
            cell=cell, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(PriorityCellSerializer(cell).data)


def _roles():
    return ResponseRole.objects.select_related("primary_contact", "backup_contact", "group")


def _role_or_404(key: str) -> ResponseRole:
    role = _roles().filter(key=key).first() if _SLUG.fullmatch(key) else None
    if role is None:
        raise Http404
    return role


class ResponseRoleListView(VigilAPIView):
    permission_model = ResponseRole
    queryset = ResponseRole.objects.none()  # names the model for the schema generator

    @extend_schema(
        tags=POLICY,
        operation_id="policy_roles_list",
        summary="Response roles (§3.1) with contacts and responsibilities",
        responses={200: ResponseRoleSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        return Response(ResponseRoleSerializer(_roles(), many=True).data)


class ResponseRoleDetailView(VigilAPIView):
    permission_model = ResponseRole

    @extend_schema(
        tags=POLICY,
        operation_id="policy_roles_retrieve",
        summary="Read a response role",
        parameters=[KEY_PARAMETER],
        responses={200: ResponseRoleSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(ResponseRoleSerializer(_role_or_404(key)).data)

    @extend_schema(
        tags=POLICY,
        operation_id="policy_roles_partial_update",
        summary="Edit a response role (admin level)",
        parameters=[KEY_PARAMETER],
        request=ResponseRoleUpdateSerializer,
        responses={200: ResponseRoleSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, key: str) -> Response:
        role = _role_or_404(key)
        serializer = ResponseRoleUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        role = response_role_update(
            role=role, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(ResponseRoleSerializer(_role_or_404(role.key)).data)
