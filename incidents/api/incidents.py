"""Incident endpoints: list and log, read and edit, the lifecycle actions, timeline, roles and
history. Views parse input with a serializer, call one service (or a selector) and shape the
result; rules live in ``incidents.services`` and errors become HTTP in ``api.errors``."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import Http404, HttpResponse
from django.urls import get_script_prefix, get_urlconf
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import Incident, Source, TimelineEntry
from ..selectors import incident_get, incident_list, incident_timeline
from ..serializers import (
    ACTION_INPUTS,
    NUMBER_PATTERN,
    ROLES_SCHEMA,
    HistoryRecordSerializer,
    IncidentCreateSerializer,
    IncidentSerializer,
    IncidentUpdateSerializer,
    NoteInputSerializer,
    RolesField,
    TimelineEntrySerializer,
    UserRefSerializer,
)
from ..services import (
    ACTIONS,
    incident_create,
    incident_edit,
    incident_note_add,
    incident_roles_assign,
    incident_roles_replace,
    incident_transition,
)
from ..services.lifecycle import action_permission
from .base import VigilAPIView
from .errors import READ_ERRORS, WRITE_ERRORS, error_responses
from .filters import IncidentFilter, choice_filters
from .history import history_entries, incident_history_records, previous_record
from .pagination import StableOrderingFilter, VigilCursorPagination
from .rows import (
    attach_related,
    json_page_rows,
    json_row,
    json_rows_supported,
    with_related,
)

_NUMBER_RE = re.compile(NUMBER_PATTERN)

ID_PARAMETER = OpenApiParameter(
    "id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Public incident ID, e.g. INC-2026-1127-001.",
    pattern=NUMBER_PATTERN,
)
TAG = ["incidents"]


def _incident_or_404(number: str) -> Incident:
    # The pattern check keeps malformed IDs (control characters included) away from the query.
    incident = incident_get(number=number) if _NUMBER_RE.fullmatch(number) else None
    if incident is None:
        raise Http404
    return incident


class IncidentPagination(VigilCursorPagination):
    ordering = ("-detected_at", "-id")


class IncidentViewMixin:
    permission_model = Incident

    def incident_response(self, incident: Incident, code: int = status.HTTP_200_OK) -> Response:
        fresh = _incident_or_404(incident.number)
        return Response(IncidentSerializer(fresh, context=self.get_serializer_context()).data, code)

    def get_serializer_context(self) -> dict[str, Any]:
        return {"request": self.request, "view": self, "now": timezone.now()}


class IncidentListView(IncidentViewMixin, VigilAPIView, GenericAPIView):
    # Each row lists the actions the user may take: their permissions are read with the view's.
    prefetch_permissions = tuple(action_permission(action) for action in ACTIONS)
    serializer_class = IncidentSerializer
    pagination_class = IncidentPagination
    filterset_class = IncidentFilter
    filter_backends = [*VigilAPIView.filter_backends, StableOrderingFilter]
    ordering_fields = ["detected_at", "created_at", "updated_at", "severity", "priority"]
    ordering = ["-detected_at"]
    # The paginator's parameters: with only these and choice filters, a request takes the
    # plain path (json_plain_page).
    page_parameters = (
        IncidentPagination.cursor_query_param,
        IncidentPagination.page_size_query_param,
    )

    def get_queryset(self):
        # The selector's rows without its prefetches: a page's services and role holders are
        # read as plain values (incidents.api.rows). The severity join
        # goes too (the row shows the level, which is the key). duplicate_of's ID rides along
        # as one joined column.
        return with_related(
            self.base_queryset().annotate(duplicate_of_number=F("duplicate_of__number"))
        )

    def base_queryset(self):
        return incident_list().select_related(None).prefetch_related(None)

    @extend_schema(
        tags=TAG,
        operation_id="incidents_list",
        summary="List incidents",
        description=(
            "Cursor-paginated (follow `next`), newest detection first. Filters combine; "
            "`status`, `severity` and `priority` take several values (repeat the parameter)."
        ),
        responses={200: IncidentSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> HttpResponse:
        if json_rows_supported() and request.accepted_renderer.format == "json":
            filters = choice_filters(request.query_params, ignored=self.page_parameters)
            if filters is not None:
                return self.json_plain_page(request, filters)
            return self.json_page(request)
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        attach_related(page)
        serializer = IncidentSerializer(page, many=True, context=self.get_serializer_context())
        return self.get_paginated_response(serializer.data)

    def json_page(self, request: Request) -> HttpResponse:
        """The same page, its rows built as JSON text by PostgreSQL (``rows.json_row``): the
        filters, ordering and cursor are the list's own; only the rows' making differs."""
        queryset = self.filter_queryset(self.base_queryset())
        ordering = self.paginator.get_ordering(request, queryset, self)
        position = ordering[0].lstrip("-")
        rows = queryset.values(*{"id", "status", position}, api_row=json_row(now=timezone.now()))
        return self.json_response(self.paginate_queryset(rows))

    def json_plain_page(self, request: Request, filters: list[tuple[str, list]]) -> HttpResponse:
        """``json_page`` for the common request, only choice filters (``status=open``) and the
        default ordering: no filter form, no queryset. Anything else (a bad value included)
        takes ``json_page``, where the FilterSet reads it; tests check both give the same
        pages."""
        now = timezone.now()
        ordering = self.paginator.get_ordering(request, None, self)

        def fetch(**page: Any) -> list[dict[str, Any]]:
            return json_page_rows(filters=filters, now=now, **page)

        page = self.paginator.paginate_rows(fetch, request, model=Incident, ordering=ordering)
        return self.json_response(page)

    def json_response(self, page: list[dict[str, Any]]) -> HttpResponse:
        serializer = IncidentSerializer(context=self.get_serializer_context())
        # The URL's JSON with "__pk__" for the pk: digits need no escaping.
        url = _url_json(serializer)
        actions: dict[str, str] = {}
        results = []
        for row in page:
            status = row["status"]
            if status not in actions:
                actions[status] = _actions_json(serializer, self.request, status)
            results.append(
                f'{row["api_row"][:-1]}, "actions" : {actions[status]}, '
                f'"url" : {url.replace("__pk__", str(row["id"]))}}}'
            )
        body = (
            f'{{"next": {json.dumps(self.paginator.get_next_link())}, '
            f'"previous": {json.dumps(self.paginator.get_previous_link())}, '
            f'"results": [{", ".join(results)}]}}'
        )
        return HttpResponse(body.encode(), content_type="application/json")

    @extend_schema(
        tags=TAG,
        operation_id="incidents_create",
        summary="Log an incident",
        description=(
            "Logs the incident as `incident_create` does from the admin: ID, priority from the "
            "matrix, SLA clocks, timeline entry, notification of the response team. `impact` "
            "and `urgency` default to the severity's; a pair whose priority does not go with "
            "the severity (Sev 1 at P3) needs a `priority_reason` (400 without, nothing "
            "saved). A role given to a read-only Viewer is refused (400)."
        ),
        request=IncidentCreateSerializer,
        responses={201: IncidentSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = IncidentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        incident = incident_create(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        return self.incident_response(incident, status.HTTP_201_CREATED)


# What a list page repeats on every request, kept per process: both are functions of code and
# settings only, never of stored data.
_URL_JSON: dict[tuple[Any, ...], str] = {}
_ACTIONS_JSON: dict[tuple[str, tuple[bool, ...]], str] = {}


def _url_json(serializer: IncidentSerializer) -> str:
    key = (settings.VIGIL_BASE_URL, get_script_prefix(), get_urlconf())
    if key not in _URL_JSON:
        _URL_JSON[key] = json.dumps(serializer.url_template())
    return _URL_JSON[key]


def _actions_json(serializer: IncidentSerializer, request: Request, status: str) -> str:
    """The actions a user may take from ``status`` as JSON. They depend on the status and on
    the user's answers for the action permissions only (``IncidentSerializer.status_actions``),
    read with the view's permission."""
    known = getattr(request, "permissions", {})
    wanted = IncidentListView.prefetch_permissions
    if not all(name in known for name in wanted):
        return json.dumps(serializer.status_actions(status))
    key = (status, tuple(known[name] for name in wanted))
    if key not in _ACTIONS_JSON:
        _ACTIONS_JSON[key] = json.dumps(serializer.status_actions(status))
    return _ACTIONS_JSON[key]


