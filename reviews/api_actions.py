"""Action items in the staff API, under /api/v1/:

* ``action-items/``: list (filters ``owner`` — a user id or ``me``, ``status``, ``overdue``,
  ``kind``, ``service`` — a service slug, ``incident`` — its public ID; cursor-paginated, by due
  date) and create;
* ``action-items/{id}/``: read, change (PATCH; the fields, never the status), delete;
* ``action-items/{id}/start/``, ``done/``, ``wont-do/`` (with a ``reason``) and ``reopen/``:
  the status changes.

Reading needs the view permission every role group holds. Writes are decided by
``reviews.services.actions`` (the admin's checks): the incident manager and the technical lead
add and change items, an owner may change the status of their own items, only the incident
manager deletes, and only before the review is published. Errors have the incidents API's one
shape (400 bad input, 403 not allowed, 409 not in this state).
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.urls import path
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
from incidents.models import Incident, Source
from incidents.serializers import NUMBER_PATTERN, UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .models import ActionItem, ActionKind, ActionPriority, ActionStatus
from .services.actions import (
    action_item_create,
    action_item_delete,
    action_item_set_status,
    action_item_update,
    action_items_annotated,
    overdue_q,
)

_ID = re.compile(r"[0-9]{1,18}")
_NUMBER = re.compile(NUMBER_PATTERN)
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,60}")
TAGS = ["action items"]
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The action item's id."
)


def _when(value) -> str | None:
    return serializers.DateTimeField().to_representation(value) if value else None


class ActionItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.CharField(help_text="The incident's public ID.")
    review = serializers.IntegerField(
        allow_null=True, help_text="The review it belongs to, if any."
    )
    kind = serializers.ChoiceField(choices=ActionKind.choices)
    title = serializers.CharField()
    description = serializers.CharField(help_text="Markdown.")
    owner = UserRefSerializer()
    due_date = serializers.DateField()
    priority = serializers.ChoiceField(choices=ActionPriority.choices)
    status = serializers.ChoiceField(choices=ActionStatus.choices)
    overdue = serializers.BooleanField(help_text="Open or in progress past its due date.")
    wont_do_reason = serializers.CharField()
    tracker_url = serializers.CharField(help_text="Jira or GitHub issue link, or empty.")
    completed_at = serializers.DateTimeField(allow_null=True)
    reminders_sent = serializers.ListField(
        child=serializers.CharField(), help_text="before, due, overdue, overdue-2, ..."
    )
    next_reminder_at = serializers.DateTimeField(allow_null=True)
    created_by = UserRefSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, row: ActionItem) -> dict[str, Any]:
        return {
            "id": row.pk,
            "incident": row.incident.number,
            "review": row.review_id,
            "kind": row.kind,
            "title": row.title,
            "description": row.description,
            "owner": user_ref(row.owner),
            "due_date": row.due_date.isoformat(),
            "priority": row.priority,
            "status": row.status,
            "overdue": bool(row.is_overdue),
            "wont_do_reason": row.wont_do_reason,
            "tracker_url": row.tracker_url,
            "completed_at": _when(row.completed_at),
            "reminders_sent": list(row.reminders_sent or []),
            "next_reminder_at": _when(row.next_reminder_at),
            "created_by": user_ref(row.created_by),
            "created_at": _when(row.created_at),
            "updated_at": _when(row.updated_at),
        }


class ActionItemCreateSerializer(serializers.Serializer):
    incident = TextField(max_length=40, help_text="The incident's public ID.")
    kind = serializers.ChoiceField(choices=ActionKind.choices)
    title = TextField(max_length=1000, help_text="At most 200 characters.")
    description = TextField(max_length=20_000, required=False, allow_blank=True, default="")
    owner = serializers.IntegerField(help_text="An active user's id.")
    due_date = serializers.DateField(help_text="Today or later.")
    priority = serializers.ChoiceField(
        choices=ActionPriority.choices, required=False, default=ActionPriority.MEDIUM
    )
    tracker_url = TextField(max_length=500, required=False, allow_blank=True, default="")
    from_review = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Add it to the incident's review (400 without one, 409 once published). "
        "Otherwise it joins the review while that is booked or held.",
    )


class ActionItemChangeSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ActionKind.choices, required=False)
    title = TextField(max_length=1000, required=False)
    description = TextField(max_length=20_000, required=False, allow_blank=True)
    owner = serializers.IntegerField(required=False)
    due_date = serializers.DateField(required=False)
    priority = serializers.ChoiceField(choices=ActionPriority.choices, required=False)
    tracker_url = TextField(max_length=500, required=False, allow_blank=True)


class ReasonSerializer(serializers.Serializer):
    reason = TextField(max_length=2000, help_text="Why it will not be done.")


class Pagination(VigilCursorPagination):
    ordering = ("due_date", "id")


def action_item_rows() -> QuerySet:
    """Action items with what their API shape reads, in one query."""
    return action_items_annotated(
        ActionItem.objects.select_related("incident", "owner", "created_by")
    )


def _item_or_404(id: str) -> ActionItem:
    row = action_item_rows().filter(pk=int(id)).first() if _ID.fullmatch(str(id)) else None
    if row is None:
        raise Http404
    return row


def _shown(item: ActionItem, code: int = status.HTTP_200_OK) -> Response:
    return Response(ActionItemSerializer(_item_or_404(str(item.pk))).data, status=code)


def _choice(request: Request, name: str, values: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and value not in values:
        raise InvalidInput({name: f"One of {', '.join(values)}."})
    return value


def _filtered(request: Request, rows: QuerySet) -> QuerySet:
    params = request.query_params
    owner = params.get("owner")
    if owner is not None:
        if owner == "me":
            rows = rows.filter(owner=request.user)
        elif _ID.fullmatch(owner):
            rows = rows.filter(owner_id=int(owner))
        else:
            raise InvalidInput({"owner": "A user id, or me."})
    value = _choice(request, "status", ActionStatus.values)
    if value:
        rows = rows.filter(status=value)
    value = _choice(request, "kind", ActionKind.values)
    if value:
        rows = rows.filter(kind=value)
    value = _choice(request, "overdue", ["true", "false"])
    if value == "true":
        rows = rows.filter(overdue_q())
    elif value == "false":
        rows = rows.exclude(overdue_q())
    service = params.get("service")
    if service is not None:
        if not _SLUG.fullmatch(service):
            raise InvalidInput({"service": "A service slug."})
        rows = rows.filter(incident__in=Incident.objects.filter(services__slug=service))
    number = params.get("incident")
    if number is not None:
        if not _NUMBER.fullmatch(number):
            raise InvalidInput({"incident": "An incident ID, e.g. INC-2026-1127-001."})
        rows = rows.filter(incident__number=number)
    return rows


class ActionItemListView(VigilAPIView, GenericAPIView):
    permission_model = ActionItem
    queryset = ActionItem.objects.none()  # names the model for the schema generator
    serializer_class = ActionItemSerializer
    pagination_class = Pagination
    filter_backends: list = []

    @extend_schema(
        tags=TAGS,
        operation_id="action_items_list",
        summary="List action items",
        description="By due date, cursor-paginated. Unknown filter values are a 400.",
        parameters=[
            OpenApiParameter(
                "owner",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="A user id, or `me` for the caller.",
            ),
            OpenApiParameter(
                "status", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=ActionStatus.values
            ),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=ActionKind.values
            ),
            OpenApiParameter(
                "overdue",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["true", "false"],
                description="Open or in progress past the due date.",
            ),
            OpenApiParameter(
                "service",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="A service slug: items of incidents affecting it.",
            ),
            OpenApiParameter(
                "incident",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="An incident's public ID.",
            ),
        ],
        responses={200: ActionItemSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_filtered(request, action_item_rows()))
        return self.get_paginated_response(ActionItemSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="action_items_create",
        summary="Add an action item",
        description=(
            "The incident manager and the technical lead may. 400 for an unknown or cancelled "
            "incident, a due date before today, an owner who is not an active user, an empty "
            "or over-long title, a tracker link that is not http(s); 409 when added to a "
            "published review."
        ),
        request=ActionItemCreateSerializer,
        responses={201: ActionItemSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def post(self, request: Request) -> Response:
        serializer = ActionItemCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        number = data.pop("incident")
        incident = (
            Incident.objects.filter(number=number).first() if _NUMBER.fullmatch(number) else None
        )
        if incident is None:
            raise InvalidInput({"incident": "No incident with this ID."})
        item = action_item_create(incident=incident, actor=request.user, source=Source.API, **data)
        return _shown(item, status.HTTP_201_CREATED)


class ActionItemDetailView(VigilAPIView):
    permission_model = ActionItem

    @extend_schema(
        tags=TAGS,
        operation_id="action_items_retrieve",
        summary="Read an action item",
        parameters=[ID_PARAMETER],
        responses={200: ActionItemSerializer, **error_responses(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(ActionItemSerializer(_item_or_404(id)).data)

    @extend_schema(
        tags=TAGS,
        operation_id="action_items_partial_update",
        summary="Change an action item",
        description=(
            "Only the fields given change; the status changes through its own actions. A new "
            "due date (today or later) starts the reminders afresh. Once the review is "
            "published, kind, title and description are frozen (409)."
        ),
        parameters=[ID_PARAMETER],
        request=ActionItemChangeSerializer,
        responses={200: ActionItemSerializer, **error_responses(*WRITE_ERRORS, 404, 409)},
    )
    def patch(self, request: Request, id: str) -> Response:
        item = _item_or_404(id)
        serializer = ActionItemChangeSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(serializer.fields))
        if unknown:
            raise InvalidInput(
                {
                    name: "Not a field that changes here (status has its actions)."
                    for name in unknown
                }
            )
        item = action_item_update(
            item=item, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return _shown(item)

    @extend_schema(
        tags=TAGS,
        operation_id="action_items_destroy",
        summary="Delete an action item",
        description="The incident manager only, while its review is not published (409).",
        parameters=[ID_PARAMETER],
        responses={204: None, **error_responses(*WRITE_ERRORS, 404, 409)},
    )
    def delete(self, request: Request, id: str) -> Response:
        action_item_delete(item=_item_or_404(id), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


STEPS = {
    "start": (ActionStatus.IN_PROGRESS, "Start an action item", "Status in progress."),
    "done": (ActionStatus.DONE, "Mark an action item done", "Sets completed_at."),
    "wont-do": (
        ActionStatus.WONT_DO,
        "Mark an action item won't do",
        "Needs a `reason` (400 without).",
    ),
    "reopen": (ActionStatus.OPEN, "Reopen an action item", "Back to open; reminders resume."),
}


def _step_view(step: str) -> type[VigilAPIView]:
    target, summary, note = STEPS[step]
    with_reason = target == ActionStatus.WONT_DO

    class ActionItemStepView(VigilAPIView):
        permission_model = ActionItem

        @extend_schema(
            tags=TAGS,
            operation_id=f"action_items_{step.replace('-', '_')}",
            summary=summary,
            description=f"{note} Editors may, and the item's owner. The same status again "
            "changes nothing.",
            parameters=[ID_PARAMETER],
            request=ReasonSerializer if with_reason else None,
            responses={200: ActionItemSerializer, **error_responses(*WRITE_ERRORS, 404)},
        )
        def post(self, request: Request, id: str) -> Response:
            item = _item_or_404(id)
            reason = ""
            if with_reason:
                serializer = ReasonSerializer(data=request.data)
                serializer.is_valid(raise_exception=True)
                reason = serializer.validated_data["reason"]
            item = action_item_set_status(
                item=item, actor=request.user, source=Source.API, status=target, reason=reason
            )
            return _shown(item)

    name = "ActionItem" + "".join(part.capitalize() for part in step.split("-")) + "View"
    ActionItemStepView.__name__ = ActionItemStepView.__qualname__ = name
    return ActionItemStepView


urlpatterns = [
    path("action-items/", ActionItemListView.as_view(), name="action-item-list"),
    path("action-items/<str:id>/", ActionItemDetailView.as_view(), name="action-item-detail"),
    *[
        path(
            f"action-items/<str:id>/{step}/",
            _step_view(step).as_view(),
            name=f"action-item-{step}",
        )
        for step in STEPS
    ],
]
