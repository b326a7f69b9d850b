"""The customer satisfaction survey in the admin: the invitations and their answers (read-only:
they change only through the survey links), and the incident page's panel with the incident's
results against the satisfaction KPI's target."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import admin
from django.db.models import Avg, Count, Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from incidents.admin.extensions import incident_page_panel_register
from incidents.models import Incident

from ..models import KpiDefinition, Measure, SurveyInvitation
from ..services.survey import RATINGS, survey_policy

VIEW_PERMISSION = "kpis.view_surveyinvitation"
MONTHS_LISTED = 12
COMMENTS_SHOWN = 5


def _zone() -> ZoneInfo:
    try:
        return ZoneInfo(survey_policy().time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _month_bounds(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return (
        datetime(month.year, month.month, 1, tzinfo=zone),
        datetime(following.year, following.month, 1, tzinfo=zone),
    )


class IncidentMonthFilter(admin.SimpleListFilter):
    """The month the incident was detected in, in the KPI policy's time zone: the month its
    ratings count in."""

    title = "incident month"
    parameter_name = "month"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        today = timezone.now().astimezone(_zone()).date()
        year, month = today.year, today.month
        months = []
        for _ in range(MONTHS_LISTED):
            months.append((f"{year:04d}-{month:02d}", f"{date(year, month, 1):%B %Y}"))
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return months

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if not value:
            return queryset
        try:
            month = datetime.strptime(value, "%Y-%m").date()
        except ValueError:
            return queryset.none()
        start, end = _month_bounds(month, _zone())
        return queryset.filter(incident__detected_at__gte=start, incident__detected_at__lt=end)


class FinalizedFilter(admin.SimpleListFilter):
    title = "answer"
    parameter_name = "answer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("final", "Sent (finalised)"),
            ("clicked", "Score clicked, not finalised"),
            ("none", "No answer"),
        ]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        if self.value() == "final":
            return queryset.filter(finalized_at__isnull=False)
        if self.value() == "clicked":
            return queryset.filter(finalized_at__isnull=True, rating__isnull=False)
        if self.value() == "none":
            return queryset.filter(rating__isnull=True)
        return queryset


@admin.register(SurveyInvitation)
class SurveyInvitationAdmin(admin.ModelAdmin):
    """Read-only: an answer is the customer's, changed only through their links."""

    list_display = (
        "incident_link",
        "customer_name",
        "email",
        "sent_at",
        "rating",
        "rated_at",
        "finalized_at",
        "comment_short",
    )
    list_filter = ("rating", FinalizedFilter, IncidentMonthFilter)
    search_fields = ("=incident__number", "email", "customer_name")
    list_select_related = ("incident",)
    date_hierarchy = "sent_at"
    fields = (
        "incident",
        "customer_name",
        "name",
        "email",
        "contact",
        "sent_at",
        "expires_at",
        "rating",
        "rated_at",
        "finalized_at",
        "comment",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Incident", ordering="incident__number")
    def incident_link(self, obj: SurveyInvitation) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:incidents_incident_change", args=[obj.incident_id]),
            obj.incident.number,
        )

    @admin.display(description="Comment")
    def comment_short(self, obj: SurveyInvitation) -> str:
        text = " ".join(obj.comment.split())
        return text if len(text) <= 80 else text[:79] + "…"


# --- the incident page's panel ------------------------------------------------------------------


def _satisfaction_target() -> float | None:
    definition = (
        KpiDefinition.objects.filter(measure=Measure.SATISFACTION, is_active=True)
        .order_by("position", "pk")
        .first()
    )
    return float(definition.target) if definition is not None else None


def incident_panel(*, request: HttpRequest, incident: Incident) -> Any:
    rows = SurveyInvitation.objects.filter(incident=incident)
    totals = rows.aggregate(
        invited=Count("pk"),
        answered=Count("pk", filter=Q(rating__isnull=False)),
        finalised=Count("pk", filter=Q(finalized_at__isnull=False)),
        mean=Avg("rating"),
        **{f"n{n}": Count("pk", filter=Q(rating=n)) for n in RATINGS},
    )
    target = _satisfaction_target()
    mean = totals["mean"]
    comments = list(rows.exclude(comment="").order_by("-finalized_at", "-pk")[:COMMENTS_SHOWN])
    if totals["invited"]:
        why_none = ""
    elif not incident.customer_facing:
        why_none = "No survey: the incident is not customer-facing."
    elif not survey_policy().survey_enabled:
        why_none = "No survey: the survey is turned off in the KPI policy."
    elif incident.resolved_at is None:
        why_none = "The affected customers' contacts are surveyed when the incident resolves."
    else:
        why_none = "No one was surveyed: no customer contact uses the incident's services."
    return render_to_string(
        "kpis/survey/admin_panel.html",
        {
            "totals": totals,
            "mean": mean,
            "target": target,
            "met": None if mean is None or target is None else mean >= target,
            "distribution": [(n, label, totals[f"n{n}"]) for n, label in RATINGS.items()],
            "comments": comments,
            "why_none": why_none,
            "list_url": reverse("admin:kpis_surveyinvitation_changelist") + f"?q={incident.number}",
        },
        request=request,
    )


incident_page_panel_register(
    key="survey",
    title="Customer satisfaction survey",
    render=incident_panel,
    permission=VIEW_PERMISSION,
)
