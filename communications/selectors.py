"""Reads of public communication for the staff screens.

The first-update clock (the 30-minute rule): :func:`first_update_countdown` says where one
incident's clock stands, in words for the incident page; :func:`first_update_clocks_open` lists
the customer-facing incidents still waiting for their first public update, for the admin index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from incidents.models import Incident, Status
from incidents.timeformat import time_text

from .models import Customer, CustomerContact, DeliveryState, FirstUpdateClock, Suppression

__all__ = ["Countdown", "first_update_clocks_open", "first_update_countdown"]


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


def _local(value: datetime) -> str:
    return time_text(value)


@dataclass(frozen=True)
class Countdown:
    """Where a clock stands at ``now``: ``state`` is ``due`` (running), ``overdue`` (past due,
    nothing published), ``met`` (published in time), ``late`` (published after the due time),
    ``stopped`` (cancelled or made internal) or ``none`` (no clock); ``text`` says it."""

    state: str
    text: str
    clock: FirstUpdateClock | None = None

    @property
    def urgent(self) -> bool:
        return self.state == "overdue"


def countdown_of(clock: FirstUpdateClock, *, incident: Incident, now: datetime) -> Countdown:
    """The countdown of ``clock`` (of ``incident``) at ``now``, without a query."""
    if clock.met_at is not None:
        after = _minutes(clock.met_at - clock.confirmed_at)
        if clock.met_at <= clock.due_at:
            return Countdown(
                "met", f"Met at {_local(clock.met_at)} ({after} min after confirmation)", clock
            )
        late = _minutes(clock.met_at - clock.due_at)
        return Countdown(
            "late",
            f"Published at {_local(clock.met_at)}, {late} min late "
            f"({after} min after confirmation)",
            clock,
        )
    if clock.next_check_at is None and clock.missed_at is None:
        why = (
            "the incident was cancelled"
            if incident.status == Status.CANCELLED
            else "the incident is not customer-facing"
        )
        return Countdown("stopped", f"Stopped: {why}", clock)
    if now >= clock.due_at:
        return Countdown(
            "overdue",
            f"First public update overdue by {_minutes(now - clock.due_at)} min "
            f"(was due at {_local(clock.due_at)})",
            clock,
        )
    left = max(1, math.ceil((clock.due_at - now).total_seconds() / 60))
    return Countdown(
        "due", f"First public update due in {left} min (by {_local(clock.due_at)})", clock
    )


def first_update_countdown(*, incident: Incident, now: datetime | None = None) -> Countdown:
    """Where the first-update clock of ``incident`` stands (one query)."""
    now = now or timezone.now()
    clock = FirstUpdateClock.objects.filter(incident_id=incident.pk).first()
    if clock is not None:
        return countdown_of(clock, incident=incident, now=now)
    if not incident.customer_facing:
        return Countdown("none", "Not customer-facing: no public update is required")
    if incident.status == Status.CANCELLED:
        return Countdown("none", "Cancelled: no public update is required")
    return Countdown(
        "none",
        "Starts when the incident is acknowledged: the first public update is due "
        "within the policy's time of confirmation",
    )


def first_update_clocks_open(
    *, now: datetime | None = None, limit: int = 20
) -> tuple[list[tuple[Incident, Countdown]], int]:
    """The incidents whose first public update is still to come (running or overdue), the
    soonest due first, with their countdowns; and how many there are in all. Two queries."""
    now = now or timezone.now()
    clocks = (
        FirstUpdateClock.objects.filter(met_at__isnull=True)
        .exclude(next_check_at__isnull=True, missed_at__isnull=True)
        .exclude(incident__status__in=[Status.CANCELLED, Status.CLOSED])
        .filter(incident__customer_facing=True)
        .select_related("incident", "incident__severity")
        .order_by("due_at", "pk")
    )
    rows = [(c.incident, countdown_of(c, incident=c.incident, now=now)) for c in clocks[:limit]]
    return rows, (len(rows) if len(rows) < limit else clocks.count())


# --- delivery counts of a publication's messages -----------------------------------------------

D = DeliveryState
# What the admin and the API count for each published update: each name and the states in it.
DELIVERY_COUNTED = {
    "queued": [D.QUEUED, D.DEFERRED],
    "sent": [D.SENT],
    "delivered": [D.DELIVERED],
    "bounced": [D.BOUNCED, D.REJECTED],
    "complained": [D.COMPLAINED, D.UNSUBSCRIBED],
    "failed": [D.FAILED],
}


def delivery_counts(relation: str = "messages") -> dict[str, Count]:
    """Annotations counting an update's (or a maintenance's) messages per name of
    :data:`DELIVERY_COUNTED`, as ``deliveries_<name>`` (one join, in the list's own query)."""
    return {
        f"deliveries_{name}": Count(relation, filter=Q(**{f"{relation}__state__in": states}))
        for name, states in DELIVERY_COUNTED.items()
    }


# --- the customers an incident affected ---------------------------------------------------------


def incident_customer_contacts(*, incident: Incident) -> QuerySet[CustomerContact]:
    """The contacts of the customers using any of ``incident``'s services who receive incident
    email (not opted out) and whose address is not on the suppression list (a hard bounce, a
    complaint, staff's decision), each once, by id. Whether the incident is customer-facing is
    the caller's decision. An address may appear twice (two customers' contacts)."""
    customers = Customer.objects.filter(services__in=incident.services.values("pk")).values("pk")
    suppressed = Suppression.objects.annotate(address=Lower("email")).filter(
        address=Lower(OuterRef("email"))
    )
    return (
        CustomerContact.objects.filter(incident_email=True, customer__in=customers)
        .exclude(Exists(suppressed))
        .select_related("customer")
        .order_by("pk")
    )
