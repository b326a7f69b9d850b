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
* The sweep (:func:`first_update_sweep`, beat) claims due clocks by ``next_check_at``
  (indexed) with ``FOR UPDATE SKIP LOCKED``; each reminder point and the miss are recorded on
  the locked row before it is released, and every notification has a deterministic idempotency
  key, so two sweeps at the same moment remind once and record the miss once.
* Reminders go to the communications lead: the user assigned the role on the incident, else the
  Communications Lead role's primary contact; from the second reminder on, and with the miss, to
  the role's backup contact as well. They are sent through the outbox
  (``escalation.outbox.notification_enqueue``) on the channels of the incident's severity that
  reach a person (e-mail when it has none), one timeline entry per reminder.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.events import INCIDENT_UPDATED
from incidents.models import (
    Channel,
    Contact,
    Incident,
    IncidentEvent,
    Kind,
    ResponseRole,
    Source,
    Status,
    channel_address,
)
from incidents.services.common import timeline_record
from incidents.timeformat import time_text

from ..models import CommunicationPolicy, FirstUpdateClock, StatusUpdate, UpdateState

logger = logging.getLogger(__name__)

__all__ = [
    "ClockAction",
    "Person",
    "clock_for_incident_start",
    "clock_for_incident_stop",
    "comms_leads",
    "first_update_published",
    "first_update_sweep",
    "person_for_contact",
    "person_for_user",
]

OVERDUE = "overdue"
KEY_PREFIX = "comms-first-update"
# Channels that reach a person; Teams and the webhook reach a place, not the lead.
PERSON_CHANNELS = (Channel.PHONE, Channel.SMS, Channel.SLACK, Channel.EMAIL)
# The seeded policy holds placeholders such as "[Phone]"; calling one is pointless.


@dataclass(frozen=True)
class ClockAction:
    """One thing a sweep did to a clock: ``reminder`` (``minutes`` after confirmation),
    ``missed``, ``met`` (a published update found) or ``stopped``."""

    incident: str
    action: str
    minutes: int | None = None
    notifications: tuple[int, ...] = ()


# --- starting and stopping -------------------------------------------------------------------


def _policy() -> CommunicationPolicy:
    policy, _ = CommunicationPolicy.objects.get_or_create(pk=1)
    return policy


def _minutes_text(value: timedelta) -> str:
    return f"{int(value.total_seconds() // 60)} min"


def _local(value: datetime) -> str:
    return time_text(value)


def _first_published(incident: Incident) -> StatusUpdate | None:
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


def _next_check(clock: FirstUpdateClock) -> datetime | None:
    """The next reminder point not yet sent, or the due time; None once met or missed."""
    if clock.met_at is not None or clock.missed_at is not None:
        return None
    points = [
        clock.confirmed_at + timedelta(minutes=m)
        for m in clock.reminder_minutes
        if m not in clock.reminders_sent
    ]
    return min([*points, clock.due_at])


def _clock_met(
    *, clock: FirstUpdateClock, incident: Incident, update_id: int | None, at: datetime
) -> None:
    clock.met_at = at
    clock.next_check_at = None
    clock.save(update_fields=["met_at", "next_check_at"])
    after = at - clock.confirmed_at
    if at <= clock.due_at:
        message = (
            f"First public update published at {_local(at)}, {_minutes_text(after)} after "
            f"confirmation: the {_minutes_text(clock.due_at - clock.confirmed_at)} rule is met."
        )
    else:
        message = (
            f"First public update published at {_local(at)}, {_minutes_text(after)} after "
            f"confirmation ({_minutes_text(at - clock.due_at)} late)."
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
        if existing.next_check_at is None and _next_check(existing) is not None:
            existing.next_check_at = _next_check(existing)
            existing.save(update_fields=["next_check_at"])
            timeline_record(
                incident=incident,
                kind=Kind.COMMUNICATION,
                source=Source.SYSTEM,
                actor=None,
                message=(
                    f"First public update clock resumed: the incident is customer-facing "
                    f"again; the first public status update is due by {_local(existing.due_at)}."
                ),
                data={"first_update": "resumed"},
            )
        return existing

    policy = _policy()
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
    clock.next_check_at = _next_check(clock)
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
            f"{_local(clock.due_at)} ({due_minutes} minutes after confirmation)."
        ),
        data={
            "first_update": "started",
            "confirmed_at": confirmed_at.isoformat(),
            "due_at": clock.due_at.isoformat(),
            "reminder_minutes": clock.reminder_minutes,
        },
    )
    published = _first_published(incident)
    if published is not None:
        _clock_met(
            clock=clock, incident=incident, update_id=published.pk, at=published.published_at
        )
    return clock


def _stop(*, clock: FirstUpdateClock, incident: Incident, why: str) -> None:
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


