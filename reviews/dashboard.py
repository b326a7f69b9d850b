"""Reviews' part of the admin index's "What needs you now": the reviews the user facilitates
that are still to hold, the action items they own that are not done, and the incident reports
(the 48-hour documentation rule) due from them as incident manager. Registered from
``ready()`` through the core's due-from-user registry."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from incidents.admin.extensions import DueItem, admin_due_provider_register
from incidents.models import ResponseRole, RoleAssignment

from .models import ActionItem, ActionStatus, DocumentationClock, Review, ReviewStatus

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


def reports_due(*, user: Any, now: datetime) -> list[DueItem]:
    """Incident reports still to complete on incidents the user manages: running or missed,
    not paused by a reopening (one query)."""
    manages = Exists(
        RoleAssignment.objects.filter(
            incident=OuterRef("incident"), user=user.pk, role__key=ResponseRole.INCIDENT_MANAGER
        )
    )
    clocks = (
        DocumentationClock.objects.filter(manages, completed_at__isnull=True)
        .filter(Q(missed_at__isnull=False) | Q(next_check_at__isnull=False))
        .select_related("incident")
        .order_by("due_at", "pk")[:LIMIT]
    )
    return [
        DueItem(
            key=str(clock.pk),
            kind="incident report",
            title="Complete the incident report",
            url=reverse("admin:incidents_incident_change", args=[clock.incident_id])
            + "#panel-documentation",
            due_at=clock.due_at,
            incident_number=clock.incident.number,
            severity=clock.incident.severity_id,
        )
        for clock in clocks
    ]


def register() -> None:
    admin_due_provider_register(
        key="reviews", provide=reviews_due, permission="reviews.view_review"
    )
    admin_due_provider_register(
        key="action-items", provide=action_items_due, permission="reviews.view_actionitem"
    )
    admin_due_provider_register(
        key="incident-reports",
        provide=reports_due,
        permission="reviews.view_documentationclock",
    )
