"""The stakeholder schedule (§5.2's stakeholder table; §4.2 step 2 "establish regular update
schedule"): each stakeholder group hears about an active incident at its interval, on its
channel, without anyone having to remember it.

* **Planning.** When an incident is logged (it is active from then on), each active
  :class:`StakeholderGroup` with an interval for the incident's severity gets a
  :class:`StakeholderSchedule`: its first update is due one interval after the incident was
  logged. A severity change re-plans the interval (a group without an interval for the new
  severity pauses; one that gains an interval starts from the change); reopening a resolved
  incident starts the stopped schedules again. "As needed" groups (no interval) have no
  schedule: they are sent on demand (:func:`stakeholder_send_now`). The incident handler
  ``communications.stakeholders`` calls :func:`stakeholder_schedules_sync` and
  :func:`stakeholder_schedules_stop`.
* **Content.** Staff write an internal note for a group (:func:`stakeholder_note_write`); an
  update is composed from the latest note written for the group (or, without one, the latest
  published status update), framed by what the group's row asks for: status and ETA, impact
  assessment, talking points or service impact.
* **The sweep** (:func:`stakeholder_sweep`, beat) claims due schedules by ``next_check_at``
  (indexed) with ``FOR UPDATE SKIP LOCKED``. When nothing new was written since the group's
  last update (no newer note for it, no newer published status update), the communications lead
  is reminded the policy's ``stakeholder_reminder_lead_minutes`` before the due time. At the due
  time the group gets its update, or, with nothing new, "No change since HH:MM, next update at
  HH:MM". Each send is one :class:`StakeholderSend` row, UNIQUE (incident, group, due time,
  kind), written with its outbox rows in the claiming transaction: two sweeps at once send it
  once. A sweep that finds the due time long past (beat was down) sends one catch-up update,
  marked late, and plans the next one an interval from now, not a burst of the missed ones.
* **Resolution** (or closing, or cancelling) stops every schedule of the incident and sends each
  group that was on a schedule, or was sent an update on demand, one final message. A
  cancelled incident sends it only to the groups that had already been told something.

Every message leaves through the outbox (``escalation.outbox.notification_enqueue``), keyed per
(incident, group, due time, kind, recipient, channel). Times in messages are shown in the status
page's time zone, with the zone's name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalation.outbox import notification_enqueue
from incidents.errors import InvalidInput
from incidents.models import (
    Channel,
    Contact,
    Incident,
    Kind,
    Source,
    Status,
)
from incidents.services.common import timeline_record

from ..errors import require
from ..models import (
    CommunicationPolicy,
    ContentKind,
    SendKind,
    StakeholderGroup,
    StakeholderNote,
    StakeholderSchedule,
    StakeholderSend,
    StatusPageSettings,
    StatusUpdate,
    UpdateState,
)
from .clock import _leads, _Person, _person_for_contact, _person_for_user

logger = logging.getLogger(__name__)

__all__ = [
    "LATE_AFTER",
    "NOTE_MAX",
    "ScheduleRow",
    "StakeholderAction",
    "stakeholder_note_write",
    "stakeholder_schedule_list",
    "stakeholder_schedules_stop",
    "stakeholder_schedules_sync",
    "stakeholder_send_now",
    "stakeholder_sweep",
]

KEY_PREFIX = "stakeholder"
NOTE_MAX = 4000
# An update sent more than this after its due time is marked late (beat runs every 30 s; a
# send this late means the sweep was not running, or the worker was far behind).
LATE_AFTER = timedelta(minutes=5)
# Reminders of a routine update reach the lead in writing: no phone call every 30 minutes.
REMINDER_CHANNELS = (Channel.SLACK, Channel.EMAIL, Channel.SMS)
NOTE_PERMISSION = "communications.add_stakeholdernote"
SEND_PERMISSION = "communications.add_stakeholdersend"

CONTENT_HEADINGS = {
    ContentKind.STATUS_ETA: "Status and ETA",
    ContentKind.IMPACT: "Impact assessment",
    ContentKind.TALKING_POINTS: "Talking points",
    ContentKind.SERVICE_IMPACT: "Service impact",
}


@dataclass(frozen=True)
class StakeholderAction:
    """One thing a sweep (or a service) sent: ``kind`` is a :class:`SendKind` value."""

    incident: str
    group: str
    kind: str
    due_at: datetime
    late: bool = False
    recipients: int = 0


# --- small helpers -------------------------------------------------------------------------------


def _policy() -> CommunicationPolicy:
    policy, _ = CommunicationPolicy.objects.get_or_create(pk=1)
    return policy


def _zone() -> ZoneInfo:
    name = StatusPageSettings.objects.filter(pk=1).values_list("time_zone", flat=True).first()
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _hhmm(value: datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local:%H:%M} {local.tzname() or zone.key}"


def _every(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return "every hour" if hours == 1 else f"every {hours} hours"
    return f"every {minutes} minutes"


def _stamp(value: datetime) -> str:
    return value.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%S.%f")


def _plan(schedule: StakeholderSchedule, *, due: datetime | None, lead: int) -> None:
    """Set the next due time and the check before it (the reminder point, unless the lead was
    already reminded for that due time)."""
    schedule.next_due_at = due
    if due is None:
        schedule.reminder_at = None
        schedule.next_check_at = None
        return
    floor = schedule.last_sent_at or schedule.started_at
    schedule.reminder_at = max(due - timedelta(minutes=lead), floor) if lead else None
    if (
        schedule.reminder_at is not None
        and schedule.reminder_at < due
        and schedule.reminded_for != due
    ):
        schedule.next_check_at = schedule.reminder_at
    else:
        schedule.next_check_at = due


# --- content -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Content:
    note: StakeholderNote | None
    update: StatusUpdate | None
    new: bool


def _content(*, incident: Incident, group: StakeholderGroup, since: datetime | None) -> _Content:
    """The latest note for the group and the latest published update, and whether either is
    newer than ``since`` (None: anything written counts)."""
    note = (
        StakeholderNote.objects.filter(incident=incident, group=group)
        .select_related("author")
        .order_by("-created_at", "-pk")
        .first()
    )
    update = (
        StatusUpdate.objects.filter(
            incident=incident, state=UpdateState.PUBLISHED, published_at__isnull=False
        )
        .order_by("-published_at", "-pk")
        .first()
    )
    times = [t for t in (note and note.created_at, update and update.published_at) if t]
    new = bool(times) and (since is None or max(times) > since)
    return _Content(note=note, update=update, new=new)


def _services(incident: Incident) -> str:
    names = [s.public_name or s.name for s in incident.services.all()]
    return ", ".join(names) if names else "none recorded"


def _facts(incident: Incident, group: StakeholderGroup, zone: ZoneInfo) -> list[str]:
    """The lines the group's content kind asks for, from the incident's record."""
    severity = incident.severity
    lines = [
        f"Incident: {incident.number} {incident.title}",
        f"Severity: Sev {severity.level} ({severity.name}) · Status: "
        f"{Status(incident.status).label}",
    ]
    if group.content == ContentKind.STATUS_ETA:
        lines.append(f"Logged at: {_hhmm(incident.detected_at, zone)}")
        if incident.is_active:
            lines.append(
                f"Resolution target (Sev {severity.level}): "
                f"{_hhmm(incident.resolution_due_at, zone)}"
            )
    elif group.content in (ContentKind.IMPACT, ContentKind.SERVICE_IMPACT):
        lines.append(f"Affected services: {_services(incident)}")
        lines.append(f"Customer-facing: {'yes' if incident.customer_facing else 'no'}")
        if incident.affected_users is not None:
            lines.append(f"Estimated affected users: {incident.affected_users}")
        if group.content == ContentKind.IMPACT and incident.business_impact:
            lines.append(f"Business impact: {incident.business_impact}")
    elif group.content == ContentKind.TALKING_POINTS:
        lines.append(f"Affected services: {_services(incident)}")
    return lines


def _written(content: _Content, group: StakeholderGroup, zone: ZoneInfo) -> list[str]:
    heading = CONTENT_HEADINGS.get(group.content, "Update")
    lines: list[str] = []
    note, update = content.note, content.update
    if note is not None:
        lines += ["", f"{heading} (written {_hhmm(note.created_at, zone)}):", note.body.strip()]
    if update is not None and (note is None or update.published_at > note.created_at):
        lines += [
            "",
            f"Latest public status update ({_hhmm(update.published_at, zone)}, "
            f"{update.get_public_status_display()}): {update.public_title}",
            update.body.strip(),
        ]
    elif update is not None:
        lines += [
            "",
            f"Status page: {update.public_title} ({update.get_public_status_display()}, "
            f"{_hhmm(update.published_at, zone)})",
        ]
    if not lines:
        lines = ["", f"{heading}: nothing has been written yet; the incident's record says:"]
    return lines


def _compose(
    *,
    incident: Incident,
    group: StakeholderGroup,
    kind: str,
    content: _Content,
    zone: ZoneInfo,
    due_at: datetime,
    now: datetime,
    late: bool,
    next_due: datetime | None,
    unchanged_since: datetime | None,
) -> tuple[str, str]:
    heading = CONTENT_HEADINGS.get(group.content, "Update")
    if kind == SendKind.FINAL:
        ended = Status(incident.status).label.lower()
        subject = f"{incident.number}: {ended} – final update for {group.name}"
        lines = [f"{incident.number} was {ended} at {_hhmm(due_at, zone)}."]
        lines += _facts(incident, group, zone)
        if incident.status == Status.CANCELLED and incident.cancel_reason:
            lines.append(f"Reason: {incident.cancel_reason}")
        if incident.resolution:
            lines.append(f"Resolution: {incident.resolution}")
        if content.note is not None or content.update is not None:
            lines += _written(content, group, zone)
        lines += ["", "This is the last update of the schedule for this incident."]
    elif kind == SendKind.NO_CHANGE:
        since = _hhmm(unchanged_since or due_at, zone)
        subject = f"{incident.number}: no change since {since} – {group.name}"
        lines = [
            f"No change since {since}"
            + (f", next update at {_hhmm(next_due, zone)}." if next_due else ".")
        ]
        lines += _facts(incident, group, zone)
    else:
        subject = f"{incident.number}: {heading} for {group.name}"
        lines = [f"{heading} – {incident.number} {incident.title}"]
        lines += _facts(incident, group, zone)[1:]
        lines += _written(content, group, zone)
        if next_due is not None:
            lines += ["", f"Next update at {_hhmm(next_due, zone)}."]
    if late:
        lines += [
            "",
            f"This update is late: it was due at {_hhmm(due_at, zone)} and is sent at "
            f"{_hhmm(now, zone)}.",
        ]
    lines += ["", f"Incident page: {settings.VIGIL_BASE_URL}{incident.get_absolute_url()}"]
    return subject, "\n".join(lines) + "\n"


# --- recipients ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recipient:
    key: str
    name: str
    channel: str
    address: str
    contact: Contact | None = None


@dataclass
class _Reach:
    recipients: list[_Recipient] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _group_channels(group: StakeholderGroup) -> list[str]:
    channels = [group.channel]
    for channel in group.extra_channels or []:
        if channel in Channel.values and channel not in channels:
            channels.append(channel)
    return channels


def _members(group: StakeholderGroup) -> _Reach:
    """Each member's address on each of the group's channels; a bare address (a Slack channel,
    a mailing list) is on the group's own channel. One message per channel and address."""
    reach = _Reach()
    seen: set[tuple[str, str]] = set()
    channels = _group_channels(group)
    for member in group.members.select_related("contact", "user").order_by("pk"):
        targets: list[tuple[str, str, str, Contact | None]] = []
        if member.contact is not None or member.user is not None:
            if member.contact is None and not member.user.is_active:
                continue
            person: _Person = (
                _person_for_contact(member.contact)
                if member.contact is not None
                else _person_for_user(member.user)
            )
            for channel in channels:
                targets.append((channel, person.address(channel), person.name, person.contact))
        else:
            targets.append((group.channel, member.address.strip(), member.address, None))
        for channel, address, name, contact in targets:
            if not address:
                reach.skipped.append({"recipient": name, "channel": channel})
                continue
            if (channel, address.lower()) in seen:
                continue
            seen.add((channel, address.lower()))
            reach.recipients.append(
                _Recipient(
                    key=f"m{member.pk}",
                    name=name,
                    channel=channel,
                    address=address,
                    contact=contact,
                )
            )
    return reach


