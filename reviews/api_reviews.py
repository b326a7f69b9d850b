"""Post-incident reviews in the staff API, under /api/v1/:

* ``reviews/``: list (filters ``status``, ``overdue``, ``incident`` — its public ID,
  ``service`` — a service slug, ``due_before`` / ``due_after`` — dates; cursor-paginated, by
  due date);
* ``reviews/{id}/``: read, and PATCH the §8.2 sections (Markdown) and ``cause_category`` (the
  root cause's category, or blank) while booked or held;
* ``reviews/{id}/held/`` (the date and attendance) and ``reviews/{id}/publish/``;
* ``POST reviews/`` books the review of an incident on demand (``reviews.services.booking``),
  ``reviews/{id}/reschedule/`` moves it and ``reviews/{id}/cancel/`` cancels it, each sending
  the calendar invitations through the outbox.

Reading needs ``reviews.view_review`` (every role group). Writes are decided by
``reviews.services``: 403 without the role's permission, 409 for a step the review's status
does not allow (a published review is read-only), 400 for bad input or a review that cannot be
published yet (empty, or no action item and no reason), with the incidents API's error shape.
"""

from __future__ import annotations

import re
from datetime import date

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from incidents.api.base import VigilAPIView
from incidents.api.errors import READ_ERRORS, WRITE_ERRORS, error_responses
from incidents.api.pagination import VigilCursorPagination
from incidents.errors import InvalidInput
from incidents.models import Incident, Source
from incidents.serializers import NUMBER_PATTERN

from .models import ActionItem, Review, ReviewStatus
from .serializers import (
    BookSerializer,
    CancelSerializer,
    HeldSerializer,
    RescheduleSerializer,
    ReviewSerializer,
    SectionsSerializer,
)
from .services.booking import review_book, review_cancel, review_reschedule
from .services.reviews import review_mark_held, review_publish, review_sections_update

TAGS = ["reviews"]
_ID = re.compile(r"[0-9]{1,18}")
_NUMBER = re.compile(NUMBER_PATTERN)
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")
ID_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The review's id."
)


def review_rows() -> QuerySet[Review]:
    """Reviews with what their API shape reads, in a fixed number of queries."""
    return (
        Review.objects.select_related("incident", "facilitator", "published_by")
        .prefetch_related("attendees")
        .annotate(
            has_actions=Exists(ActionItem.objects.filter(incident_id=OuterRef("incident_id")))
        )
        .order_by("due_date", "id")
    )


def _review_or_404(id: str) -> Review:
    review = review_rows().filter(pk=int(id)).first() if _ID.fullmatch(id) else None
    if review is None:
        raise Http404
    return review


def _shown(review: Review) -> Response:
    fresh = _review_or_404(str(review.pk))
    return Response(ReviewSerializer(fresh, context={"detail": True}).data)


def _date(request: Request, name: str) -> date | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput({name: "A date, YYYY-MM-DD."}) from None


def _filtered(request: Request, rows: QuerySet) -> QuerySet:
    params = request.query_params
    value = params.get("status")
    if value is not None:
        if value not in ReviewStatus.values:
            raise InvalidInput({"status": f"One of {', '.join(ReviewStatus.values)}."})
        rows = rows.filter(status=value)
    value = params.get("overdue")
    if value is not None:
        if value not in ("true", "false"):
            raise InvalidInput({"overdue": "One of true, false."})
        overdue = {"status": ReviewStatus.BOOKED, "due_date__lt": timezone.localdate()}
        rows = rows.filter(**overdue) if value == "true" else rows.exclude(**overdue)
    number = params.get("incident")
    if number is not None:
        if not _NUMBER.fullmatch(number):
            raise InvalidInput({"incident": "An incident ID, e.g. INC-2026-1127-001."})
        rows = rows.filter(incident__number=number)
    service = params.get("service")
    if service is not None:
        if not _SLUG.fullmatch(service):
            raise InvalidInput({"service": "A service slug."})
        rows = rows.filter(incident__in=Incident.objects.filter(services__slug=service))
    before, after = _date(request, "due_before"), _date(request, "due_after")
    if before is not None:
        rows = rows.filter(due_date__lt=before)
    if after is not None:
        rows = rows.filter(due_date__gt=after)
    return rows


class Pagination(VigilCursorPagination):
    ordering = ("due_date", "id")


