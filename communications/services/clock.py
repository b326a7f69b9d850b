"""The 30-minute rule (§5.2 "status page updates within 30 minutes of confirmed incident"): the
first-update clock of a customer-facing incident, its reminders and its miss.

* **Confirmed** means acknowledged (``Incident.acknowledged_at``; every transition out of
  *open* other than cancelling sets it). The clock starts when an incident is acknowledged
  while customer-facing, or is marked customer-facing after it was acknowledged; then it counts
  from that moment. It is started by the ``communications`` handler of the incident's events.
* It takes the policy's times when it starts (``due_at``, ``reminder_minutes``): a policy edit
  applies to the clocks started after it, a running clock keeps its own (as escalation keeps its
  policy snapshot).
* It is **met** by the incident's first published status update
  (:func:`first_update_published`, called by the publishing service; the sweep also finds a
  published update by itself). A met clock stops.
* The sweep (:func:`first_update_sweep` in ``clock_sweep``, beat) claims due clocks by
  ``next_check_at`` (indexed) with ``FOR UPDATE SKIP LOCKED``; each reminder point and the miss are
  recorded on the locked row before it is released, and every notification has a deterministic
  idempotency key, so two sweeps at the same moment remind once and record the miss once.
* Reminders go to the communications lead (``comms_leads``): the user assigned the role on the
  incident, else the Communications Lead role's primary contact; from the second reminder on, and
  with the miss, to the role's backup contact as well. They are sent through the outbox
  (``escalation.outbox.notification_enqueue``) on the channels of the incident's severity that reach
  a person (e-mail when it has none), one timeline entry per reminder.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from incidents.events import INCIDENT_UPDATED
from incidents.models import Incident, IncidentEvent, Kind, Source, Status
from incidents.services.common import timeline_record
from incidents.timeformat import time_text

from ..models import FirstUpdateClock, StatusUpdate, UpdateState
from .policy import communication_policy_get

__all__ = [
    "clock_for_incident_start",
    "clock_for_incident_stop",
    "first_update_published",
]


# --- starting and stopping -------------------------------------------------------------------


def minutes_text(value: timedelta) -> str:
    return f"{int(value.total_seconds() // 60)} min"


def clock_time_text(value: datetime) -> str:
    return time_text(value)


def first_published(incident: Incident) -> StatusUpdate | None:
    return (
        StatusUpdate.objects.filter(
            incident=incident, state=UpdateState.PUBLISHED, published_at__isnull=False
        )
        .order_by("published_at", "pk")
        .first()
    )


def _customer_facing_since(incident: Incident) -> datetime | None:
    """When the incident last became customer-facing, if an edit made it so (None when it was
    created customer-facing). Read from its events, so a handler running late decides as it
    would have on time."""
    events = IncidentEvent.objects.filter(incident=incident, name=INCIDENT_UPDATED).order_by(
        "-occurred_at", "-pk"
    )
    for event in events.only("payload", "occurred_at"):
        if "customer_facing" in (event.payload or {}).get("fields", ()):
            return event.occurred_at
    return None


def next_check(clock: FirstUpdateClock) -> datetime | None:
    """The next reminder point not yet sent, or the due time; None once met or missed."""
    if clock.met_at is not None or clock.missed_at is not None:
        return None
    points = [
        clock.confirmed_at + timedelta(minutes=m)
        for m in clock.reminder_minutes
        if m not in clock.reminders_sent
    ]
    return min([*points, clock.due_at])


def clock_met(
    *, clock: FirstUpdateClock, incident: Incident, update_id: int | None, at: datetime
) -> None:
    clock.met_at = at
    clock.next_check_at = None
    clock.save(update_fields=["met_at", "next_check_at"])
    after = at - clock.confirmed_at
    if at <= clock.due_at:
        message = (
            f"First public update published at {clock_time_text(at)}, {minutes_text(after)} after "
            f"confirmation: the {minutes_text(clock.due_at - clock.confirmed_at)} rule is met."
        )
    else:
        message = (
            f"First public update published at {clock_time_text(at)}, {minutes_text(after)} after "
            f"confirmation ({minutes_text(at - clock.due_at)} late)."
        )
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=Source.SYSTEM,
        actor=None,
        message=message,
        data={"first_update": "met", "status_update": update_id, "late": at > clock.due_at},
    )


@transaction.atomic
def clock_for_incident_start(*, incident: Incident) -> FirstUpdateClock | None:
    """Start the first-update clock of ``incident`` if it is customer-facing, acknowledged and
    not cancelled, or re-arm a stopped one (it was made internal and is customer-facing again).

    The clock counts from the later of the acknowledgement and the moment the incident was
    marked customer-facing. If the incident already has a published update, the clock is
    created met. Writes one timeline entry when it starts. Idempotent (one clock per incident):
    returns the existing clock, or None when the incident needs none. Re-arming a stopped clock
    writes a timeline entry too."""
    incident = Incident.objects.get(pk=incident.pk)
    if (
        not incident.customer_facing
        or incident.acknowledged_at is None
        or incident.status == Status.CANCELLED
    ):
        return None
    existing = FirstUpdateClock.objects.select_for_update().filter(incident=incident).first()
    if existing is not None:
        if existing.next_check_at is None and next_check(existing) is not None:
            existing.next_check_at = next_check(existing)
            existing.save(update_fields=["next_check_at"])
            timeline_record(
                incident=incident,
                kind=Kind.COMMUNICATION,
                source=Source.SYSTEM,
                actor=None,
                message=(
                    "First public update clock resumed: the incident is customer-facing "
                    "again; the first public status update is due by "
                    f"{clock_time_text(existing.due_at)}."
                ),
                data={"first_update": "resumed"},
            )
        return existing

    policy = communication_policy_get()
    since = _customer_facing_since(incident)
    confirmed_at = max(incident.acknowledged_at, since) if since else incident.acknowledged_at
    due_minutes = policy.first_update_minutes
    clock = FirstUpdateClock(
        incident=incident,
        confirmed_at=confirmed_at,
        due_at=confirmed_at + timedelta(minutes=due_minutes),
        reminder_minutes=sorted({int(m) for m in policy.reminder_minutes if 0 < m < due_minutes}),
        reminders_sent=[],
    )
    clock.next_check_at = next_check(clock)
    try:
        with transaction.atomic():
            clock.save(force_insert=True)
    except IntegrityError:
        return FirstUpdateClock.objects.get(incident=incident)
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"Customer-facing incident confirmed: the first public status update is due by "
            f"{clock_time_text(clock.due_at)} ({due_minutes} minutes after confirmation)."
        ),
        data={
            "first_update": "started",
            "confirmed_at": confirmed_at.isoformat(),
            "due_at": clock.due_at.isoformat(),
            "reminder_minutes": clock.reminder_minutes,
        },
    )
    published = first_published(incident)
    if published is not None:
        clock_met(clock=clock, incident=incident, update_id=published.pk, at=published.published_at)
    return clock


def clock_stop(*, clock: FirstUpdateClock, incident: Incident, why: str) -> None:
    clock.next_check_at = None
    clock.save(update_fields=["next_check_at"])
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=Source.SYSTEM,
        actor=None,
        message=f"First public update clock stopped: {why}.",
        data={"first_update": "stopped"},
    )


def stop_reason(incident: Incident) -> str | None:
    if incident.status == Status.CANCELLED:
        return "the incident was cancelled"
    if not incident.customer_facing:
        return "the incident is no longer customer-facing"
    return None


@transaction.atomic
def clock_for_incident_stop(*, incident: Incident) -> FirstUpdateClock | None:
    """Stop the running clock of an incident that was cancelled or is no longer
    customer-facing (no reminder, no miss; marking it customer-facing again re-arms it).
    Writes one timeline entry. Idempotent: a clock that is not running is left alone."""
    clock = (
        FirstUpdateClock.objects.select_for_update()
        .filter(incident_id=incident.pk, next_check_at__isnull=False)
        .first()
    )
    if clock is None:
        return None
    incident = Incident.objects.get(pk=incident.pk)
    why = stop_reason(incident)
    if why is not None:
        clock_stop(clock=clock, incident=incident, why=why)
    return clock


@transaction.atomic
def first_update_published(*, incident: Incident, at: datetime) -> FirstUpdateClock | None:
    """Record that ``incident`` has a published status update at ``at``: its clock is met and
    stops, with a timeline entry saying how long after confirmation (and how late, if it
    was). Call it in the publishing transaction. Idempotent: only the first publication
    counts; no clock (an internal incident), nothing to do."""
    clock = FirstUpdateClock.objects.select_for_update().filter(incident_id=incident.pk).first()
    if clock is None or clock.met_at is not None:
        return clock
    update = first_published(incident)
    if update is not None and update.published_at < at:
        at = update.published_at
    clock_met(
        clock=clock,
        incident=Incident.objects.get(pk=incident.pk),
        update_id=update.pk if update is not None else None,
        at=at,
    )
    return clock