def _leads_reach(incident: Incident) -> _Reach:
    reach = _Reach()
    channels = [c for c in incident.severity.notification_channels if c in REMINDER_CHANNELS] or [
        Channel.EMAIL
    ]
    for person in _leads(incident, with_backup=False):
        for channel in channels:
            address = person.address(channel)
            if not address:
                reach.skipped.append({"recipient": person.name, "channel": channel})
                continue
            reach.recipients.append(
                _Recipient(
                    key=person.key,
                    name=person.name,
                    channel=channel,
                    address=address,
                    contact=person.contact,
                )
            )
    return reach


def _enqueue(
    *,
    incident: Incident,
    group: StakeholderGroup,
    kind: str,
    due_at: datetime,
    reach: _Reach,
    subject: str,
    body: str,
) -> list[int]:
    ids = []
    for recipient in reach.recipients:
        notification = notification_enqueue(
            incident=incident,
            channel=recipient.channel,
            recipient=recipient.address,
            subject=subject,
            body=body,
            template=f"communications/stakeholder_{kind}",
            reason=f"Stakeholder {SendKind(kind).label.lower()}: {group.name}"[:200],
            idempotency_key=(
                f"{KEY_PREFIX}:{incident.pk}:{group.pk}:{_stamp(due_at)}:{kind}:"
                f"{recipient.key}:{recipient.channel}"
            ),
            contact=recipient.contact,
            context={
                "kind": "stakeholder",
                "send": kind,
                "group": group.name,
                "incident": incident.number,
            },
        )
        ids.append(notification.pk)
    return ids