class IncidentDetailView(IncidentViewMixin, VigilAPIView):
    @extend_schema(
        tags=TAG,
        operation_id="incidents_retrieve",
        summary="Read an incident",
        parameters=[ID_PARAMETER],
        responses={200: IncidentSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return self.incident_response(_incident_or_404(id))

    @extend_schema(
        tags=TAG,
        operation_id="incidents_partial_update",
        summary="Edit an incident's details or severity",
        description=(
            "Only the fields given change. A new `severity` goes through the same service as "
            "the admin (timeline entry, running SLA clocks recomputed, team notified when "
            "raised); other fields through `incident_update` (one timeline entry naming them, "
            "priority recomputed from impact × urgency). `status` is read-only: use the action "
            "endpoints. Once the incident is resolved, `detected_at`, `impact_started_at` and "
            "`severity` no longer change (400). A closed or cancelled incident takes only "
            "corrections of its report (`summary`, `affected_users`, `business_impact`, "
            "`root_cause`, `resolution`, `lessons_learned`) by users who may close incidents "
            "(403 otherwise), with a `correction_reason` (400 without), written on the timeline. "
            "Lowering the severity needs a `severity_reason` (the incident policy says when; "
            "400 without). An impact × urgency (or a new severity) whose priority is more than "
            "the policy's tolerance away from the one the severity goes with (Sev 1 at P3) "
            "needs a `priority_reason` (400 without, nothing saved); impact and urgency still "
            "at the old severity's defaults follow a new severity."
        ),
        parameters=[ID_PARAMETER],
        request=IncidentUpdateSerializer,
        responses={200: IncidentSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        serializer = IncidentUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        reason = changes.pop("severity_reason", "")
        correction_reason = changes.pop("correction_reason", "")
        priority_reason = changes.pop("priority_reason", "")
        # Details and severity are one edit for the client: both apply or neither does.
        incident = incident_edit(
            incident=incident,
            actor=request.user,
            source=Source.API,
            changes=changes,
            severity_reason=reason,
            correction_reason=correction_reason,
            priority_reason=priority_reason,
        )
        return self.incident_response(incident)


def _action_view(action: str) -> type[VigilAPIView]:
    input_serializer = ACTION_INPUTS[action]

    class IncidentActionView(IncidentViewMixin, VigilAPIView):
        @extend_schema(
            tags=TAG,
            operation_id=f"incidents_{action}",
            summary=f"{action.capitalize()} an incident",
            description=(
                f"Runs the `{action}` transition through its service, as the admin button does. "
                "200 with the updated incident; repeating an action that already happened "
                "returns 200 and changes nothing. 409 when the action is not possible from the "
                "current status (`allowed_actions` lists what is); 400 `guard_failed` when "
                "required fields are missing (`missing_fields`); 403 when the user's role may "
                "not do it."
            ),
            parameters=[ID_PARAMETER],
            request=input_serializer,
            responses={200: IncidentSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str) -> Response:
            incident = _incident_or_404(id)
            serializer = input_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            incident = incident_transition(
                incident=incident,
                action=action,
                actor=request.user,
                source=Source.API,
                **serializer.validated_data,
            )
            return self.incident_response(incident)

    IncidentActionView.__name__ = f"Incident{action.capitalize()}View"
    IncidentActionView.__qualname__ = IncidentActionView.__name__
    return IncidentActionView


ACTION_VIEWS = {action: _action_view(action) for action in ACTION_INPUTS}


class TimelinePagination(VigilCursorPagination):
    ordering = ("occurred_at", "id")


class IncidentTimelineView(IncidentViewMixin, VigilAPIView, GenericAPIView):
    queryset = TimelineEntry.objects.none()  # names the model for the schema generator
    pagination_class = TimelinePagination
    serializer_class = TimelineEntrySerializer

    @extend_schema(
        tags=TAG,
        operation_id="incidents_timeline_list",
        summary="Read an incident's timeline",
        description="Append-only, oldest first, cursor-paginated.",
        parameters=[ID_PARAMETER],
        responses={200: TimelineEntrySerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        page = self.paginate_queryset(incident_timeline(incident=incident))
        return self.get_paginated_response(TimelineEntrySerializer(page, many=True).data)

    @extend_schema(
        tags=TAG,
        operation_id="incidents_timeline_create",
        summary="Add a note or decision to the timeline",
        description="Entries are never edited or deleted.",
        parameters=[ID_PARAMETER],
        request=NoteInputSerializer,
        responses={201: TimelineEntrySerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        serializer = NoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entry = incident_note_add(
            incident=incident, actor=request.user, source=Source.API, **serializer.validated_data
        )
        entry = TimelineEntry.objects.select_related("actor").get(pk=entry.pk)
        return Response(TimelineEntrySerializer(entry).data, status=status.HTTP_201_CREATED)


ROLES_RESPONSE = {
    "type": "object",
    "additionalProperties": {"$ref": "#/components/schemas/UserRef"},
    "description": "Assigned response roles: role key → user.",
}


class IncidentRolesView(IncidentViewMixin, VigilAPIView):
    def _roles(self, incident: Incident) -> Response:
        return Response(
            IncidentSerializer(incident, context=self.get_serializer_context()).data["roles"]
        )

    @extend_schema(
        tags=TAG,
        operation_id="incidents_roles_retrieve",
        summary="Read an incident's role assignments",
        parameters=[ID_PARAMETER],
        responses={200: ROLES_RESPONSE, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        return self._roles(_incident_or_404(id))

    def _assign(self, request: Request, id: str, *, replace: bool) -> Response:
        incident = _incident_or_404(id)
        wanted = RolesField().run_validation(request.data)
        # Several roles are one change for the client: all are assigned or none is.
        assign = incident_roles_replace if replace else incident_roles_assign
        assign(incident=incident, actor=request.user, source=Source.API, assignments=wanted)
        return self._roles(_incident_or_404(id))

    @extend_schema(
        tags=TAG,
        operation_id="incidents_roles_update",
        summary="Set all role assignments",
        description=(
            "Assigns each role named (username, or null to unassign) and unassigns every role "
            "not named. Each change is a timeline entry; assigning the current holder again "
            "changes nothing."
        ),
        parameters=[ID_PARAMETER],
        request={"application/json": ROLES_SCHEMA},
        responses={200: ROLES_RESPONSE, **error_responses(*WRITE_ERRORS)},
    )
    def put(self, request: Request, id: str) -> Response:
        return self._assign(request, id, replace=True)

    @extend_schema(
        tags=TAG,
        operation_id="incidents_roles_partial_update",
        summary="Assign or unassign some roles",
        description="Changes only the roles named; the others keep their holders.",
        parameters=[ID_PARAMETER],
        request={"application/json": ROLES_SCHEMA},
        responses={200: ROLES_RESPONSE, **error_responses(*WRITE_ERRORS)},
    )
    def patch(self, request: Request, id: str) -> Response:
        return self._assign(request, id, replace=False)


class HistoryPagination(VigilCursorPagination):
    ordering = ("history_id",)


class IncidentHistoryView(IncidentViewMixin, VigilAPIView, GenericAPIView):
    queryset = Incident.history.none()  # names the model for the schema generator
    pagination_class = HistoryPagination
    serializer_class = HistoryRecordSerializer

    @extend_schema(
        tags=TAG,
        operation_id="incidents_history_list",
        summary="Read an incident's field-level change history",
        description=(
            "One entry per saved change, oldest first: who, when, why (the service's reason) "
            "and each field's old and new value."
        ),
        parameters=[ID_PARAMETER],
        responses={200: HistoryRecordSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        records = self.paginate_queryset(incident_history_records(incident=incident))
        previous = (
            previous_record(incident=incident, before_history_id=records[0].history_id)
            if records
            else None
        )
        return self.get_paginated_response(history_entries(records, previous))


__all__ = [
    "ACTION_VIEWS",
    "IncidentDetailView",
    "IncidentHistoryView",
    "IncidentListView",
    "IncidentRolesView",
    "IncidentTimelineView",
    "UserRefSerializer",
]
