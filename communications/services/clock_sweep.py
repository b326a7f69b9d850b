"""The sweep of first-update clocks (the 30-minute rule): each due clock is claimed, found met
or stopped, or its communications lead is reminded through the outbox, and its miss recorded
on the incident's timeline."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from escalation.outbox import OutboxMessage, notification_enqueue_together
from incidents.models import Channel, Incident, Kind, Source
from incidents.services.common import timeline_record

from ..models import FirstUpdateClock
from .clock import (
    clock_met,
    clock_stop,
    clock_time_text,
    first_published,
    minutes_text,
    next_check,
    stop_reason,
)
from .comms_leads import Person, comms_leads

logger = logging.getLogger(__name__)

__all__ = ["ClockAction", "first_update_sweep"]


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


# --- reminding -------------------------------------------------------------------------------


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
    due = clock_time_text(clock.due_at)
    if point == OVERDUE:
        subject = f"{incident.number}: the first public update is overdue (due {due})"
        headline = (
            f"The first public status update of {incident.number} was due at "
            f"{due} and nothing is published yet."
        )
    else:
        left = max(1, math.ceil((clock.due_at - now).total_seconds() / 60))
        subject = f"{incident.number}: first public update due in {left} min (by {due})"
        headline = (
            f"Customers have not been told about {incident.number} yet: its first public "
            f"status update is due by {due}, in {left} min."
        )
    body = (
        f"{headline}\n\n"
        f"Incident: {incident.number} {incident.title}\n"
        f"Severity: Sev {incident.severity_id}\n"
        f"Confirmed at: {clock_time_text(clock.confirmed_at)}\n\n"
        f"Publish a status update from the incident page:\n"
        f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}\n"
    )
    messages = []
    for person in people:
        for channel in _channels(incident):
            address = person.address(channel)
            if not address:
                sent.skipped.append(
                    {"recipient": person.name, "channel": channel, "why": "no address"}
                )
                continue
            messages.append(
                OutboxMessage(
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
            )
            sent.reached.setdefault(person.name, []).append(channel)
    sent.notifications.extend(notification_enqueue_together(messages))
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
    published = first_published(incident)
    if published is not None:
        clock_met(clock=clock, incident=incident, update_id=published.pk, at=published.published_at)
        return [ClockAction(incident=number, action="met")]
    why = stop_reason(incident)
    if why is not None:
        clock_stop(clock=clock, incident=incident, why=why)
        return [ClockAction(incident=number, action="stopped")]

    done: list[ClockAction] = []
    if now >= clock.due_at:
        clock.missed_at = now
        clock.reminders_sent = sorted({*clock.reminders_sent, *clock.reminder_minutes})
        sent, people = _remind(
            incident=incident, clock=clock, point=OVERDUE, now=now, with_backup=True
        )
        minutes = minutes_text(clock.due_at - clock.confirmed_at)
        timeline_record(
            incident=incident,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=(
                f"Missed the {minutes} rule: no public status update was published by "
                f"{clock_time_text(clock.due_at)}, {minutes} after the incident was confirmed."
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
                    f"the first is due by {clock_time_text(clock.due_at)}."
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
    clock.next_check_at = next_check(clock)
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