def _reached_text(reach: _Reach) -> str:
    by_name: dict[str, list[str]] = {}
    for r in reach.recipients:
        by_name.setdefault(r.name, []).append(Channel(r.channel).label)
    return "; ".join(f"{name} by {', '.join(channels)}" for name, channels in by_name.items())


# --- sending -------------------------------------------------------------------------------------


def _last_news_at(*, incident: Incident, group: StakeholderGroup) -> datetime | None:
    return (
        StakeholderSend.objects.filter(
            incident=incident,
            group=group,
            kind__in=[SendKind.SCHEDULED, SendKind.ON_DEMAND],
        )
        .order_by("-sent_at", "-pk")
        .values_list("sent_at", flat=True)
        .first()
    )


def _deliver(
    *,
    schedule: StakeholderSchedule,
    incident: Incident,
    group: StakeholderGroup,
    kind: str,
    due_at: datetime,
    now: datetime,
    zone: ZoneInfo,
    content: _Content,
    next_due: datetime | None,
    late: bool = False,
    actor: Any = None,
    source: str = Source.SYSTEM,
) -> StakeholderSend | None:
    """Write the send and its outbox rows, in the caller's transaction; None when this
    (incident, group, due time, kind) was already sent."""
    unchanged_since = None
    if kind == SendKind.NO_CHANGE:
        unchanged_since = _last_news_at(incident=incident, group=group) or schedule.last_sent_at
    subject, body = _compose(
        incident=incident,
        group=group,
        kind=kind,
        content=content,
        zone=zone,
        due_at=due_at,
        now=now,
        late=late,
        next_due=next_due,
        unchanged_since=unchanged_since,
    )
    reach = _members(group)
    try:
        with transaction.atomic():
            send = StakeholderSend.objects.create(
                incident=incident,
                group=group,
                kind=kind,
                due_at=due_at,
                sent_at=now,
                late=late,
                note=content.note if kind != SendKind.NO_CHANGE else None,
                subject=subject[:255],
                body=body,
                recipients=len(reach.recipients),
                sent_by=actor,
            )
    except IntegrityError:
        return None
    notifications = _enqueue(
        incident=incident,
        group=group,
        kind=kind,
        due_at=due_at,
        reach=reach,
        subject=subject,
        body=body,
    )
    schedule.last_sent_at = now
    if kind != SendKind.NO_CHANGE and content.note is not None:
        schedule.last_note = content.note
    message = f"{SendKind(kind).label} sent to the {group.name} stakeholder group"
    if late:
        message += f" (late: due at {_hhmm(due_at, zone)})"
    message += f": {_reached_text(reach)}." if reach.recipients else ": nobody to send it to."
    if reach.skipped:
        message += " Not reachable: " + "; ".join(
            f"{Channel(s['channel']).label} for {s['recipient']}" for s in reach.skipped
        )
        message += "."
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=message,
        data={
            "stakeholder": kind,
            "group": group.pk,
            "send": send.pk,
            "due_at": due_at.isoformat(),
            "late": late,
            "notifications": notifications,
            "skipped": reach.skipped,
        },
        occurred_at=now,
    )
    return send


