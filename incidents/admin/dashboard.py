"""The admin index's "What needs you now": one ranked list for the signed-in responder.

Ranked, most urgent first: incidents nobody acknowledged (most severe, then oldest), incidents
acknowledged but past a target, what is overdue from the user, the user's other active
incidents (where they hold a role), then what is due from them later. Every row says why it
is there and counts down to its deadline; the server writes the remaining time as text
("7 min left", "3 min over") and ``incidents/dashboard.js`` only ticks it on.

What is due from the user (status updates, reviews, action items) and who is on call come from
the apps above the core, through :mod:`incidents.admin.extensions`. The list is rendered whole
for the page and alone for the fragment the page polls (``admin:vigil_needs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from ..models import Incident
from ..selectors import dashboard_needs, incident_sla_clock
from ..timeformat import time_text, when
from .display import clock_state, duration_text, severity_badge, status_badge
from .extensions import DueItem, admin_due_items, admin_index_panels

# How often the page asks for the list again (seconds).
DEFAULT_POLL_SECONDS = 5
# A due item this close to its deadline is shown as a warning.
DUE_SOON_SECONDS = 15 * 60


@dataclass
class NeedRow:
    """One row of the ranked list."""

    key: str
    reason: str
    tone: str  # "waiting" | "late" | "due" | "mine": the row's colour
    title: str
    url: str
    number: str = ""
    severity: int | None = None
    severity_html: Any = ""
    status_html: Any = ""
    roles: list[str] = field(default_factory=list)
    deadline: datetime | None = None
    deadline_label: str = ""
    deadline_text: str = ""
    countdown: str = ""
    clock: str = "none"  # "breached" | "warning" | "running" | "none" (vigil-clock-*)
    action: str = "Open"
    incident_id: int | None = None


def countdown_text(deadline: datetime, now: datetime) -> str:
    """ "7 min left" or "3 min over" (``incidents/dashboard.js`` writes the same words)."""
    remaining = (deadline - now).total_seconds()
    if remaining < 0:
        return f"{duration_text(remaining)} over"
    return f"{duration_text(remaining)} left"


def deadline_text(deadline: datetime, now: datetime) -> str:
    """The deadline in the reader's zone, with its date when it is not today: "14:05 CET",
    "4 Dec 2026, 09:00 CET"."""
    local = timezone.localtime(deadline)
    if local.date() == timezone.localtime(now).date():
        return time_text(local)
    return when(local)


def poll_seconds() -> int:
    return int(getattr(settings, "VIGIL_DASHBOARD_POLL_SECONDS", DEFAULT_POLL_SECONDS))


def _incident_row(
    incident: Incident, *, reason: str, tone: str, roles: list[str], now: datetime
) -> NeedRow:
    clock = incident_sla_clock(incident, now)
    waiting = incident.acknowledged_at is None
    row = NeedRow(
        key=f"incident-{incident.pk}",
        reason=reason,
        tone=tone,
        title=incident.title,
        url=reverse("admin:incidents_incident_change", args=[incident.pk]),
        number=incident.number,
        severity=incident.severity_id,
        severity_html=severity_badge(incident.severity),
        status_html=status_badge(incident.status),
        roles=roles,
        action="Acknowledge" if waiting else "Open",
        incident_id=incident.pk,
    )
    if clock.due_at is not None:
        row.deadline = clock.due_at
        row.deadline_label = "to acknowledge" if clock.target == "response" else "to resolve"
        row.countdown = countdown_text(clock.due_at, now)
        row.deadline_text = deadline_text(clock.due_at, now)
        row.clock = "breached" if clock.remaining_seconds < 0 else clock_state(incident, clock)
    return row


def _due_row(item: DueItem, now: datetime) -> NeedRow:
    remaining = (item.due_at - now).total_seconds()
    label = f"{item.incident_number} · {item.title}" if item.incident_number else item.title
    return NeedRow(
        key=f"due-{item.key}",
        reason=f"Due from you: {item.kind}",
        tone="due",
        title=label,
        url=item.url,
        severity=item.severity,
        severity_html=severity_badge(None, level=item.severity) if item.severity else "",
        deadline=item.due_at,
        deadline_label="due",
        countdown=countdown_text(item.due_at, now),
        deadline_text=deadline_text(item.due_at, now),
        clock="breached"
        if remaining < 0
        else "warning"
        if remaining < DUE_SOON_SECONDS
        else "running",
        action="Open",
    )


def needs_context(*, request: HttpRequest, now: datetime | None = None) -> dict[str, Any]:
    """Everything the list's template (``admin/vigil/needs.html``) needs, for request.user."""
    now = now or timezone.now()
    needs = dashboard_needs(user=request.user, now=now)
    due = admin_due_items(request=request, now=now)
    overdue = [item for item in due.items if item.due_at < now]
    later = [item for item in due.items if item.due_at >= now]
    rows: list[NeedRow] = []
    for incident in needs.unacknowledged:
        rows.append(
            _incident_row(
                incident,
                reason="Not acknowledged",
                tone="waiting",
                roles=needs.roles.get(incident.pk, []),
                now=now,
            )
        )
    for incident in needs.breached:
        rows.append(
            _incident_row(
                incident,
                reason="Past target",
                tone="late",
                roles=needs.roles.get(incident.pk, []),
                now=now,
            )
        )
    rows.extend(_due_row(item, now) for item in overdue)
    for incident in needs.mine:
        rows.append(
            _incident_row(
                incident,
                reason="Your incident",
                tone="mine",
                roles=needs.roles.get(incident.pk, []),
                now=now,
            )
        )
    rows.extend(_due_row(item, now) for item in later)
    changelist = reverse("admin:incidents_incident_changelist")
    return {
        "rows": rows,
        "needs": needs,
        "due_unavailable": due.unavailable,
        "more_unacknowledged": needs.unacknowledged_total - len(needs.unacknowledged),
        "more_breached": needs.breached_acknowledged_total - len(needs.breached),
        "more_mine": needs.mine_total - len(needs.mine),
        "changelist": changelist,
        "now_panels": admin_index_panels(request=request, area="now"),
        "updated_at": now,
        "poll_seconds": poll_seconds(),
        "fragment_url": reverse("admin:vigil_needs"),
    }
