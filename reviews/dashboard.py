"""Reviews' part of the admin index's "What needs you now": the reviews the user facilitates
that are still to hold, and the action items they own that are not done. Registered from
``ready()`` through the core's due-from-user registry."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.urls import reverse
from django.utils import timezone

from incidents.admin.extensions import DueItem, admin_due_provider_register

from .models import ActionItem, ActionStatus, Review, ReviewStatus

# Rows per kind: the dashboard shows what is due first, not everything.
LIMIT = 10


def end_of(day: date) -> datetime:
    """A due date as a deadline: the end of that day (midnight after it, local time)."""
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def reviews_due(*, user: Any, now: datetime) -> list[DueItem]:
    """Booked reviews the user facilitates, due at their slot or else by the end of their due
    date (one query)."""
    reviews = (
        Review.objects.filter(facilitator=user.pk, status=ReviewStatus.BOOKED)
        .select_related("incident")
        .order_by("due_date", "pk")[:LIMIT]
    )
    return [
        DueItem(
            key=str(review.pk),
            kind="review",
            title="Hold the post-incident review"
            if review.starts_at
            else "Book and hold the review",
            url=reverse("admin:reviews_review_change", args=[review.pk]),
            due_at=review.starts_at or end_of(review.due_date),
            incident_number=review.incident.number,
            severity=review.incident.severity_id,
        )
        for review in reviews
    ]


def action_items_due(*, user: Any, now: datetime) -> list[DueItem]:
    """Action items the user owns, open or in progress, by due date (one query)."""
    items = (
        ActionItem.objects.filter(
            owner=user.pk, status__in=[ActionStatus.OPEN, ActionStatus.IN_PROGRESS]
        )
        .select_related("incident")
        .order_by("due_date", "pk")[:LIMIT]
    )
    return [
        DueItem(
            key=str(item.pk),
            kind="action item",
            title=item.title,
            url=reverse("admin:reviews_actionitem_change", args=[item.pk]),
            due_at=end_of(item.due_date),
            incident_number=item.incident.number,
            severity=item.incident.severity_id,
        )
        for item in items
    ]


def register() -> None:
    admin_due_provider_register(
        key="reviews", provide=reviews_due, permission="reviews.view_review"
    )
    admin_due_provider_register(
        key="action-items", provide=action_items_due, permission="reviews.view_actionitem"
    )