def _remind(
    *,
    schedule: StakeholderSchedule,
    incident: Incident,
    group: StakeholderGroup,
    now: datetime,
    zone: ZoneInfo,
) -> StakeholderSend | None:
    due = schedule.next_due_at
    assert due is not None
    minutes = max(1, round((due - now).total_seconds() / 60))
    subject = (
        f"{incident.number}: the {group.name} update is due at {_hhmm(due, zone)} "
        f"(in {minutes} min) – nothing new written"
    )
    since = schedule.last_sent_at
    body = (
        f"The {group.name} stakeholder group gets its next update of {incident.number} at "
        f"{_hhmm(due, zone)}, and nothing new was written for it"
        + (f" since the last update at {_hhmm(since, zone)}" if since else "")
        + ".\n\n"
        f"Write a note for {group.name} ({CONTENT_HEADINGS.get(group.content, 'update')}) "
        "on the incident page; otherwise they are told there is no change.\n\n"
        f"Incident: {incident.number} {incident.title}\n"
        f"Severity: Sev {incident.severity_id} · Status: {Status(incident.status).label}\n"
        f"{settings.VIGIL_BASE_URL}{incident.get_absolute_url()}\n"
    )
    reach = _leads_reach(incident)
    try:
        with transaction.atomic():
            send = StakeholderSend.objects.create(
                incident=incident,
                group=group,
                kind=SendKind.REMINDER,
                due_at=due,
                sent_at=now,
                subject=subject[:255],
                body=body,
                recipients=len(reach.recipients),
            )
    except IntegrityError:
        return None
    notifications = _enqueue(
        incident=incident,
        group=group,
        kind=SendKind.REMINDER,
        due_at=due,
        reach=reach,
        subject=subject,
        body=body,
    )
    if reach.recipients:
        who = f"Reminded the communications lead: {_reached_text(reach)}."
    else:
        who = (
            "Nobody was reminded: no communications lead is assigned and the role has no "
            "primary contact, or they have no address."
        )
    timeline_record(
        incident=incident,
        kind=Kind.NOTIFICATION,
        source=Source.SYSTEM,
        actor=None,
        message=(
            f"Nothing new written for the {group.name} stakeholder update due at "
            f"{_hhmm(due, zone)}. {who}"
        ),
        data={
            "stakeholder": SendKind.REMINDER,
            "group": group.pk,
            "send": send.pk,
            "due_at": due.isoformat(),
            "notifications": notifications,
            "skipped": reach.skipped,
        },
        occurred_at=now,
    )
    return send