class ReviewListView(VigilAPIView, GenericAPIView):
    permission_model = Review
    queryset = Review.objects.none()  # names the model for the schema generator
    serializer_class = ReviewSerializer
    pagination_class = Pagination
    filter_backends: list = []

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_list",
        summary="List post-incident reviews",
        description="By due date, cursor-paginated. Unknown filter values are a 400.",
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=ReviewStatus.values
            ),
            OpenApiParameter(
                "overdue",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["true", "false"],
                description="Booked and past its due date.",
            ),
            OpenApiParameter(
                "incident",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="An incident's public ID.",
            ),
            OpenApiParameter(
                "service",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="A service slug: reviews of incidents affecting it.",
            ),
            OpenApiParameter(
                "due_before",
                OpenApiTypes.DATE,
                OpenApiParameter.QUERY,
                description="Due strictly before this date.",
            ),
            OpenApiParameter(
                "due_after",
                OpenApiTypes.DATE,
                OpenApiParameter.QUERY,
                description="Due strictly after this date.",
            ),
        ],
        responses={200: ReviewSerializer(many=True), **error_responses(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(_filtered(request, review_rows()))
        return self.get_paginated_response(ReviewSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_create",
        summary="Book a review on demand",
        description=(
            "Books the review of an incident (the incident manager may): due date, facilitator, "
            "attendees and a proposed slot, with calendar invitations through the outbox. An "
            "incident's existing review is returned unchanged (200); 400 for an unknown or "
            "cancelled incident."
        ),
        request=BookSerializer,
        responses={
            201: ReviewSerializer,
            200: ReviewSerializer,
            **error_responses(*WRITE_ERRORS, 409),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = BookSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        number = serializer.validated_data["incident"]
        incident = (
            Incident.objects.filter(number=number).first() if _NUMBER.fullmatch(number) else None
        )
        if incident is None:
            raise InvalidInput({"incident": "No incident with this ID."})
        existed = Review.objects.filter(incident=incident).exists()
        review = review_book(incident=incident, actor=request.user, source=Source.API)
        response = _shown(review)
        if not existed:
            response.status_code = status.HTTP_201_CREATED
        return response


class ReviewDetailView(VigilAPIView):
    permission_model = Review

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_retrieve",
        summary="Read a review",
        parameters=[ID_PARAMETER],
        responses={200: ReviewSerializer, **error_responses(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return _shown(_review_or_404(id))

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_partial_update",
        summary="Write a review's sections",
        description=(
            "Only the sections given change (Markdown, at most 20,000 characters each), and "
            "`cause_category` when given (one of the categories, or blank). The "
            "incident manager may, while the review is booked or held: 409 once it is "
            "published (read-only) or cancelled; 400 for a review of a cancelled incident."
        ),
        parameters=[ID_PARAMETER],
        request=SectionsSerializer,
        responses={200: ReviewSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def patch(self, request: Request, id: str) -> Response:
        review = _review_or_404(id)
        serializer = SectionsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = review_sections_update(
            review=review, actor=request.user, source=Source.API, **serializer.validated_data
        )
        return _shown(review)


class ReviewHeldView(VigilAPIView):
    permission_model = Review

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_held",
        summary="Mark a review held",
        description=(
            "Records the meeting's date (default now; never in the future) and who attended. "
            "A held review may be corrected until published (409 after). 400 for an attendee "
            "not invited to it."
        ),
        parameters=[ID_PARAMETER],
        request=HeldSerializer,
        responses={200: ReviewSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def post(self, request: Request, id: str) -> Response:
        review = _review_or_404(id)
        serializer = HeldSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        attendance = {row["attendee"]: row["attended"] for row in data.get("attendance", [])}
        review = review_mark_held(
            review=review,
            actor=request.user,
            source=Source.API,
            held_at=data.get("held_at"),
            attendance=attendance,
        )
        return _shown(review)


class ReviewPublishView(VigilAPIView):
    permission_model = Review

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_publish",
        summary="Publish a review",
        description=(
            "Makes a held review read-only and attaches it to the incident's report. 409 "
            "unless held; 400 (guard_failed) when it is empty or has no action item and no "
            "`no_actions_reason`. Publishing a published review changes nothing."
        ),
        parameters=[ID_PARAMETER],
        request=None,
        responses={200: ReviewSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def post(self, request: Request, id: str) -> Response:
        review = review_publish(review=_review_or_404(id), actor=request.user, source=Source.API)
        return _shown(review)


class ReviewRescheduleView(VigilAPIView):
    permission_model = Review

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_reschedule",
        summary="Reschedule a review",
        description=(
            "Moves a booked review's meeting (an updated invitation, SEQUENCE + 1, to every "
            "attendee). 409 unless booked; 400 for a start in the past."
        ),
        parameters=[ID_PARAMETER],
        request=RescheduleSerializer,
        responses={200: ReviewSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def post(self, request: Request, id: str) -> Response:
        review = _review_or_404(id)
        serializer = RescheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        review = review_reschedule(
            review=review,
            actor=request.user,
            source=Source.API,
            starts_at=data["starts_at"],
            location=data.get("location"),
        )
        return _shown(review)


class ReviewCancelView(VigilAPIView):
    permission_model = Review

    @extend_schema(
        tags=TAGS,
        operation_id="reviews_cancel",
        summary="Cancel a review",
        description="Cancels a booked review (METHOD:CANCEL to every attendee). 409 unless booked.",
        parameters=[ID_PARAMETER],
        request=CancelSerializer,
        responses={200: ReviewSerializer, **error_responses(*WRITE_ERRORS, 409)},
    )
    def post(self, request: Request, id: str) -> Response:
        review = _review_or_404(id)
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = review_cancel(
            review=review,
            actor=request.user,
            source=Source.API,
            reason=serializer.validated_data["reason"],
        )
        return _shown(review)


urlpatterns = [
    path("reviews/", ReviewListView.as_view(), name="review-list"),
    path("reviews/<str:id>/", ReviewDetailView.as_view(), name="review-detail"),
    path("reviews/<str:id>/held/", ReviewHeldView.as_view(), name="review-held"),
    path("reviews/<str:id>/publish/", ReviewPublishView.as_view(), name="review-publish"),
    path("reviews/<str:id>/reschedule/", ReviewRescheduleView.as_view(), name="review-reschedule"),
    path("reviews/<str:id>/cancel/", ReviewCancelView.as_view(), name="review-cancel"),
]