def _stop_reason(incident: Incident) -> str | None:
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
    why = _stop_reason(incident)
    if why is not None:
        _stop(clock=clock, incident=incident, why=why)
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
    update = _first_published(incident)
    if update is not None and update.published_at < at:
        at = update.published_at
    _clock_met(
        clock=clock,
        incident=Incident.objects.get(pk=incident.pk),
        update_id=update.pk if update is not None else None,
        at=at,
    )
    return clock


# --- reminding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    key: str
    name: str
    contact: Contact | None = None
    email: str = ""
    phone: str = ""
    slack: str = ""

    def address(self, channel: str) -> str:
        return channel_address(channel, email=self.email, phone=self.phone, slack=self.slack)


def person_for_contact(contact: Contact) -> Person:
    return Person(
        key=f"c{contact.pk}",
        name=contact.name,
        contact=contact,
        email=contact.email,
        phone=contact.phone,
        slack=contact.slack_handle,
    )


def person_for_user(user: Any) -> Person:
    contact = Contact.objects.filter(user=user).order_by("pk").first()
    if contact is not None:
        return person_for_contact(contact)
    return Person(
        key=f"u{user.pk}", name=user.get_full_name() or user.get_username(), email=user.email
    )


def comms_leads(incident: Incident, *, with_backup: bool) -> list[Person]:
    """The communications lead to remind (the assignee, else the role's primary contact),
    and the role's backup contact when ``with_backup``; one entry per person."""
    role = (
        ResponseRole.objects.select_related("primary_contact", "backup_contact")
        .filter(key=ResponseRole.COMMUNICATIONS_LEAD)
        .first()
    )
    assignment = (
        incident.role_assignments.select_related("user")
        .filter(role__key=ResponseRole.COMMUNICATIONS_LEAD, user__isnull=False)
        .first()
    )
    people: list[Person] = []
    if assignment is not None and assignment.user.is_active:
        people.append(person_for_user(assignment.user))
    elif role is not None and role.primary_contact is not None:
        people.append(person_for_contact(role.primary_contact))
    if with_backup and role is not None and role.backup_contact is not None:
        people.append(person_for_contact(role.backup_contact))
    unique: dict[str, Person] = {}
    for person in people:
        unique.setdefault(person.key, person)
    return list(unique.values())


def _channels(incident: Incident) -> list[str]:
    channels = [c for c in incident.severity.notification_channels if c in PERSON_CHANNELS]
    return channels or [Channel.EMAIL]


@dataclass
class _Sent:
    notifications: list[int] = field(default_factory=list)
    reached: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def reached_text(self) -> str:
        return "; ".join(
            f"{name} by {', '.join(Channel(c).label for c in channels)}"
            for name, channels in self.reached.items()
        )


def _remind(
    *, incident: Incident, clock: FirstUpdateClock, point: str, now: datetime, with_backup: bool
) -> tuple[_Sent, list[Person]]:
    people = comms_leads(incident, with_backup=with_backup)
    sent = _Sent()
    if point == OVERDUE:
        subject = (
            f"{incident.number}: the first public update is overdue (due {_local(clock.due_at)})"
        )
        headline = (
            f"The first public status update of {incident.number} was due at "
            f"{_local(clock.due_at)} and nothing is published yet."
        )
    else:
        left = max(1, math.ceil((clock.due_at - now).total_seconds() / 60))
        subject = (
            f"{incident.number}: first public update due in {left} min (by {_local(clock.due_at)})"
        )
        headline = (
            f"Customers have not been told about {incident.number} yet: its first public "
            f"status update is due by {_local(clock.due_at)}, in {left} min."
        )
    body = (
        f"{headline}\n\n"
        f"Incident: {incident.number} {incident.title}\n"
        f"Severity: Sev {incident.severity_id}\n"
        f"Confirmed at: {_local(clock.confirmed_at)}\n\n"
        f"Publish a status update from the incident page:\n"
        f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}\n"
    )
    for person in people:
        for channel in _channels(incident):
            address = person.address(channel)
            if not address:
                sent.skipped.append(
                    {"recipient": person.name, "channel": channel, "why": "no address"}
                )
                continue
            notification = notification_enqueue(
                incident=incident,
                channel=channel,
                recipient=address,
                subject=subject,
                body=body,
                template="communications/first_update_reminder",
                reason=f"First public update {point}",
                idempotency_key=f"{KEY_PREFIX}:{incident.pk}:{point}:{person.key}:{channel}",
                contact=person.contact,
                context={"kind": "first_update", "point": point, "incident": incident.number},
            )
            sent.notifications.append(notification.pk)
            sent.reached.setdefault(person.name, []).append(channel)
    return sent, people