# --- planning and stopping -----------------------------------------------------------------------


@transaction.atomic
def stakeholder_schedules_sync(
    *, incident: Incident, at: datetime | None = None
) -> list[StakeholderSchedule]:
    """Bring the schedules of an active incident in line with its severity and the active
    groups, as of ``at`` (the event's time; default now):

    * a group with an interval for the severity and no schedule gets one, first due one interval
      after ``at`` (the incident's creation, or the severity change that gave it an interval);
    * a stopped schedule (the incident was reopened) starts again, due one interval after ``at``;
    * a running schedule whose interval changed is re-planned: one interval after its last
      update (not before ``at``); without an interval for the new severity it pauses.

    Writes one timeline entry saying what changed. Idempotent: a second call changes nothing.
    Returns the schedules started or re-planned. An incident that is not active: nothing."""
    incident = Incident.objects.select_related("severity").get(pk=incident.pk)
    if not incident.is_active:
        return []
    at = at or timezone.now()
    severity = incident.severity_id
    groups = list(StakeholderGroup.objects.filter(active=True).order_by("position", "name"))
    existing = {
        s.group_id: s
        for s in StakeholderSchedule.objects.select_for_update().filter(incident=incident)
    }
    if not existing and not any(g.interval_for(severity) for g in groups):
        return []  # most incidents (Sev 3-4): three queries and nothing to plan
    lead = _policy().stakeholder_reminder_lead_minutes
    zone = _zone()
    changed: list[StakeholderSchedule] = []
    lines: list[str] = []
    for group in groups:
        minutes = group.interval_for(severity)
        schedule = existing.get(group.pk)
        if schedule is None:
            if minutes is None:
                continue
            schedule = StakeholderSchedule(
                incident=incident, group=group, interval_minutes=minutes, started_at=at
            )
            _plan(schedule, due=at + timedelta(minutes=minutes), lead=lead)
            try:
                with transaction.atomic():
                    schedule.save(force_insert=True)
            except IntegrityError:
                continue
        elif schedule.stopped_at is not None:
            schedule.stopped_at = None
            schedule.interval_minutes = minutes
            schedule.reminded_for = None
            _plan(schedule, due=at + timedelta(minutes=minutes) if minutes else None, lead=lead)
            schedule.save()
            if minutes is None:
                continue
        elif schedule.interval_minutes != minutes:
            previous = schedule.interval_minutes
            schedule.interval_minutes = minutes
            if minutes is None:
                due = None
            elif previous is None:
                due = at + timedelta(minutes=minutes)
            else:
                base = schedule.last_sent_at or schedule.started_at
                due = max(base + timedelta(minutes=minutes), at)
            _plan(schedule, due=due, lead=lead)
            schedule.save()
            if minutes is None:
                lines.append(f"{group.name}: no scheduled updates at Sev {severity}")
                changed.append(schedule)
                continue
        else:
            continue
        changed.append(schedule)
        lines.append(
            f"{group.name} {_every(minutes)} by {Channel(group.channel).label.lower()}, "
            f"next at {_hhmm(schedule.next_due_at, zone)}"
        )
    if lines:
        timeline_record(
            incident=incident,
            kind=Kind.COMMUNICATION,
            source=Source.SYSTEM,
            actor=None,
            message=f"Stakeholder update schedule (Sev {severity}): " + "; ".join(lines) + ".",
            data={"stakeholder": "schedule", "groups": [s.group_id for s in changed]},
        )
    return changed


