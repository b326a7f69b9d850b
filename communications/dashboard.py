"""Communications' part of the admin index's "What needs you now": the status updates due from
the user, as communications lead of an active incident (the first public update of a
customer-facing incident, §5.2's 30-minute rule, and each stakeholder group's next update).
Registered from ``ready()`` through the core's due-from-user registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef
from django.urls import reverse

from incidents.admin.extensions import DueItem, admin_due_provider_register
from incidents.models import ACTIVE_STATUSES, ResponseRole, RoleAssignment, Status

from .models import FirstUpdateClock, StakeholderSchedule

# Rows per kind: the dashboard shows what is due first, not everything.
LIMIT = 10


def _lead_of(user: Any) -> Exists:
    return Exists(
        RoleAssignment.objects.filter(
            incident=OuterRef("incident"),
            user=user.pk,
            role__key=ResponseRole.COMMUNICATIONS_LEAD,
        )
    )


def _incident_url(incident_id: int, panel: str) -> str:
    return reverse("admin:incidents_incident_change", args=[incident_id]) + f"#panel-{panel}"


def first_updates_due(*, user: Any, now: datetime) -> list[DueItem]:
    """First public updates still to publish on the user's incidents (one query)."""
    clocks = (
        FirstUpdateClock.objects.filter(_lead_of(user), met_at__isnull=True)
        .exclude(next_check_at__isnull=True, missed_at__isnull=True)
        .exclude(incident__status__in=[Status.CANCELLED, Status.CLOSED])
        .filter(incident__customer_facing=True)
        .select_related("incident")
        .order_by("due_at", "pk")[:LIMIT]
    )
    return [
        DueItem(
            key=f"first-{clock.pk}",
            kind="status update",
            title="First public status update",
            url=_incident_url(clock.incident_id, "status-updates"),
            due_at=clock.due_at,
            incident_number=clock.incident.number,
            severity=clock.incident.severity_id,
        )
        for clock in clocks
    ]


def stakeholder_updates_due(*, user: Any, now: datetime) -> list[DueItem]:
    """Each stakeholder group's next update on the user's active incidents (one query)."""
    schedules = (
        StakeholderSchedule.objects.filter(
            _lead_of(user),
            stopped_at__isnull=True,
            next_due_at__isnull=False,
            incident__status__in=ACTIVE_STATUSES,
        )
        .select_related("incident", "group")
        .order_by("next_due_at", "pk")[:LIMIT]
    )
    return [
        DueItem(
            key=f"stakeholders-{schedule.pk}",
            kind="status update",
            title=f"Update for {schedule.group.name}",
            url=_incident_url(schedule.incident_id, "stakeholders"),
            due_at=schedule.next_due_at,
            incident_number=schedule.incident.number,
            severity=schedule.incident.severity_id,
        )
        for schedule in schedules
    ]


def register() -> None:
    admin_due_provider_register(
        key="first-update",
        provide=first_updates_due,
        permission="communications.view_firstupdateclock",
    )
    admin_due_provider_register(
        key="stakeholder-updates",
        provide=stakeholder_updates_due,
        permission="communications.view_stakeholderschedule",
    )
