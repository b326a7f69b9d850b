"""Sending one stakeholder message: the update (or final message) to a group, or the reminder
to the communications lead; one :class:`StakeholderSend` row with its outbox rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction

from incidents.models import Channel, Incident, Kind, Source, Status
from incidents.services.common import timeline_record

from ...models import SendKind, StakeholderGroup, StakeholderSchedule, StakeholderSend
from .common import _hhmm
from .compose import CONTENT_HEADINGS, _compose, _Content
from .recipients import _enqueue, _leads_reach, _members, _reached_text


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