def _ended_at(incident: Incident) -> datetime:
    if incident.status == Status.CANCELLED and incident.cancelled_at:
        return incident.cancelled_at
    if incident.resolved_at:
        return incident.resolved_at
    return incident.closed_at or timezone.now()


@transaction.atomic
def stakeholder_schedules_stop(*, incident: Incident) -> list[StakeholderAction]:
    """The incident was resolved, closed or cancelled: stop each of its schedules and send each
    group that was on a schedule, or had been sent an update on demand, its final message (a
    cancelled incident: only the groups already told something). Idempotent: a stopped schedule
    is left alone, and the final message is keyed by the time the incident ended, so it goes
    once. An incident that is active again (reopened before this ran): nothing."""
    incident = Incident.objects.select_related("severity").get(pk=incident.pk)
    if incident.is_active:
        return []
    ended = _ended_at(incident)
    now = timezone.now()
    zone = _zone()
    done: list[StakeholderAction] = []
    schedules = (
        StakeholderSchedule.objects.select_for_update(of=("self",))
        .select_related("group")
        .filter(incident=incident, stopped_at__isnull=True)
        .order_by("group__position", "group__name")
    )
    for schedule in schedules:
        group = schedule.group
        told = schedule.last_sent_at is not None
        scheduled = schedule.interval_minutes is not None
        schedule.stopped_at = ended
        _plan(schedule, due=None, lead=0)
        final = group.active and (
            told if incident.status == Status.CANCELLED else told or scheduled
        )
        if final:
            content = _content(incident=incident, group=group, since=schedule.last_sent_at)
            send = _deliver(
                schedule=schedule,
                incident=incident,
                group=group,
                kind=SendKind.FINAL,
                due_at=ended,
                now=now,
                zone=zone,
                content=content,
                next_due=None,
            )
            if send is not None:
                done.append(
                    StakeholderAction(
                        incident=incident.number,
                        group=group.name,
                        kind=SendKind.FINAL,
                        due_at=ended,
                        recipients=send.recipients,
                    )
                )
        schedule.save()
    return done


# --- notes and sends on demand -------------------------------------------------------------------


def _writable(incident: Incident, group: StakeholderGroup, what: str) -> Incident:
    incident = Incident.objects.select_related("severity").get(pk=incident.pk)
    if not incident.is_active:
        raise InvalidInput(
            {
                "incident": f"{incident.number} is {Status(incident.status).label.lower()}: its "
                f"stakeholder updates have ended, so there is no {what} to make."
            }
        )
    if not group.active:
        raise InvalidInput({"group": f"The {group.name} stakeholder group is not active."})
    return incident


