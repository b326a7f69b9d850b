"""Booking in the admin: the review policy (one row) and the company closure days, edited
through their services with their history, and the admin index's "Overdue reviews" panel
(booked reviews not held by their due date, oldest first)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from incidents.admin.common import NoRevertMixin, ServiceWriteAdminMixin, WriteServices
from incidents.admin.extensions import admin_index_panel_register

from ..models import ClosureDay, Review, ReviewPolicy, ReviewStatus
from ..services.policy import (
    closure_day_create,
    closure_day_delete,
    closure_day_update,
    review_policy_update,
)

PERM_VIEW = "reviews.view_review"
INDEX_LIMIT = 10


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(instance="policy", update=review_policy_update)
    list_display = (
        "__str__",
        "required_severities",
        "business_days",
        "time_zone",
        "close_guard_severities",
    )
    fieldsets = (
        ("Which incidents need a review", {"fields": ("required_severities", "business_days")}),
        (
            "The meeting",
            {"fields": ("meeting_minutes", "workday_start", "workday_end", "time_zone")},
        ),
        ("Closing", {"fields": ("close_guard_severities",)}),
        (
            "Documentation and action items",
            {
                "fields": (
                    "documentation_hours",
                    "documentation_reminder_hours",
                    "action_reminder_days",
                )
            },
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row, seeded

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ClosureDay)
class ClosureDayAdmin(ServiceWriteAdminMixin, NoRevertMixin, SimpleHistoryAdmin):
    write_services = WriteServices(
        instance="closure_day",
        create=closure_day_create,
        update=closure_day_update,
        delete=closure_day_delete,
    )
    list_display = ("date", "name")
    date_hierarchy = "date"
    search_fields = ("name",)
    fields = ("date", "name")


def _review_link(review: Review) -> str:
    try:
        return reverse("admin:reviews_review_change", args=[review.pk])
    except NoReverseMatch:
        return reverse("admin:incidents_incident_change", args=[review.incident_id])


def overdue_index_panel(*, request: HttpRequest) -> Any:
    """Booked reviews flagged overdue, the longest overdue first (None when there are none)."""
    overdue = list(
        Review.objects.select_related("incident")
        .filter(status=ReviewStatus.BOOKED, overdue_at__isnull=False)
        .order_by("due_date", "pk")[: INDEX_LIMIT + 1]
    )
    if not overdue:
        return None
    rows = format_html_join(
        "",
        '<li data-overdue-review="{}"><a href="{}">{} {}</a> — due {}, facilitator {}</li>',
        (
            (
                review.pk,
                _review_link(review),
                review.incident.number,
                review.incident.title,
                f"{review.due_date:%a %d %b %Y}",
                review.facilitator_name or review.facilitator_email or "not set",
            )
            for review in overdue[:INDEX_LIMIT]
        ),
    )
    more = format_html("<p>{}</p>", "More are overdue.") if len(overdue) > INDEX_LIMIT else ""
    return format_html('<ul class="vigil-overdue-reviews">{}</ul>{}', rows, more)


admin_index_panel_register(
    key="overdue-reviews",
    title="Overdue reviews",
    render=overdue_index_panel,
    permission=PERM_VIEW,
)
