"""Reads of the incident core, shaped for the admin, the API and the report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    When,
)
from django.utils import timezone
from django.utils.text import smart_split, unescape_string_literal

from .models import (
    ACTIVE_STATUSES,
    EventHandling,
    HandlingStatus,
    Incident,
    ResponseRole,
    RoleAssignment,
    SeverityLevel,
    TimelineEntry,
)
from .report_extensions import report_follow_ups, report_sections
from .services.lifecycle import ACTIONS, actions_available

__all__ = [
    "ACTIONS",
    "DashboardNeeds",
    "SlaClock",
    "actions_available",
    "dashboard_needs",
    "dashboard_summary",
    "event_handler_alerts",
    "events_backlog",
    "incident_get",
    "incident_involving",
    "incident_list",
    "incident_next_due",
    "incident_report",
    "incident_search",
    "incident_sla_clock",
    "incident_timeline",
]


def incident_list(
    *, filters: dict[str, Any] | None = None, with_next_due: bool = False
) -> QuerySet[Incident]:
    """Incidents with what a list row shows, in a fixed number of queries whatever the size;
    ``with_next_due`` adds ``next_due_at`` (``incident_next_due``) to sort by."""
    assignments = RoleAssignment.objects.select_related("user", "role")
    queryset = (
        Incident.objects.filter(**(filters or {}))
        .select_related("severity")
        .prefetch_related("services", Prefetch("role_assignments", queryset=assignments))
    )
    if with_next_due:
        queryset = queryset.annotate(next_due_at=incident_next_due())
    return queryset


def incident_next_due() -> Case:
    """The next SLA deadline of an active incident, for sorting and annotation: the response
    target until it is acknowledged, then the resolution target; none once it has ended (so
    ended incidents sort after every running clock). The same deadline the list's SLA column
    counts down to (``incident_sla_clock``).

    No index holds this expression: a sort by it reads the rows the filters leave, which by
    default are the active incidents (a handful, found through the status index), then sorts
    them; over "All" it is a top-N sort of every incident, as for any unindexed column."""
    return Case(
        When(
            status__in=ACTIVE_STATUSES,
            acknowledged_at__isnull=True,
            then=F("response_due_at"),
        ),
        When(status__in=ACTIVE_STATUSES, then=F("resolution_due_at")),
        default=None,
        output_field=DateTimeField(),
    )


# Part of an ID ("INC-2025-0101", "0101-004"): matched against IDs only. Plain numbers
# ("500") stay title words.
INCIDENT_NUMBER = re.compile(r"^\s*INC-\d{4}-\d{4}-\d{3,}\s*$", re.IGNORECASE)
INCIDENT_NUMBER_PART = re.compile(r"^(INC-?[0-9-]*|[0-9]+-[0-9-]*)$", re.IGNORECASE)


def incident_search(*, queryset: QuerySet[Incident], term: str) -> QuerySet[Incident]:
    """Incidents of ``queryset`` matching a search: a whole ID (a unique-index lookup), part
    of an ID, or words each found in the title or in the name of someone holding a role on
    it (username, first or last name). People are looked up first and their incidents
    through the assignments' user index, so a name never joins every incident to every
    assignment; no row is repeated."""
    term = term.strip()
    if not term:
        return queryset
    if INCIDENT_NUMBER.match(term):
        return queryset.filter(number=term.upper())
    if INCIDENT_NUMBER_PART.match(term):
        return queryset.filter(number__icontains=term)
    for word in smart_split(term):
        if word[0] in "\"'" and word[-1] == word[0]:
            word = unescape_string_literal(word)
        if not word:  # a lone or empty pair of quotes
            continue
        people = get_user_model().objects.filter(
            Q(username__icontains=word)
            | Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
        )
        # The people first (a small table, one short query): a word nobody's name holds is a
        # title search alone, which PostgreSQL answers from the trigram index on UPPER(title)
        # (migration 0015); OR-ed with the holders' subquery it would test every row's title.
        people = list(people.values_list("pk", flat=True))
        if not people:
            queryset = queryset.filter(title__icontains=word)
            continue
        held = RoleAssignment.objects.filter(user__in=people).values("incident_id")
        queryset = queryset.filter(Q(title__icontains=word) | Q(pk__in=held))
    return queryset


def incident_involving(*, queryset: QuerySet[Incident], user: Any) -> QuerySet[Incident]:
    """Incidents of ``queryset`` where ``user`` holds any response role, or that they declared."""
    held = RoleAssignment.objects.filter(user=user).values("incident_id")
    return queryset.filter(Q(pk__in=held) | Q(created_by=user))


def incident_get(*, number: str) -> Incident | None:
    return incident_list().filter(number=number).first()


def incident_timeline(*, incident: Incident) -> QuerySet[TimelineEntry]:
    return incident.timeline.select_related("actor").order_by("occurred_at", "id")


def incident_manager_of(incident: Incident) -> Any:
    """The incident manager from prefetched assignments (no query when prefetched)."""
    for assignment in incident.role_assignments.all():
        if assignment.role.key == ResponseRole.INCIDENT_MANAGER:
            return assignment.user
    return None


@dataclass(frozen=True)
class SlaClock:
    """The clock that matters now: response until acknowledged, then resolution."""

    target: str  # "response" | "resolution" | "" when no clock runs
    due_at: datetime | None
    remaining_seconds: float | None
    breached: bool
    met: bool


def incident_sla_clock(incident: Incident, now: datetime | None = None) -> SlaClock:
    now = now or timezone.now()
    if not incident.is_active:
        met = not incident.resolution_breached_at(now) and not incident.response_breached_at(now)
        return SlaClock(target="", due_at=None, remaining_seconds=None, breached=not met, met=met)
    if incident.acknowledged_at is None:
        target, due = "response", incident.response_due_at
    else:
        target, due = "resolution", incident.resolution_due_at
    remaining = (due - now).total_seconds()
    breached = incident.response_breached_at(now) or remaining < 0
    return SlaClock(
        target=target, due_at=due, remaining_seconds=remaining, breached=breached, met=False
    )


def dashboard_summary(*, now: datetime | None = None) -> dict[str, Any]:
    """Admin index: active incidents per severity and those past their targets."""
    now = now or timezone.now()
    active = Incident.objects.active()
    counts = dict(active.values("severity").annotate(n=Count("id")).values_list("severity", "n"))
    by_severity = [
        {"level": level.level, "name": level.name, "count": counts.get(level.level, 0)}
        for level in SeverityLevel.objects.all()
    ]
    breached = (
        incident_list(filters={"status__in": ACTIVE_STATUSES})
        .breached(now)
        .order_by("severity", "detected_at")[:20]
    )
    return {
        "by_severity": by_severity,
        "active_total": sum(counts.values()),
        "breached": list(breached),
        "breached_total": active.breached(now).count(),
        "unacknowledged_total": active.filter(acknowledged_at__isnull=True).count(),
    }


@dataclass(frozen=True)
class DashboardNeeds:
    """What the admin index's "What needs you now" list ranks, for one user: active incidents
    nobody acknowledged (most severe, then oldest), those acknowledged but past a target, and
    the user's other active incidents (where they hold a role); each list cut at ``limit``.
    ``roles`` maps an incident's pk to the names of the roles the user holds on it. The totals
    count each list uncut (``breached_total`` counts every active incident past a target,
    acknowledged or not; ``mine_total``: the user's incidents in neither other list)."""

    unacknowledged: list[Incident]
    breached: list[Incident]
    mine: list[Incident]
    roles: dict[int, list[str]]
    by_severity: list[dict[str, Any]]
    active_total: int
    unacknowledged_total: int
    breached_total: int
    breached_acknowledged_total: int
    mine_total: int


DASHBOARD_LIMIT = 10


def dashboard_needs(
    *, user: Any, now: datetime | None = None, limit: int = DASHBOARD_LIMIT
) -> DashboardNeeds:
    """The ranked incidents of the admin index for ``user``, in a fixed number of queries
    whatever the number of incidents (at most eight)."""
    now = now or timezone.now()
    active = Incident.objects.active()
    holds_role = Exists(RoleAssignment.objects.filter(incident=OuterRef("pk"), user=user.pk))
    waiting = Q(acknowledged_at__isnull=True)
    late = Q(pk__in=active.breached(now).values("pk"))
    counts = active.aggregate(
        total=Count("pk"),
        unacknowledged=Count("pk", filter=waiting),
        breached=Count("pk", filter=late),
        breached_acknowledged=Count("pk", filter=~waiting & late),
        mine=Count("pk", filter=~waiting & ~late & Q(holds_role)),
    )
    per_level = dict(active.values_list("severity").annotate(n=Count("pk")))
    by_severity = [
        {"level": level.level, "name": level.name, "count": per_level.get(level.level, 0)}
        for level in SeverityLevel.objects.all()
    ]
    rows = active.select_related("severity").order_by("severity", "detected_at", "pk")
    unacknowledged = list(rows.filter(waiting)[:limit])
    breached = list(rows.filter(~waiting).breached(now)[:limit])
    mine = list(rows.filter(~waiting, holds_role).not_breached(now)[:limit])
    shown = [*unacknowledged, *breached, *mine]
    roles: dict[int, list[str]] = {}
    if shown:
        held = RoleAssignment.objects.filter(
            user=user.pk, incident__in=[incident.pk for incident in shown]
        ).select_related("role")
        for assignment in held.order_by("role__position"):
            roles.setdefault(assignment.incident_id, []).append(assignment.role.name)
    return DashboardNeeds(
        unacknowledged=unacknowledged,
        breached=breached,
        mine=mine,
        roles=roles,
        by_severity=by_severity,
        active_total=counts["total"],
        unacknowledged_total=counts["unacknowledged"],
        breached_total=counts["breached"],
        breached_acknowledged_total=counts["breached_acknowledged"],
        mine_total=counts["mine"],
    )


def incident_report(*, incident: Incident) -> dict[str, Any]:
    """Everything the §6.2 report template needs, read in a fixed number of queries."""
    incident = incident_list().get(pk=incident.pk)
    timeline = list(incident_timeline(incident=incident))
    end = incident.resolved_at or incident.closed_at or incident.cancelled_at
    return {
        "incident": incident,
        "start": incident.impact_started_at or incident.detected_at,
        "end": end,
        "timeline": timeline,
        "services": list(incident.services.all()),
        "roles": list(incident.role_assignments.all()),
        # What the apps above the core add (post-incident reviews: follow-up actions, the
        # published review), through the report's registries; the core imports none of them.
        "follow_up_actions": report_follow_ups(incident=incident),
        "sections": report_sections(incident=incident),
    }


@dataclass(frozen=True)
class HandlerAlerts:
    """Incident-event handlers that gave up: a follower (escalation, communications, reviews)
    did not react to something that happened, until an operator retries it."""

    failed_total: int
    failed_last_24h: int
    latest: list[Any]


def event_handler_alerts(*, now: datetime | None = None, limit: int = 5) -> HandlerAlerts:
    """Handlers that gave up on an event (and were not retried since), newest first."""
    now = now or timezone.now()
    failed = EventHandling.objects.filter(status=HandlingStatus.FAILED)
    counts = failed.aggregate(
        total=Count("pk"), recent=Count("pk", filter=Q(finished_at__gte=now - timedelta(hours=24)))
    )
    latest = list(
        failed.select_related("event", "event__incident").order_by("-finished_at", "-id")[:limit]
    )
    return HandlerAlerts(
        failed_total=counts["total"], failed_last_24h=counts["recent"], latest=latest
    )


def events_backlog(*, now: datetime | None = None) -> dict[str, Any]:
    """Incident events not yet followed: how many, and how long the oldest one that is due
    (not waiting for a handler's retry) has waited. Two indexed queries."""
    from .models import EventStatus, IncidentEvent

    now = now or timezone.now()
    unfinished = IncidentEvent.objects.filter(status__in=[EventStatus.PENDING, EventStatus.RUNNING])
    oldest = (
        unfinished.filter(next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return {
        "unfinished": unfinished.count(),
        "oldest_due_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
    }