@transaction.atomic
def stakeholder_note_write(
    *, incident: Incident, group: StakeholderGroup, body: str, actor: Any, source: str
) -> StakeholderNote:
    """Write an internal note for ``group`` on an active incident: what its next update says.
    The next scheduled (or on-demand) update of the group is composed from it, and the
    communications lead is not reminded for that update. Needs the note permission (the
    communications lead and incident managers). Writes a timeline entry. Not idempotent: each
    call adds a note (the latest counts)."""
    require(actor, NOTE_PERMISSION, "write stakeholder notes")
    body = (body or "").strip()
    if not body:
        raise InvalidInput({"body": "Write what the group's next update should say."})
    if len(body) > NOTE_MAX:
        raise InvalidInput({"body": f"At most {NOTE_MAX} characters (this is {len(body)})."})
    incident = _writable(incident, group, "note")
    note = StakeholderNote.objects.create(incident=incident, group=group, body=body, author=actor)
    timeline_record(
        incident=incident,
        kind=Kind.COMMUNICATION,
        source=source,
        actor=actor,
        message=f"Note written for the {group.name} stakeholder update.",
        data={"stakeholder": "note", "group": group.pk, "note": note.pk},
    )
    return note


@transaction.atomic
def stakeholder_send_now(
    *, incident: Incident, group: StakeholderGroup, actor: Any, source: str
) -> StakeholderSend:
    """Send ``group`` an update now (the "as needed" rows such as Partners, or any group ahead
    of its schedule), composed from the latest note written for it or the latest published
    update. Refused (400) when nothing new was written since the group's last update: a second
    click sends nothing twice. A scheduled group keeps its cadence; its next update says "no
    change" unless something new is written. Needs the send permission. Writes a timeline
    entry; the group then gets a final message when the incident ends."""
    require(actor, SEND_PERMISSION, "send stakeholder updates")
    incident = _writable(incident, group, "update")
    now = timezone.now()
    zone = _zone()
    schedule = (
        StakeholderSchedule.objects.select_for_update()
        .filter(incident=incident, group=group)
        .first()
    )
    if schedule is None:
        schedule = StakeholderSchedule(
            incident=incident, group=group, interval_minutes=None, started_at=now
        )
        try:
            with transaction.atomic():
                schedule.save(force_insert=True)
        except IntegrityError:
            schedule = StakeholderSchedule.objects.select_for_update().get(
                incident=incident, group=group
            )
    content = _content(incident=incident, group=group, since=schedule.last_sent_at)
    if not content.new:
        if schedule.last_sent_at is None:
            why = (
                f"Nothing has been written for {group.name} yet: write a note for the group "
                "(or publish a status update) first."
            )
        else:
            why = (
                f"Nothing new since {group.name}'s last update at "
                f"{_hhmm(schedule.last_sent_at, zone)}: write a note for the group first."
            )
        raise InvalidInput({"group": why})
    send = _deliver(
        schedule=schedule,
        incident=incident,
        group=group,
        kind=SendKind.ON_DEMAND,
        due_at=now,
        now=now,
        zone=zone,
        content=content,
        next_due=schedule.next_due_at if schedule.interval_minutes else None,
        actor=actor,
        source=source,
    )
    if send is None:
        raise InvalidInput({"group": f"An update was just sent to {group.name}."})
    schedule.save()
    return send


# --- the sweep -----------------------------------------------------------------------------------


