"""Staff API of the status page's catalogue, under /api/v1/:

* ``components/`` (list, add) and ``components/{code}/`` (read, edit; the status changes only
  with a ``reason``), a component being named by its service's slug;
* ``component-groups/`` and ``component-groups/{id}/``.

Maintenance windows are in ``api_maintenance``. Everyone whose role can view these reads them;
writes go through the services (``communications.services.catalog``), which check the role
permissions (the communications lead edits; a Viewer gets 403). Errors have the incidents API's
one shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Service, Source
from incidents.serializers import UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .models import Component, ComponentGroup, ComponentStatus, ComponentStatusInterval
from .services.catalog import (
    component_add,
    component_edit,
    component_group_create,
    component_group_edit,
)

_CODE = re.compile(r"[-a-zA-Z0-9_]{1,60}")
ID_RE = re.compile(r"[0-9]{1,18}")
CODE_PARAMETER = OpenApiParameter(
    "code", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"
)
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)
RECENT_INTERVALS = 20


# --- serializers ---------------------------------------------------------------------------------


class IntervalSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ComponentStatus.choices)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    actor = UserRefSerializer(allow_null=True)
    reason = serializers.CharField()
    status_update = serializers.IntegerField(allow_null=True, source="status_update_id")
    maintenance = serializers.IntegerField(allow_null=True, source="maintenance_id")

    def to_representation(self, instance: ComponentStatusInterval) -> dict[str, Any]:
        when = serializers.DateTimeField()
        return {
            "status": instance.status,
            "started_at": when.to_representation(instance.started_at),
            "ended_at": when.to_representation(instance.ended_at),
            "actor": user_ref(instance.actor),
            "reason": instance.reason,
            "status_update": instance.status_update_id,
            "maintenance": instance.maintenance_id,
        }


class ComponentSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="The component's id: its service's slug.")
    name = serializers.CharField(help_text="The public name (the service's).")
    service = serializers.CharField(source="service.slug")
    group = serializers.IntegerField(allow_null=True, source="group_id")
    group_name = serializers.CharField(allow_null=True, source="group.name", default=None)
    position = serializers.IntegerField()
    description = serializers.CharField()
    status = serializers.ChoiceField(choices=ComponentStatus.choices)
    status_changed_at = serializers.DateTimeField()
    showcase = serializers.BooleanField()
    only_show_if_degraded = serializers.BooleanField()
    start_date = serializers.DateField()


class ComponentDetailSerializer(ComponentSerializer):
    recent_intervals = serializers.SerializerMethodField(
        help_text=f"The last {RECENT_INTERVALS} status intervals, newest first."
    )

    @extend_schema_field(IntervalSerializer(many=True))
    def get_recent_intervals(self, component: Component) -> list[dict[str, Any]]:
        rows = component.intervals.select_related("actor").order_by("-started_at", "-pk")[
            :RECENT_INTERVALS
        ]
        return IntervalSerializer(rows, many=True).data


class ComponentCreateSerializer(serializers.Serializer):
    service = TextField(max_length=60, help_text="The slug of a service with a public name.")
    group = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    position = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    description = TextField(max_length=300, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=ComponentStatus.choices, required=False)
    showcase = serializers.BooleanField(required=False)
    only_show_if_degraded = serializers.BooleanField(required=False)


class ComponentUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ComponentStatus.choices, required=False)
    reason = TextField(
        max_length=300,
        required=False,
        allow_blank=True,
        help_text="Why the status changes; required with a new status.",
    )
    group = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    position = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    description = TextField(max_length=300, required=False, allow_blank=True)
    showcase = serializers.BooleanField(required=False)
    only_show_if_degraded = serializers.BooleanField(required=False)


class GroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    position = serializers.IntegerField()
    components = serializers.ListField(child=serializers.CharField(), help_text="Their codes.")

    def to_representation(self, instance: ComponentGroup) -> dict[str, Any]:
        return {
            "id": instance.pk,
            "name": instance.name,
            "description": instance.description,
            "position": instance.position,
            "components": [c.service.slug for c in instance.components.all()],
        }


class GroupWriteSerializer(serializers.Serializer):
    name = TextField(max_length=120)
    description = TextField(max_length=300, required=False, allow_blank=True)
    position = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)


# --- helpers ----------------------------------------------------------------------------------


def _components_qs():
    return Component.objects.select_related("service", "group")


def _component_or_404(code: str) -> Component:
    component = (
        _components_qs().filter(service__slug=code).first() if _CODE.fullmatch(code) else None
    )
    if component is None:
        raise Http404
    return component


def _group_or_404(id: str) -> ComponentGroup:
    group = _groups_qs().filter(pk=int(id)).first() if ID_RE.fullmatch(id) else None
    if group is None:
        raise Http404
    return group


def _groups_qs():
    return ComponentGroup.objects.prefetch_related("components__service")


def _group_ref(data: dict[str, Any]) -> dict[str, Any]:
    """``group`` (an id or null) as the group row; an unknown id is a 400."""
    if "group" in data and data["group"] is not None:
        group = ComponentGroup.objects.filter(pk=data["group"]).first()
        if group is None:
            raise InvalidInput({"group": "Unknown component group."})
        data["group"] = group
    return data


def component_refs(codes: list[str]) -> list[Component]:
    found = {c.service.slug: c for c in _components_qs().filter(service__slug__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        raise InvalidInput({"components": f"Unknown components: {', '.join(unknown[:10])}."})
    return [found[code] for code in codes]


# --- components -------------------------------------------------------------------------------

COMPONENTS = ["status page"]


class ComponentPagination(VigilCursorPagination):
    ordering = ("id",)


class ComponentListView(VigilAPIView, GenericAPIView):
    permission_model = Component
    queryset = Component.objects.none()  # names the model for the schema generator
    pagination_class = ComponentPagination
    serializer_class = ComponentSerializer

    @extend_schema(
        tags=COMPONENTS,
        operation_id="components_list",
        summary="List the status page's components",
        responses={200: ComponentSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_components_qs())
        return self.get_paginated_response(ComponentSerializer(page, many=True).data)

    @extend_schema(
        tags=COMPONENTS,
        operation_id="components_create",
        summary="Put a service on the status page",
        description="The service needs a public name. Needs the add-component permission.",
        request=ComponentCreateSerializer,
        responses={201: ComponentDetailSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = ComponentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = _group_ref(dict(serializer.validated_data))
        slug = data.pop("service")
        service = Service.objects.filter(slug=slug).first() if _CODE.fullmatch(slug) else None
        if service is None:
            raise InvalidInput({"service": "Unknown service."})
        component = component_add(actor=request.user, source=Source.API, service=service, **data)
        return Response(
            ComponentDetailSerializer(_component_or_404(component.code)).data,
            status=status.HTTP_201_CREATED,
        )


class ComponentDetailView(VigilAPIView):
    permission_model = Component

    @extend_schema(
        tags=COMPONENTS,
        operation_id="components_retrieve",
        summary="Read a component and its recent status history",
        parameters=[CODE_PARAMETER],
        responses={200: ComponentDetailSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, code: str) -> Response:
        return Response(ComponentDetailSerializer(_component_or_404(code)).data)

    @extend_schema(
        tags=COMPONENTS,
        operation_id="components_partial_update",
        summary="Edit a component or set its public status",
        description=(
            "A new `status` needs a `reason` (kept in the component's status history with the "
            "user's name). Needs the change-component permission."
        ),
        parameters=[CODE_PARAMETER],
        request=ComponentUpdateSerializer,
        responses={200: ComponentDetailSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, code: str) -> Response:
        component = _component_or_404(code)
        serializer = ComponentUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = _group_ref(dict(serializer.validated_data))
        component_edit(component=component, actor=request.user, source=Source.API, **data)
        return Response(ComponentDetailSerializer(_component_or_404(code)).data)


# --- groups -------------------------------------------------------------------------------------


class GroupPagination(VigilCursorPagination):
    ordering = ("id",)


class ComponentGroupListView(VigilAPIView, GenericAPIView):
    permission_model = ComponentGroup
    queryset = ComponentGroup.objects.none()  # names the model for the schema generator
    pagination_class = GroupPagination
    serializer_class = GroupSerializer

    @extend_schema(
        tags=COMPONENTS,
        operation_id="component_groups_list",
        summary="List the component groups",
        responses={200: GroupSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_groups_qs())
        return self.get_paginated_response(GroupSerializer(page, many=True).data)

    @extend_schema(
        tags=COMPONENTS,
        operation_id="component_groups_create",
        summary="Add a component group",
        request=GroupWriteSerializer,
        responses={201: GroupSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = GroupWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        group = component_group_create(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(
            GroupSerializer(_group_or_404(str(group.pk))).data, status=status.HTTP_201_CREATED
        )


class ComponentGroupDetailView(VigilAPIView):
    permission_model = ComponentGroup

    @extend_schema(
        tags=COMPONENTS,
        operation_id="component_groups_retrieve",
        summary="Read a component group",
        parameters=[ID_PARAMETER],
        responses={200: GroupSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(GroupSerializer(_group_or_404(id)).data)

    @extend_schema(
        tags=COMPONENTS,
        operation_id="component_groups_partial_update",
        summary="Edit a component group",
        parameters=[ID_PARAMETER],
        request=GroupWriteSerializer,
        responses={200: GroupSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        group = _group_or_404(id)
        serializer = GroupWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        component_group_edit(
            group=group, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return Response(GroupSerializer(_group_or_404(id)).data)
