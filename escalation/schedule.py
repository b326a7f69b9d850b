"""Reads: an incident's escalation schedule, as the incident page shows it.

Who is called when, and on which channels, for this incident: the steps that fired (with the
delivery state of their messages), the ones still planned under the policy snapshot taken when
escalation started, and the ones that will not fire (the incident was acknowledged in time,
resolved, or its severity changed). Three queries whatever the number of steps or messages.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from incidents.models import Channel, Incident
from incidents.timeformat import time_text, when

from .models import EscalationEvent, IncidentEscalation, Notification
from .services.recipients import BROADCAST_CHANNELS, Recipient
from .services.snapshot import BACKUP_ROLES
from .services.timers import ACK_TIMEOUT_STEP

__all__ = ["EscalationSchedule", "ScheduleRow", "escalation_schedule"]

FIRED, PLANNED, SKIPPED = "fired", "planned", "skipped"

# How a channel reads after "by": "by phone", "by Slack".
CHANNEL_WORDS = {
    Channel.PHONE: "phone",
    Channel.SMS: "SMS",
    Channel.SLACK: "Slack",
    Channel.EMAIL: "email",
    Channel.TEAMS: "Teams",
    Channel.WEBHOOK: "webhook",
}


def channel_word(channel: str) -> str:
    return CHANNEL_WORDS.get(channel, channel)


@dataclass(frozen=True)
class ScheduleRow:
    """One step of the schedule. ``people`` are the contacts' names, ``target`` the level or
    roles they are called as; ``channels`` the channels used (fired) or planned."""

    step: str
    due_at: datetime
    target: str
    people: tuple[str, ...]
    channels: tuple[str, ...]
    state: str
    note: str = ""
    fired_at: datetime | None = None
    unreachable: tuple[str, ...] = ()
    deliveries: dict[str, int] = field(default_factory=dict)

    @property
    def who(self) -> str:
        """ "Grace Liu (IT Manager)", or the target alone when nobody is set for it."""
        if not self.people:
            return self.target
        return f"{', '.join(self.people)} ({self.target})"

    @property
    def unreachable_text(self) -> str:
        return ", ".join(channel_word(c) for c in self.unreachable)

    @property
    def channel_text(self) -> str:
        return ", ".join(channel_word(c) for c in self.channels) or "–"

    def when_text(self, now: datetime | None = None) -> str:
        """ "01:20 CET", or "4 Dec 2026, 01:20 CET" when not today (the reader's zone)."""
        local = timezone.localtime(self.due_at)
        today = timezone.localtime(now or timezone.now()).date()
        return time_text(local) if local.date() == today else when(local)

    def headline(self, now: datetime | None = None) -> str:
        """ "Grace Liu (IT Manager) at 01:20 by phone": the first channel; all are listed in
        the schedule."""
        text = f"{self.who} at {self.when_text(now)}"
        reachable = [c for c in self.channels if c not in self.unreachable]
        if reachable:
            text += f" by {channel_word(reachable[0])}"
        if self.due_at <= (now or timezone.now()):
            text += " (due now)"
        return text


@dataclass(frozen=True)
class EscalationSchedule:
    started: bool
    running: bool
    stop_reason: str
    rows: list[ScheduleRow]

    @property
    def next(self) -> ScheduleRow | None:
        return next((row for row in self.rows if row.state == PLANNED), None)


def _recipient(contact: dict[str, Any] | None) -> Recipient | None:
    return Recipient.from_snapshot(contact) if contact else None


def _unreachable(recipients: list[Recipient], channels: list[str]) -> tuple[str, ...]:
    """Channels none of ``recipients`` has an address for (broadcast channels reach a place)."""
    return tuple(
        c
        for c in channels
        if c not in BROADCAST_CHANNELS and not any(r.address(c) for r in recipients)
    )


def _step_of(key: str) -> str:
    """The step of a message's idempotency key: ``ack-timeout:<incident>:...`` or
    ``escalation:<incident>:<step>:...``, where a step key holds two colons of its own
    (``sev1-0:30:00``)."""
    if key.startswith("ack-timeout:"):
        return ACK_TIMEOUT_STEP
    return ":".join(key.split(":")[2:5])


def escalation_schedule(*, incident: Incident, now: datetime | None = None) -> EscalationSchedule:
    """The incident's escalation schedule, ordered by due time (module docstring)."""
    now = now or timezone.now()
    esc = IncidentEscalation.objects.filter(incident_id=incident.pk).first()
    if esc is None:
        return EscalationSchedule(started=False, running=False, stop_reason="", rows=[])
    events = {e.step: e for e in EscalationEvent.objects.filter(incident_id=incident.pk)}
    sent: dict[str, list[tuple[str, str]]] = {}
    if events:
        rows = (
            Notification.objects.filter(
                Q(idempotency_key__startswith=f"escalation:{incident.pk}:")
                | Q(idempotency_key__startswith=f"ack-timeout:{incident.pk}:"),
                incident_id=incident.pk,
            )
            .order_by("id")
            .values_list("idempotency_key", "channel", "status")
        )
        for key, channel, status in rows:
            sent.setdefault(_step_of(key), []).append((channel, status))

    snapshot = esc.policy_snapshot or {}
    severity = incident.severity_id
    conf = snapshot.get("severities", {}).get(str(severity), {})
    channels = list(conf.get("channels") or [])
    levels = snapshot.get("levels", {})
    stopped = esc.stopped_at is not None
    stop_note = f"not sent: {esc.stop_reason.rstrip('.').lower()}" if stopped else ""
    out: list[ScheduleRow] = []

    def fired_row(event: EscalationEvent, people: tuple[str, ...]) -> ScheduleRow:
        messages = sent.get(event.step, [])
        used = tuple(dict.fromkeys(channel for channel, _ in messages))
        deliveries = dict(Counter(status for _, status in messages))
        note = "sent late" if event.caught_up else ""
        if not messages:
            note = (note + "; " if note else "") + "nobody could be notified"
        return ScheduleRow(
            step=event.step,
            due_at=event.due_at,
            target=event.target,
            people=people,
            channels=used,
            state=FIRED,
            note=note,
            fired_at=event.fired_at,
            deliveries=deliveries,
        )

    # The acknowledgement timer: the backups of the incident manager and technical lead.
    backups = snapshot.get("backups", {})
    backup_entries = [backups[key] for key in BACKUP_ROLES if key in backups]
    backup_people = tuple(e["contact"]["name"] for e in backup_entries if e.get("contact"))
    backup_target = (
        "Backups of " + " and ".join(e["role"] for e in backup_entries)
        if backup_entries
        else "Backup contacts"
    )
    ack_event = events.get(ACK_TIMEOUT_STEP)
    if ack_event is not None:
        out.append(fired_row(ack_event, backup_people))
    else:
        recipients = [r for e in backup_entries if (r := _recipient(e.get("contact")))]
        due = esc.ack_due_at or incident.response_due_at
        if esc.ack_due_at is not None and not stopped:
            state, note = PLANNED, "" if recipients else "no backup contacts set"
        elif incident.acknowledged_at is not None:
            state, note = SKIPPED, "not needed: acknowledged in time"
        else:
            state, note = SKIPPED, stop_note or "not sent"
        out.append(
            ScheduleRow(
                step=ACK_TIMEOUT_STEP,
                due_at=due,
                target=backup_target,
                people=backup_people,
                channels=tuple(channels),
                state=state,
                note=note,
                unreachable=_unreachable(recipients, channels) if recipients else (),
            )
        )

    # The matrix row of the current severity, from the snapshot.
    row = snapshot.get("matrix", {}).get(str(severity), [])
    for step in row:
        level = levels.get(step["level"], {"name": step["level"], "contact": None})
        contact = level.get("contact")
        people = (contact["name"],) if contact else ()
        event = events.get(step["step"])
        if event is not None:
            out.append(fired_row(event, people))
            continue
        due = incident.detected_at + timedelta(seconds=step["elapsed_s"])
        recipient = _recipient(contact)
        if stopped:
            state, note = SKIPPED, stop_note
        elif due < esc.severity_from:
            state, note = SKIPPED, "not sent: due before the severity changed or the reopening"
        else:
            state = PLANNED
            note = "" if recipient else "no contact set: nobody will be notified"
        out.append(
            ScheduleRow(
                step=step["step"],
                due_at=due,
                target=level.get("name", step["level"]),
                people=people,
                channels=tuple(channels),
                state=state,
                note=note,
                unreachable=_unreachable([recipient], channels) if recipient else (),
            )
        )

    # Steps that fired under an earlier severity's row.
    shown = {r.step for r in out}
    for key, event in events.items():
        if key not in shown:
            out.append(fired_row(event, ()))

    order = {FIRED: 0, PLANNED: 1, SKIPPED: 1}
    out.sort(key=lambda r: (r.due_at, order[r.state], r.step))
    return EscalationSchedule(
        started=True, running=not stopped, stop_reason=esc.stop_reason, rows=out
    )