def _stakeholder_check(*, schedule_id: int, now: datetime) -> list[StakeholderAction]:
    """Act on one due schedule, in the caller's transaction. Claims it with SKIP LOCKED: a
    schedule someone else holds is skipped (it stays due)."""
    schedule = (
        StakeholderSchedule.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("incident", "incident__severity", "group")
        .filter(pk=schedule_id, next_check_at__lte=now, stopped_at__isnull=True)
        .first()
    )
    if schedule is None:
        return []
    incident, group = schedule.incident, schedule.group
    due = schedule.next_due_at
    if not incident.is_active or not group.active or due is None or not schedule.interval_minutes:
        # Ended (its handler sends the final message), or paused: nothing is due.
        schedule.next_check_at = None
        schedule.save(update_fields=["next_check_at"])
        return []
    lead = _policy().stakeholder_reminder_lead_minutes
    zone = _zone()
    content = _content(incident=incident, group=group, since=schedule.last_sent_at)
    done: list[StakeholderAction] = []

    if now < due:
        if schedule.reminded_for != due and not content.new:
            send = _remind(schedule=schedule, incident=incident, group=group, now=now, zone=zone)
            if send is not None:
                done.append(
                    StakeholderAction(
                        incident=incident.number,
                        group=group.name,
                        kind=SendKind.REMINDER,
                        due_at=due,
                        recipients=send.recipients,
                    )
                )
        schedule.reminded_for = due
        schedule.next_check_at = due
        schedule.save(update_fields=["reminded_for", "next_check_at"])
        return done

    interval = timedelta(minutes=schedule.interval_minutes)
    late = now - due > LATE_AFTER
    next_due = due + interval
    if late or next_due <= now:
        # One catch-up, then the cadence starts again from now: never a burst of missed ones.
        next_due = now + interval
    kind = (
        SendKind.SCHEDULED if content.new or schedule.last_sent_at is None else SendKind.NO_CHANGE
    )
    send = _deliver(
        schedule=schedule,
        incident=incident,
        group=group,
        kind=kind,
        due_at=due,
        now=now,
        zone=zone,
        content=content,
        next_due=next_due,
        late=late,
    )
    if send is not None:
        done.append(
            StakeholderAction(
                incident=incident.number,
                group=group.name,
                kind=kind,
                due_at=due,
                late=late,
                recipients=send.recipients,
            )
        )
    _plan(schedule, due=next_due, lead=lead)
    schedule.save()
    return done


def stakeholder_sweep(
    *, now: datetime | None = None, batch: int = 50, time_budget: float | None = None
) -> list[StakeholderAction]:
    """Send the reminders and updates of every schedule due by ``now`` (beat). Never inside a
    transaction: each schedule is claimed and handled in a transaction of its own.

    Reads due schedule ids by ``next_check_at`` (indexed) in batches, keyset-paginated (a
    schedule skipped because another sweep holds it stays due). A schedule that fails is logged
    and left due for the next sweep. Safe to run any number of times, concurrently."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_budget if time_budget is not None else None
    done: list[StakeholderAction] = []
    after = 0
    while True:
        ids = list(
            StakeholderSchedule.objects.filter(
                next_check_at__lte=now, stopped_at__isnull=True, pk__gt=after
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        for pk in ids:
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("Stakeholder sweep out of time; the rest is left for the next")
                return done
            try:
                with transaction.atomic():
                    done.extend(_stakeholder_check(schedule_id=pk, now=now))
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                logger.exception("Stakeholder schedule %s failed; left for the next sweep", pk)
        if len(ids) < batch:
            break
        after = ids[-1]
    return done


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRow:
    """One group's line of an incident's stakeholder schedule."""

    group: StakeholderGroup
    interval_minutes: int | None
    next_due_at: datetime | None
    last_sent_at: datetime | None
    last_kind: str
    late: bool
    stopped_at: datetime | None

    @property
    def as_needed(self) -> bool:
        return self.interval_minutes is None

    @property
    def frequency(self) -> str:
        return _every(self.interval_minutes) if self.interval_minutes else "as needed"


def stakeholder_schedule_list(
    *, incident: Incident, now: datetime | None = None
) -> list[ScheduleRow]:
    """Each active group's schedule on ``incident`` (groups without one: as needed), with its
    next due time, its last send and whether it is late (the last update went out late, or the
    next is overdue by more than :data:`LATE_AFTER`). Three queries."""
    now = now or timezone.now()
    schedules = {s.group_id: s for s in StakeholderSchedule.objects.filter(incident_id=incident.pk)}
    last_sends: dict[int, StakeholderSend] = {}
    for send in (
        StakeholderSend.objects.filter(incident_id=incident.pk)
        .exclude(kind=SendKind.REMINDER)
        .order_by("-sent_at", "-pk")
    ):
        last_sends.setdefault(send.group_id, send)
    rows = []
    for group in StakeholderGroup.objects.filter(active=True).order_by("position", "name"):
        schedule = schedules.get(group.pk)
        last = last_sends.get(group.pk)
        next_due = schedule.next_due_at if schedule and not schedule.stopped_at else None
        overdue = next_due is not None and now - next_due > LATE_AFTER
        rows.append(
            ScheduleRow(
                group=group,
                interval_minutes=schedule.interval_minutes if schedule else None,
                next_due_at=next_due,
                last_sent_at=last.sent_at if last else None,
                last_kind=last.kind if last else "",
                late=overdue or bool(last and last.late),
                stopped_at=schedule.stopped_at if schedule else None,
            )
        )
    return rows