def _record_reminder(
    *, incident: Incident, message: str, sent: _Sent, people: list[Person], data: dict
) -> None:
    if sent.reached:
        message += f" Reminded the communications lead: {sent.reached_text()}."
    elif people:
        message += " The communications lead could not be reached on any channel."
    else:
        message += (
            " Nobody was reminded: no communications lead is assigned and the role has "
            "no primary contact."
        )
    if sent.skipped:
        message += " Not reachable: " + "; ".join(
            f"{Channel(s['channel']).label} for {s['recipient']}" for s in sent.skipped
        )
        message += "."
    timeline_record(
        incident=incident,
        kind=Kind.NOTIFICATION,
        source=Source.SYSTEM,
        actor=None,
        message=message,
        data={**data, "notifications": sent.notifications, "skipped": sent.skipped},
    )


def _first_update_check(*, clock_id: int, now: datetime) -> list[ClockAction]:
    """Act on one due clock, in the caller's transaction. Claims the clock and its incident
    with SKIP LOCKED: a clock someone else holds is skipped (it stays due)."""
    clock = (
        FirstUpdateClock.objects.select_for_update(skip_locked=True, of=("self", "incident"))
        .select_related("incident", "incident__severity")
        .filter(pk=clock_id, next_check_at__lte=now)
        .first()
    )
    if clock is None:
        return []
    incident = clock.incident
    number = incident.number
    if clock.met_at is not None:
        clock.next_check_at = None
        clock.save(update_fields=["next_check_at"])
        return []
    published = _first_published(incident)
    if published is not None:
        _clock_met(
            clock=clock, incident=incident, update_id=published.pk, at=published.published_at
        )
        return [ClockAction(incident=number, action="met")]
    why = _stop_reason(incident)
    if why is not None:
        _stop(clock=clock, incident=incident, why=why)
        return [ClockAction(incident=number, action="stopped")]

    done: list[ClockAction] = []
    if now >= clock.due_at:
        clock.missed_at = now
        clock.reminders_sent = sorted({*clock.reminders_sent, *clock.reminder_minutes})
        sent, people = _remind(
            incident=incident, clock=clock, point=OVERDUE, now=now, with_backup=True
        )
        minutes = _minutes_text(clock.due_at - clock.confirmed_at)
        timeline_record(
            incident=incident,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"Missed the {minutes} rule: no public status update was published by "
                f"{_local(clock.due_at)}, {minutes} after the incident was confirmed."
            ),
            data={"first_update": "missed", "due_at": clock.due_at.isoformat()},
        )
        _record_reminder(
            incident=incident,
            message="The first public update is overdue.",
            sent=sent,
            people=people,
            data={"first_update": "reminder", "point": OVERDUE},
        )
        done.append(
            ClockAction(incident=number, action="missed", notifications=tuple(sent.notifications))
        )
    else:
        passed = [
            m
            for m in clock.reminder_minutes
            if m not in clock.reminders_sent and clock.confirmed_at + timedelta(minutes=m) <= now
        ]
        if passed:
            # A sweep that runs late sends only the latest reminder passed: the earlier ones
            # would say less, later.
            minutes = max(passed)
            position = clock.reminder_minutes.index(minutes)
            clock.reminders_sent = sorted({*clock.reminders_sent, *passed})
            sent, people = _remind(
                incident=incident,
                clock=clock,
                point=str(minutes),
                now=now,
                with_backup=position > 0,
            )
            _record_reminder(
                incident=incident,
                message=(
                    f"No public status update yet, {minutes} min after confirmation; "
                    f"the first is due by {_local(clock.due_at)}."
                ),
                sent=sent,
                people=people,
                data={"first_update": "reminder", "point": minutes},
            )
            done.append(
                ClockAction(
                    incident=number,
                    action="reminder",
                    minutes=minutes,
                    notifications=tuple(sent.notifications),
                )
            )
    clock.next_check_at = _next_check(clock)
    clock.save(update_fields=["missed_at", "reminders_sent", "next_check_at"])
    return done


def first_update_sweep(
    *, now: datetime | None = None, batch: int = 20, time_budget: float | None = None
) -> list[ClockAction]:
    """Remind and record misses on every clock due by ``now`` (beat). Never inside a
    transaction: each clock is claimed and handled in a transaction of its own.

    Reads due clock ids by ``next_check_at`` (indexed) in batches, keyset-paginated (a clock
    skipped because another sweep holds it stays due, and re-reading from the start would
    spin on it). A clock that fails is logged and left due for the next sweep. Safe to run
    any number of times, concurrently: reminders and the miss are recorded on the locked row.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    done: list[ClockAction] = []
    after = 0
    while True:
        ids = list(
            FirstUpdateClock.objects.filter(next_check_at__lte=now, pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("First-update sweep out of time; the rest is left for the next")
                return done
            try:
                with transaction.atomic():
                    done.extend(_first_update_check(clock_id=pk, now=now))
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("First-update clock %s failed; left for the next sweep", pk)
        if len(ids) < batch:
            break
        after = ids[-1]
    return done
