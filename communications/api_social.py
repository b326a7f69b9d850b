"""Social media posts of an incident in the staff API: ``/api/v1/incidents/{id}/social-posts/``
(list), ``.../{pk}/`` (read, edit the text), ``.../{pk}/approve/``, ``.../{pk}/send/`` and
``.../{pk}/discard/``.

Posts are drafted by Vigil when a status update of a widespread outage is published; there is
no endpoint to create one. Reading needs ``view_socialpost`` (every role); the steps are
decided by the services (``communications.services.social``), the same checks as the admin:
403 without the role's permission, 409 for a step the post's state does not allow, 400 for an
empty or too long text.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from escalation.outbox import notification_get
from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.models import Source
from incidents.serializers import UserRefSerializer, user_ref

from .api import ID_PARAMETER, _incident_or_404
from .models import SocialPost
from .services.social import (
    POST_MAX,
    social_post_approve,
    social_post_discard,
    social_post_edit,
    social_post_idempotency_key,
    social_post_list,
    social_post_send,
)

TAG = ["social media posts"]
PK_PARAMETER = OpenApiParameter(
    "pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The social post's id."
)


class SocialPostDeliverySerializer(serializers.Serializer):
    status = serializers.CharField(
        help_text="The outbox's: `pending`, `sending`, `sent`, `failed`."
    )
    attempts = serializers.IntegerField()
    sent_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(help_text="Why the last attempt failed, if it did.")


class SocialPostSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.SerializerMethodField(help_text="The incident's ID.")
    status_update = serializers.IntegerField(
        source="status_update_id", allow_null=True, help_text="The published update it is from."
    )
    state = serializers.CharField(help_text="`draft`, `approved`, `sent` or `discarded`.")
    body = serializers.CharField(help_text=f"Plain text, at most {POST_MAX} characters.")
    created_by = serializers.SerializerMethodField(help_text="Null: drafted by Vigil.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    approved_by = serializers.SerializerMethodField()
    approved_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was handed to the outbox."
    )
    delivery = serializers.SerializerMethodField(
        help_text="What became of the sent post in the outbox; null until it is sent."
    )

    def get_incident(self, obj: SocialPost) -> str:
        return obj.incident.number

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_created_by(self, obj: SocialPost) -> dict[str, Any] | None:
        return user_ref(obj.created_by)

    @extend_schema_field(UserRefSerializer(allow_null=True))
    def get_approved_by(self, obj: SocialPost) -> dict[str, Any] | None:
        return user_ref(obj.approved_by)

    @extend_schema_field(SocialPostDeliverySerializer(allow_null=True))
    def get_delivery(self, obj: SocialPost) -> dict[str, Any] | None:
        if obj.sent_at is None:
            return None
        row = notification_get(idempotency_key=social_post_idempotency_key(obj))
        if row is None:
            return None
        return {
            "status": row.status,
            "attempts": row.attempts,
            "sent_at": row.sent_at,
            "last_error": row.last_error,
        }


class SocialPostInputSerializer(serializers.Serializer):
    body = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=f"The post's new text: plain text, 1 to {POST_MAX} characters.",
    )


def _post_or_404(number: str, pk: int) -> SocialPost:
    post = social_post_list(incident=_incident_or_404(number)).filter(pk=pk).first()
    if post is None:
        raise Http404
    return post


def _shown(post: SocialPost) -> Response:
    fresh = SocialPost.objects.select_related(
        "incident", "status_update", "created_by", "approved_by"
    ).get(pk=post.pk)
    return Response(SocialPostSerializer(fresh).data)


class SocialPostPagination(VigilCursorPagination):
    ordering = ("created_at", "id")


class SocialPostListView(VigilAPIView, GenericAPIView):
    permission_model = SocialPost
    queryset = SocialPost.objects.none()  # names the model for the schema generator
    serializer_class = SocialPostSerializer
    pagination_class = SocialPostPagination
    filter_backends: list = []

    @extend_schema(
        tags=TAG,
        operation_id="social_posts_list",
        summary="List an incident's social media posts",
        description="Drafted, approved, sent and discarded posts, oldest first, cursor-paginated.",
        parameters=[ID_PARAMETER],
        responses={200: SocialPostSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str) -> Response:
        incident = _incident_or_404(id)
        page = self.paginate_queryset(social_post_list(incident=incident))
        return self.get_paginated_response(SocialPostSerializer(page, many=True).data)


class SocialPostDetailView(VigilAPIView):
    permission_model = SocialPost

    @extend_schema(
        tags=TAG,
        operation_id="social_posts_retrieve",
        summary="Read a social media post",
        parameters=[ID_PARAMETER, PK_PARAMETER],
        responses={200: SocialPostSerializer, **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request, id: str, pk: int) -> Response:
        return _shown(_post_or_404(id, pk))

    @extend_schema(
        tags=TAG,
        operation_id="social_posts_partial_update",
        summary="Edit a post's text",
        description=(
            "The communications lead and incident managers may. An approved post goes back to "
            "draft (the approval covers the text sent). 400 for an empty text or one over "
            f"{POST_MAX} characters; 409 once the post is sent or discarded."
        ),
        parameters=[ID_PARAMETER, PK_PARAMETER],
        request=SocialPostInputSerializer,
        responses={200: SocialPostSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def patch(self, request: Request, id: str, pk: int) -> Response:
        post = _post_or_404(id, pk)
        serializer = SocialPostInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        post = social_post_edit(
            post=post, actor=request.user, source=Source.API, body=serializer.validated_data["body"]
        )
        return _shown(post)


def _step_view(step: str, service, description: str) -> type[VigilAPIView]:
    class SocialPostStepView(VigilAPIView):
        permission_model = SocialPost

        @extend_schema(
            tags=TAG,
            operation_id=f"social_posts_{step}",
            summary=f"{step.capitalize()} a social media post",
            description=description,
            parameters=[ID_PARAMETER, PK_PARAMETER],
            request=None,
            responses={200: SocialPostSerializer, **error_responses(*WRITE_ERRORS, 409)},
        )
        def post(self, request: Request, id: str, pk: int) -> Response:
            post = _post_or_404(id, pk)
            post = service(post=post, actor=request.user, source=Source.API)
            return _shown(post)

    SocialPostStepView.__name__ = f"SocialPost{step.capitalize()}View"
    SocialPostStepView.__qualname__ = SocialPostStepView.__name__
    return SocialPostStepView


SocialPostApproveView = _step_view(
    "approve",
    social_post_approve,
    "The business liaison approves a draft for sending. 403 without the approve permission or "
    "for a text one wrote or edited; 409 when sent or discarded. Approving an approved post "
    "changes nothing.",
)
SocialPostSendView = _step_view(
    "send",
    social_post_send,
    "The communications lead sends an approved post to the company's Mastodon account through "
    "the outbox (delivered after commit, retried, once). 409 for a draft (approve it first) or "
    "a discarded post. Sending a sent post changes nothing.",
)
SocialPostDiscardView = _step_view(
    "discard",
    social_post_discard,
    "Discard a draft or approved post: it will not be sent. 409 once sent. Discarding a "
    "discarded post changes nothing.",
)
STEP_VIEWS = {
    "approve": SocialPostApproveView,
    "send": SocialPostSendView,
    "discard": SocialPostDiscardView,
}

urlpatterns = [
    path(
        "incidents/<str:id>/social-posts/",
        SocialPostListView.as_view(),
        name="social-post-list",
    ),
    path(
        "incidents/<str:id>/social-posts/<int:pk>/",
        SocialPostDetailView.as_view(),
        name="social-post-detail",
    ),
    *[
        path(
            f"incidents/<str:id>/social-posts/<int:pk>/{action}/",
            view.as_view(),
            name=f"social-post-{action}",
        )
        for action, view in STEP_VIEWS.items()
    ],
]
