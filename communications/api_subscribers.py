"""Staff API of status-page subscribers and the suppression list, under /api/v1/:

* ``subscribers/`` (list, filtered by ``state``, ``kind`` and ``q`` — address contains; add a
  **webhook** subscriber: the answer carries its signing ``secret``, shown this once) and
  ``subscribers/{id}/`` (read, delete). Email subscribers only come from the public form, which
  asks them to confirm.
* ``suppressions/`` (list, ``reason`` and ``q`` filters; add one by hand, idempotent: an
  address already suppressed is answered 200 unchanged) and ``suppressions/{id}/`` (read,
  delete).

Reading needs the view permission (the communications lead and the business liaison: these are
personal data); writes go through ``communications.services.subscribers_staff``, which checks
the role permissions. Errors have the incidents API's one shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
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
from incidents.models import Source
from incidents.serializers import UserRefSerializer, user_ref
from incidents.serializers.common import TextField

from .models import (
    Subscriber,
    SubscriberKind,
    SubscriberState,
    Suppression,
    SuppressionReason,
)
from .services.subscribers_staff import (
    subscriber_delete,
    subscriber_webhook_create,
    suppression_add,
    suppression_remove,
)

_ID = re.compile(r"[0-9]{1,18}")
TAGS = ["subscribers"]
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


def _when(value) -> str | None:
    return serializers.DateTimeField().to_representation(value) if value else None


class SubscriberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=SubscriberKind.choices)
    address = serializers.CharField(help_text="The email address or the webhook URL.")
    state = serializers.ChoiceField(choices=SubscriberState.choices)
    all_components = serializers.BooleanField()
    components = serializers.ListField(child=serializers.CharField(), help_text="Their codes.")
    maintenance_notices = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    confirmed_at = serializers.DateTimeField(allow_null=True)
    unsubscribed_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, row: Subscriber) -> dict[str, Any]:
        return {
            "id": row.pk,
            "kind": row.kind,
            "address": row.address,
            "state": row.state,
            "all_components": row.all_components,
            "components": sorted(c.code for c in row.components.all()),
            "maintenance_notices": row.maintenance_notices,
            "created_at": _when(row.created_at),
            "confirmed_at": _when(row.confirmed_at),
            "unsubscribed_at": _when(row.unsubscribed_at),
        }


class WebhookCreatedSerializer(SubscriberSerializer):
    secret = serializers.CharField(
        help_text="The key the bodies are signed with (HMAC-SHA256, hex). Shown only here."
    )


class WebhookCreateSerializer(serializers.Serializer):
    url = TextField(max_length=255, help_text="https:// on a public host.")
    all_components = serializers.BooleanField(required=False, default=True)
    components = serializers.ListField(
        child=TextField(max_length=60), required=False, default=list, max_length=200
    )
    maintenance_notices = serializers.BooleanField(required=False, default=True)


class SuppressionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    reason = serializers.ChoiceField(choices=SuppressionReason.choices)
    detail = serializers.CharField()
    created_at = serializers.DateTimeField()
    created_by = UserRefSerializer(allow_null=True)

    def to_representation(self, row: Suppression) -> dict[str, Any]:
        return {
            "id": row.pk,
            "email": row.email,
            "reason": row.reason,
            "detail": row.detail,
            "created_at": _when(row.created_at),
            "created_by": user_ref(row.created_by),
        }


class SuppressionCreateSerializer(serializers.Serializer):
    email = TextField(max_length=300)
    detail = TextField(max_length=500, required=False, allow_blank=True, default="")


class Pagination(VigilCursorPagination):
    ordering = ("id",)


def _search(request: Request) -> str | None:
    value = request.query_params.get("q")
    if value is None:
        return None
    if len(value) > 200 or "\x00" in value:
        raise InvalidInput({"q": "At most 200 characters."})
    return value


def _choice(request: Request, name: str, values: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and value not in values:
        raise InvalidInput({name: f"One of {', '.join(values)}."})
    return value


def _subscribers_qs():
    return Subscriber.objects.prefetch_related("components__service")


def _subscriber_or_404(id: str) -> Subscriber:
    row = _subscribers_qs().filter(pk=int(id)).first() if _ID.fullmatch(id) else None
    if row is None:
        raise Http404
    return row


def _suppression_or_404(id: str) -> Suppression:
    qs = Suppression.objects.select_related("created_by")
    row = qs.filter(pk=int(id)).first() if _ID.fullmatch(id) else None
    if row is None:
        raise Http404
    return row


class SubscriberListView(VigilAPIView, GenericAPIView):
    permission_model = Subscriber
    queryset = Subscriber.objects.none()  # names the model for the schema generator
    pagination_class = Pagination
    serializer_class = SubscriberSerializer

    @extend_schema(
        tags=TAGS,
        operation_id="subscribers_list",
        summary="List status-page subscribers",
        parameters=[
            OpenApiParameter(
                "state", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=SubscriberState.values
            ),
            OpenApiParameter(
                "kind", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=SubscriberKind.values
            ),
            OpenApiParameter(
                "q", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Address contains."
            ),
        ],
        responses={200: SubscriberSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        rows = _subscribers_qs()
        state = _choice(request, "state", SubscriberState.values)
        if state:
            rows = rows.filter(state=state)
        kind = _choice(request, "kind", SubscriberKind.values)
        if kind:
            rows = rows.filter(kind=kind)
        q = _search(request)
        if q:
            rows = rows.filter(Q(email__icontains=q) | Q(url__icontains=q))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SubscriberSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="subscribers_create_webhook",
        summary="Add a webhook subscriber",
        description="Active at once. The answer's `secret` signs every body "
        "(`X-Vigil-Signature: sha256=<hex>`) and is not shown again.",
        request=WebhookCreateSerializer,
        responses={201: WebhookCreatedSerializer, **error_responses(*WRITE_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        serializer = WebhookCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscriber, secret = subscriber_webhook_create(
            actor=request.user, source=Source.API, **serializer.validated_data
        )
        data = SubscriberSerializer(_subscriber_or_404(str(subscriber.pk))).data
        return Response({**data, "secret": secret}, status=status.HTTP_201_CREATED)


class SubscriberDetailView(VigilAPIView):
    permission_model = Subscriber

    @extend_schema(
        tags=TAGS,
        operation_id="subscribers_retrieve",
        summary="Read a subscriber",
        parameters=[ID_PARAMETER],
        responses={200: SubscriberSerializer, **error_responses(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(SubscriberSerializer(_subscriber_or_404(id)).data)

    @extend_schema(
        tags=TAGS,
        operation_id="subscribers_destroy",
        summary="Remove a subscriber",
        parameters=[ID_PARAMETER],
        responses={204: None, **error_responses(*WRITE_ERRORS, 404)},
    )
    def delete(self, request: Request, id: str) -> Response:
        subscriber_delete(subscriber=_subscriber_or_404(id), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SuppressionListView(VigilAPIView, GenericAPIView):
    permission_model = Suppression
    queryset = Suppression.objects.none()  # names the model for the schema generator
    pagination_class = Pagination
    serializer_class = SuppressionSerializer

    @extend_schema(
        tags=TAGS,
        operation_id="suppressions_list",
        summary="List the suppression list",
        parameters=[
            OpenApiParameter(
                "reason", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=SuppressionReason.values
            ),
            OpenApiParameter(
                "q", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Address contains."
            ),
        ],
        responses={200: SuppressionSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        rows = Suppression.objects.select_related("created_by")
        reason = _choice(request, "reason", SuppressionReason.values)
        if reason:
            rows = rows.filter(reason=reason)
        q = _search(request)
        if q:
            rows = rows.filter(email__icontains=q)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SuppressionSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="suppressions_create",
        summary="Suppress an address",
        description="No customer-facing mail goes to it. 201 when added, 200 when it was "
        "already on the list (unchanged).",
        request=SuppressionCreateSerializer,
        responses={
            201: SuppressionSerializer,
            200: SuppressionSerializer,
            **error_responses(*WRITE_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = SuppressionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        before = Suppression.objects.count()
        row = suppression_add(actor=request.user, source=Source.API, **serializer.validated_data)
        created = Suppression.objects.count() > before
        return Response(
            SuppressionSerializer(_suppression_or_404(str(row.pk))).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SuppressionDetailView(VigilAPIView):
    permission_model = Suppression

    @extend_schema(
        tags=TAGS,
        operation_id="suppressions_retrieve",
        summary="Read a suppression",
        parameters=[ID_PARAMETER],
        responses={200: SuppressionSerializer, **error_responses(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(SuppressionSerializer(_suppression_or_404(id)).data)

    @extend_schema(
        tags=TAGS,
        operation_id="suppressions_destroy",
        summary="Take an address off the suppression list",
        parameters=[ID_PARAMETER],
        responses={204: None, **error_responses(*WRITE_ERRORS, 404)},
    )
    def delete(self, request: Request, id: str) -> Response:
        suppression_remove(
            suppression=_suppression_or_404(id), actor=request.user, source=Source.API
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("subscribers/", SubscriberListView.as_view(), name="subscriber-list"),
    path("subscribers/<str:id>/", SubscriberDetailView.as_view(), name="subscriber-detail"),
    path("suppressions/", SuppressionListView.as_view(), name="suppression-list"),
    path("suppressions/<str:id>/", SuppressionDetailView.as_view(), name="suppression-detail"),
]
